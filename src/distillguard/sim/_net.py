"""Network side of the simulator: ASNs and their address blocks, user agents, TLS fingerprints.

The registry is fixed (not seeded) so that the same address always maps to the same ASN across
scenarios. ASN numbers of the well-known networks are the real ones; their address blocks here are
synthetic /16s inside public unicast space (not the networks' real allocations), so that the
simulated logs never point at a real subscriber.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CATEGORY_DATACENTER",
    "CATEGORY_EDU",
    "CATEGORY_ISP",
    "CATEGORY_MOBILE",
    "CATEGORY_PROXY",
    "AsnRegistry",
    "ClientCatalog",
    "build_client_catalog",
    "build_registry",
    "format_ipv4",
]

CATEGORY_ISP: Final = 0
CATEGORY_MOBILE: Final = 1
CATEGORY_DATACENTER: Final = 2
CATEGORY_EDU: Final = 3
CATEGORY_PROXY: Final = 4

# (asn, country, category): real ASN numbers of large networks.
_KNOWN: Final[tuple[tuple[int, str, int], ...]] = (
    (7922, "US", CATEGORY_ISP),
    (701, "US", CATEGORY_ISP),
    (7018, "US", CATEGORY_ISP),
    (20115, "US", CATEGORY_ISP),
    (22773, "US", CATEGORY_ISP),
    (21928, "US", CATEGORY_MOBILE),
    (22394, "US", CATEGORY_MOBILE),
    (2856, "GB", CATEGORY_ISP),
    (5089, "GB", CATEGORY_ISP),
    (5607, "GB", CATEGORY_ISP),
    (12576, "GB", CATEGORY_MOBILE),
    (3320, "DE", CATEGORY_ISP),
    (3209, "DE", CATEGORY_ISP),
    (6805, "DE", CATEGORY_ISP),
    (3215, "FR", CATEGORY_ISP),
    (12322, "FR", CATEGORY_ISP),
    (5410, "FR", CATEGORY_ISP),
    (55836, "IN", CATEGORY_MOBILE),
    (45609, "IN", CATEGORY_MOBILE),
    (24560, "IN", CATEGORY_ISP),
    (2516, "JP", CATEGORY_ISP),
    (4713, "JP", CATEGORY_ISP),
    (17676, "JP", CATEGORY_ISP),
    (28573, "BR", CATEGORY_ISP),
    (18881, "BR", CATEGORY_ISP),
    (812, "CA", CATEGORY_ISP),
    (577, "CA", CATEGORY_ISP),
    (9506, "SG", CATEGORY_ISP),
    (4657, "SG", CATEGORY_ISP),
    (4766, "KR", CATEGORY_ISP),
    (1221, "AU", CATEGORY_ISP),
    (3352, "ES", CATEGORY_ISP),
    (3269, "IT", CATEGORY_ISP),
    (1136, "NL", CATEGORY_ISP),
    (8151, "MX", CATEGORY_ISP),
    (4134, "CN", CATEGORY_ISP),
    (4837, "CN", CATEGORY_ISP),
    (9121, "TR", CATEGORY_ISP),
    (16509, "US", CATEGORY_DATACENTER),
    (14618, "US", CATEGORY_DATACENTER),
    (15169, "US", CATEGORY_DATACENTER),
    (396982, "US", CATEGORY_DATACENTER),
    (8075, "US", CATEGORY_DATACENTER),
    (14061, "US", CATEGORY_DATACENTER),
    (24940, "DE", CATEGORY_DATACENTER),
    (16276, "FR", CATEGORY_DATACENTER),
    (63949, "US", CATEGORY_DATACENTER),
    (13335, "US", CATEGORY_DATACENTER),
    (20473, "US", CATEGORY_DATACENTER),
    (1742, "US", CATEGORY_EDU),
    (3, "US", CATEGORY_EDU),
    (786, "GB", CATEGORY_EDU),
    (680, "DE", CATEGORY_EDU),
    (2200, "FR", CATEGORY_EDU),
    (2907, "JP", CATEGORY_EDU),
    (11537, "US", CATEGORY_EDU),
    (7575, "AU", CATEGORY_EDU),
)
# First octets used for the synthetic blocks (public unicast, no special-purpose ranges).
_FIRST_OCTETS: Final = (
    24,
    31,
    37,
    45,
    50,
    62,
    66,
    68,
    71,
    73,
    77,
    79,
    81,
    82,
    84,
    86,
    88,
    90,
    93,
    95,
    98,
    101,
    103,
    106,
    110,
    112,
    115,
    117,
    119,
    121,
    123,
    125,
    175,
    177,
    179,
    181,
    186,
    187,
    189,
    190,
    191,
    197,
    200,
    201,
    213,
    217,
)


@dataclass(frozen=True)
class AsnRegistry:
    """ASNs with one synthetic /16 each: ``asn``, ``country``, ``category``, ``base`` arrays."""

    asn: npt.NDArray[np.int64]
    country: tuple[str, ...]
    category: npt.NDArray[np.int8]
    base: npt.NDArray[np.uint32]

    def indices(self, *, category: int, country: str | None = None) -> npt.NDArray[np.int64]:
        """Registry rows of one category (and country, falling back to any country)."""
        cat = np.flatnonzero(self.category == category)
        if country is None:
            return cat
        same = np.array([i for i in cat if self.country[i] == country], dtype=np.int64)
        return same if same.size else cat


def build_registry(*, proxy_asns: int) -> AsnRegistry:
    """The fixed registry, plus ``proxy_asns`` synthetic residential ASNs of a proxy network."""
    rows: list[tuple[int, str, int]] = list(_KNOWN)
    countries = (
        "US",
        "BR",
        "IN",
        "ID",
        "VN",
        "TR",
        "MX",
        "PH",
        "RU",
        "UA",
        "PL",
        "TH",
        "EG",
        "NG",
        "AR",
        "CO",
        "DE",
        "GB",
        "FR",
        "IT",
    )
    for i in range(proxy_asns):
        rows.append((262_144 + 37 * i, countries[i % len(countries)], CATEGORY_PROXY))
    n = len(rows)
    if n > len(_FIRST_OCTETS) * 250:
        raise ValueError("too many ASNs for the synthetic address plan")
    base = np.array(
        [
            (_FIRST_OCTETS[i % len(_FIRST_OCTETS)] << 24) | ((i // len(_FIRST_OCTETS) + 1) << 16)
            for i in range(n)
        ],
        dtype=np.uint32,
    )
    return AsnRegistry(
        asn=np.array([r[0] for r in rows], dtype=np.int64),
        country=tuple(r[1] for r in rows),
        category=np.array([r[2] for r in rows], dtype=np.int8),
        base=base,
    )


_OCTETS: Final = pa.array([str(i) for i in range(256)], type=pa.string())


def format_ipv4(ips: npt.NDArray[np.uint32]) -> pa.StringArray:
    """Dotted-quad strings of IPv4 addresses, vectorised with Arrow kernels."""
    ips = ips.astype(np.uint32, copy=False)
    parts = [
        _OCTETS.take(pa.array(((ips >> shift) & 0xFF).astype(np.int32))) for shift in (24, 16, 8, 0)
    ]
    out = pc.binary_join_element_wise(*parts, ".")
    assert isinstance(out, pa.StringArray)
    return out


def _fp(seed: str) -> str:
    """A JA4-like fingerprint string derived from a TLS stack description."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    ciphers = 8 + int(h[0:2], 16) % 12
    exts = 10 + int(h[2:4], 16) % 8
    alpn = "h2" if "h1" not in seed else "h1"
    return f"t13d{ciphers:02d}{exts:02d}{alpn}_{h[4:16]}_{h[16:28]}"


