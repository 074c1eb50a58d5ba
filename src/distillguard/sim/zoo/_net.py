"""Networks, clients and identities of the zoo: ISPs, datacentres, User-Agents, fingerprints.

Address plans are illustrative (first octets per network); the autonomous system numbers are
those of the named kind of network so that a reader of the log sees plausible pairs.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COUNTRY_TZ",
    "PERSONAL_DOMAINS",
    "Network",
    "addresses_in",
    "browser_user_agent",
    "client_fingerprint",
    "cloud_egress",
    "datacenter_net",
    "ip_in",
    "prefix64_in",
    "residential_net",
    "sdk_user_agent",
    "short_hash",
    "uid",
]


@dataclass(frozen=True, slots=True)
class Network:
    """A network: its AS number, some IPv4 /16s, an IPv6 /32 (or none) and its kind."""

    name: str
    asn: int
    v4: tuple[tuple[int, int], ...]
    v6: str | None
    country: str
    kind: str  # residential | mobile | datacenter | education | business


_RES: Final = (
    Network("Comcast", 7922, ((73, 15), (24, 6), (98, 207), (68, 47)), "2601:0c2", "US", "residential"),  # noqa: E501
    Network("AT&T", 7018, ((99, 43), (107, 210), (76, 201)), "2600:1700", "US", "residential"),
    Network("Verizon", 701, ((71, 191), (96, 255), (108, 28)), "2600:4040", "US", "residential"),
    Network("Charter", 20115, ((47, 144), (66, 190), (97, 92)), "2603:7000", "US", "residential"),
    Network("Cox", 22773, ((68, 100), (70, 175)), "2600:8800", "US", "residential"),
    Network("Deutsche Telekom", 3320, ((79, 195), (91, 47), (87, 160)), "2003:00e2", "DE", "residential"),  # noqa: E501
    Network("Vodafone DE", 3209, ((88, 64), (94, 134)), "2a02:0810", "DE", "residential"),
    Network("BT", 2856, ((81, 129), (86, 150), (109, 148)), "2a00:23c5", "GB", "residential"),
    Network("Virgin Media", 5089, ((82, 21), (86, 1)), "2a02:0c7c", "GB", "residential"),
    Network("Orange FR", 3215, ((90, 3), (92, 184)), "2a01:0cb0", "FR", "residential"),
    Network("Free", 12322, ((82, 64), (88, 120)), "2a01:0e0a", "FR", "residential"),
    Network("Reliance Jio", 55836, ((49, 36), (157, 32)), "2409:4040", "IN", "mobile"),
    Network("Airtel", 24560, ((122, 161), (182, 68)), "2401:4900", "IN", "residential"),
    Network("Claro BR", 28573, ((177, 36), (179, 218)), "2804:0014", "BR", "residential"),
    Network("Vivo BR", 26599, ((187, 11), (189, 100)), "2804:0431", "BR", "residential"),
    Network("NTT OCN", 4713, ((153, 156), (114, 150)), "240b:0010", "JP", "residential"),
    Network("SoftBank", 17676, ((126, 15), (60, 100)), "240b:0251", "JP", "residential"),
    Network("KT", 4766, ((211, 36), (175, 223)), None, "KR", "residential"),
    Network("Rogers", 812, ((99, 224), (174, 112)), "2607:fea8", "CA", "residential"),
    Network("China Telecom", 4134, ((113, 87), (116, 22), (183, 14)), "240e:0390", "CN", "residential"),  # noqa: E501
    Network("Singtel", 7473, ((116, 86), (118, 200)), None, "SG", "residential"),
    Network("Rostelecom", 12389, ((95, 24), (178, 66)), None, "RU", "residential"),
    Network("VNPT", 45899, ((14, 160), (113, 160)), None, "VN", "residential"),
    Network("MTN NG", 29465, ((102, 89), (105, 112)), None, "NG", "mobile"),
    Network("Orange PL", 5617, ((83, 7), (89, 64)), None, "PL", "residential"),
    Network("Telefonica ES", 3352, ((80, 29), (83, 34)), "2a0c:5a80", "ES", "residential"),
    Network("KPN", 1136, ((77, 166), (84, 85)), "2a02:a440", "NL", "residential"),
    Network("Telstra", 1221, ((101, 160), (120, 144)), "2001:8003", "AU", "residential"),
    Network("T-Mobile US", 21928, ((172, 56), (172, 58)), "2607:fb90", "US", "mobile"),
)  # fmt: skip
_DC: Final = (
    Network("AWS", 16509, ((3, 90), (18, 208), (52, 14), (54, 160)), "2600:1f18", "US", "datacenter"),  # noqa: E501
    Network("Google Cloud", 396982, ((34, 102), (35, 196)), "2600:1900", "US", "datacenter"),
    Network("Azure", 8075, ((20, 42), (40, 76), (52, 167)), "2603:1030", "US", "datacenter"),
    Network("DigitalOcean", 14061, ((104, 131), (159, 65), (167, 99)), "2604:a880", "US", "datacenter"),  # noqa: E501
    Network("Hetzner", 24940, ((65, 108), (88, 198), (95, 216)), "2a01:04f8", "DE", "datacenter"),
    Network("OVH", 16276, ((51, 77), (54, 36), (141, 94)), "2001:41d0", "FR", "datacenter"),
    Network("Linode", 63949, ((45, 33), (172, 104)), "2600:3c00", "US", "datacenter"),
    Network("Vultr", 20473, ((45, 32), (149, 28)), "2001:19f0", "US", "datacenter"),
    Network("Alibaba Cloud", 45102, ((47, 88), (8, 210)), None, "CN", "datacenter"),
    Network("Tencent Cloud", 132203, ((43, 128), (129, 226)), None, "SG", "datacenter"),
)  # fmt: skip

#: UTC offset (hours) of each country the zoo uses, for working hours.
COUNTRY_TZ: Final[dict[str, float]] = {
    "US": -6.0, "CA": -5.0, "BR": -3.0, "GB": 0.0, "ES": 1.0, "FR": 1.0, "DE": 1.0, "NL": 1.0,
    "PL": 1.0, "NG": 1.0, "RU": 3.0, "IN": 5.5, "VN": 7.0, "CN": 8.0, "SG": 8.0, "KR": 9.0,
    "JP": 9.0, "AU": 10.0, "PH": 8.0, "KE": 3.0, "HK": 8.0,
}  # fmt: skip
PERSONAL_DOMAINS: Final = (
    "gmail.com", "gmail.com", "gmail.com", "outlook.com", "hotmail.com", "yahoo.com",
    "icloud.com", "proton.me", "gmx.de", "qq.com", "163.com", "naver.com", "yandex.ru",
    "mail.ru", "web.de", "orange.fr", "btinternet.com",
)  # fmt: skip


def residential_net(py: random.Random, country: str | None = None) -> Network:
    """A residential or mobile network, of ``country`` when it has one."""
    if country is not None:
        local = [n for n in _RES if n.country == country]
        if local:
            return py.choice(local)
    return py.choice(_RES)


def datacenter_net(py: random.Random) -> Network:
    """A cloud or hosting network."""
    return py.choice(_DC)


def _hextets(py: random.Random, n: int) -> str:
    return ":".join(f"{py.getrandbits(16):x}" for _ in range(n))


def ip_in(py: random.Random, net: Network, *, v6: bool = False, prefix64: str | None = None) -> str:
    """An address of ``net``; with ``prefix64`` (four hextets), an address inside that /64."""
    if prefix64 is not None:
        return f"{prefix64}:{_hextets(py, 4)}"
    if v6 and net.v6 is not None:
        return f"{net.v6}:{_hextets(py, 2)}:0:{_hextets(py, 3)}"
    a, b = py.choice(net.v4)
    return f"{a}.{b}.{py.randint(0, 255)}.{py.randint(1, 254)}"


def prefix64_in(py: random.Random, net: Network) -> str | None:
    """A household's IPv6 /64 inside ``net`` (None if the network has no IPv6)."""
    if net.v6 is None:
        return None
    return f"{net.v6}:{py.getrandbits(16):x}:{py.getrandbits(16):x}"


def addresses_in(py: random.Random, net: Network, low: int, high: int) -> list[tuple[str, int]]:
    """Between ``low`` and ``high`` addresses (IP, ASN) of ``net``: a service's egress."""
    return [(ip_in(py, net), net.asn) for _ in range(py.randint(low, high))]


def cloud_egress(py: random.Random, low: int, high: int) -> list[tuple[str, int]]:
    """The egress of a service on one cloud network: ``low`` to ``high`` addresses of it."""
    return addresses_in(py, datacenter_net(py), low, high)


def short_hash(*parts: object, n: int = 12) -> str:
    """A stable hex digest of ``parts`` (``n`` characters)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16)
    return h.hexdigest()[:n]


def uid(py: random.Random, prefix: str, n: int = 20) -> str:
    """An opaque identifier (``prefix`` + ``n`` random hex characters)."""
    return f"{prefix}{py.getrandbits(4 * n):0{n}x}"


def client_fingerprint(*stack: object) -> str:
    """A JA4-like TLS fingerprint, determined by the client stack (library, version, OS)."""
    a = short_hash("cipher", *stack)
    b = short_hash("ext", *stack)
    ciphers = 10 + int(a[:2], 16) % 8
    return f"t13d{ciphers:02d}{12 + int(b[:2], 16) % 6:02d}h2_{a}_{b}"


_OS: Final = (
    "Linux; x86_64", "Darwin; arm64", "Darwin; x86_64", "Windows; AMD64", "Linux; aarch64",
)  # fmt: skip


def sdk_user_agent(py: random.Random, *, style: str | None = None) -> tuple[str, str]:
    """A User-Agent of an API client library, and the TLS fingerprint of its stack."""
    style = style or py.choice(
        ("py-sdk", "py-sdk", "py-sdk", "js-sdk", "js-sdk", "requests", "httpx", "curl", "go",
         "langchain", "litellm", "axios")
    )  # fmt: skip
    os_ = py.choice(_OS)
    if style == "py-sdk":
        ver = f"1.{py.randint(30, 58)}.{py.randint(0, 4)}"
        py_ver = f"3.{py.randint(9, 12)}.{py.randint(0, 9)}"
        ua = f"OpenAI/Python {ver} ({os_}) CPython/{py_ver}"
        stack: tuple[object, ...] = ("python", py_ver[:4], os_)
    elif style == "js-sdk":
        ver = f"4.{py.randint(20, 77)}.{py.randint(0, 3)}"
        node = f"v{py.choice((18, 20, 20, 22))}.{py.randint(0, 19)}.{py.randint(0, 3)}"
        ua = f"OpenAI/JS {ver} node/{node}"
        stack = ("node", node.split(".")[0], os_)
    elif style == "requests":
        ua = f"python-requests/2.{py.randint(26, 32)}.{py.randint(0, 3)}"
        stack = ("python-requests", os_)
    elif style == "httpx":
        ua = f"python-httpx/0.{py.randint(24, 28)}.{py.randint(0, 2)}"
        stack = ("httpx", os_)
    elif style == "curl":
        ua = f"curl/8.{py.randint(1, 9)}.{py.randint(0, 1)}"
        stack = ("curl", ua)
    elif style == "go":
        ua = "Go-http-client/2.0"
        stack = ("go", py.randint(19, 22))
    elif style == "langchain":
        lc = f"0.{py.randint(1, 3)}.{py.randint(0, 30)}"
        ua = f"langchain-openai/{lc} OpenAI/Python 1.{py.randint(40, 58)}.0"
        stack = ("python", "lc", os_)
    elif style == "litellm":
        ua = f"litellm/1.{py.randint(30, 60)}.{py.randint(0, 9)}"
        stack = ("python", "litellm", os_)
    else:
        ua = f"axios/1.{py.randint(5, 7)}.{py.randint(0, 9)}"
        stack = ("node", "axios", os_)
    return ua, client_fingerprint(*stack)


def browser_user_agent(py: random.Random) -> tuple[str, str]:
    """A browser User-Agent (playground or web app calling the API directly)."""
    chrome = py.randint(118, 131)
    plat = py.choice(
        (
            "Windows NT 10.0; Win64; x64",
            "Macintosh; Intel Mac OS X 10_15_7",
            "X11; Linux x86_64",
        )
    )
    ua = (
        f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{chrome}.0.0.0 Safari/537.36"
    )
    return ua, client_fingerprint("chrome", chrome // 4, plat)