def _uas_for(family: str) -> list[tuple[str, str]]:
    """(user agent, TLS stack) pairs of a client family, over plausible versions."""
    out: list[tuple[str, str]] = []
    if family == "openai_python":
        for minor in range(30, 60, 3):
            for py in ("3.10", "3.11", "3.12"):
                out.append((f"OpenAI/Python 1.{minor}.0", f"python{py}-openssl3-h2"))
    elif family == "openai_node":
        for minor in range(40, 80, 4):
            out.append((f"OpenAI/JS 4.{minor}.1", "node20-boringssl-h2"))
    elif family == "httpx":
        for v in ("0.25.2", "0.26.0", "0.27.0", "0.27.2", "0.28.1"):
            out.append((f"python-httpx/{v}", "python3.11-openssl3-h2"))
    elif family == "requests":
        for v in ("2.28.2", "2.31.0", "2.32.3"):
            out.append((f"python-requests/{v}", "python3.10-openssl3-h1"))
    elif family == "curl":
        for v in ("7.81.0", "7.88.1", "8.4.0", "8.5.0", "8.7.1"):
            out.append((f"curl/{v}", f"curl{v}-openssl-h2"))
    elif family == "browser":
        for ver in range(118, 132, 2):
            out.append(
                (
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
                    f"like Gecko) Chrome/{ver}.0.0.0 Safari/537.36",
                    f"chrome{ver}-boringssl-h2",
                )
            )
            out.append(
                (
                    f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
                    f"like Gecko) Version/17.{ver % 5} Safari/605.1.15",
                    f"safari17.{ver % 5}-h2",
                )
            )
        for ver in range(115, 128, 3):
            out.append(
                (
                    f"Mozilla/5.0 (X11; Linux x86_64; rv:{ver}.0) Gecko/20100101 Firefox/{ver}.0",
                    f"firefox{ver}-nss-h2",
                )
            )
    elif family == "langchain":
        for v in ("0.1.20", "0.2.5", "0.3.1"):
            out.append((f"langchain-openai/{v} OpenAI/Python 1.40.0", "python3.11-openssl3-h2"))
    elif family == "go":
        for v in ("1.21", "1.22", "1.23"):
            out.append(("Go-http-client/2.0", f"go{v}-crypto-tls-h2"))
    else:  # pragma: no cover - guarded by the scenario validation
        raise ValueError(f"unknown client family {family!r}")
    return out


@dataclass(frozen=True)
class ClientCatalog:
    """User agents and fingerprints: one row per (family, version), as Arrow string pools."""

    families: tuple[str, ...]
    family_rows: dict[str, npt.NDArray[np.int32]]
    user_agents: pa.StringArray
    fingerprints: pa.StringArray


def build_client_catalog() -> ClientCatalog:
    """The fixed catalogue of client families, their user agents and TLS fingerprints."""
    families = (
        "openai_python",
        "openai_node",
        "httpx",
        "requests",
        "curl",
        "browser",
        "langchain",
        "go",
    )
    uas: list[str] = []
    fps: list[str] = []
    rows: dict[str, npt.NDArray[np.int32]] = {}
    for family in families:
        start = len(uas)
        for ua, stack in _uas_for(family):
            uas.append(ua)
            fps.append(_fp(stack))
        rows[family] = np.arange(start, len(uas), dtype=np.int32)
    return ClientCatalog(
        families=families,
        family_rows=rows,
        user_agents=pa.array(uas, type=pa.string()),
        fingerprints=pa.array(fps, type=pa.string()),
    )


#: UTC offsets (hours, standard time) of the countries scenarios may name; others count as 0.
UTC_OFFSET: Final[dict[str, float]] = {
    "US": -6.0,
    "CA": -5.0,
    "MX": -6.0,
    "BR": -3.0,
    "AR": -3.0,
    "CO": -5.0,
    "GB": 0.0,
    "IE": 0.0,
    "FR": 1.0,
    "DE": 1.0,
    "ES": 1.0,
    "IT": 1.0,
    "NL": 1.0,
    "PL": 1.0,
    "SE": 1.0,
    "CH": 1.0,
    "UA": 2.0,
    "EG": 2.0,
    "NG": 1.0,
    "ZA": 2.0,
    "TR": 3.0,
    "RU": 3.0,
    "AE": 4.0,
    "IN": 5.5,
    "TH": 7.0,
    "VN": 7.0,
    "ID": 7.0,
    "SG": 8.0,
    "CN": 8.0,
    "HK": 8.0,
    "TW": 8.0,
    "PH": 8.0,
    "KR": 9.0,
    "JP": 9.0,
    "AU": 10.0,
    "NZ": 12.0,
}
