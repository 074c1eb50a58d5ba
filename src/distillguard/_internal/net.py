"""The network of an IP address: its /24 (IPv4) or /48 (IPv6), in one place.

Everything that groups requests by network (the gateway's per-network limits, the online monitor,
the scan's infrastructure signal, the console and the evidence report) calls :func:`network_of`;
the scan's DuckDB query uses :func:`duckdb_network_sql`, its SQL twin, tested against it.

Decisions, and when they misfire:

* The key is the canonical text of the network as :mod:`ipaddress` writes it: IPv4
  ``a.b.c.0/24``, IPv6 compressed per RFC 5952 (``2001:db8::1`` and ``2001:0DB8:0:0::7`` are both
  ``2001:db8::/48``), so two spellings of one address are one network.
* An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``, what a dual-stack socket reports for an IPv4
  client) is the IPv4 address's /24: its /48 would be ``::/48``, one network for every IPv4
  client of such a server, which would make all of them look coordinated. Other addresses that
  embed IPv4 (IPv4-compatible ``::1.2.3.4``, NAT64 ``64:ff9b::/96``, 6to4, Teredo) are taken as
  IPv6 and get their /48.
* A zone id (``fe80::1%eth0``) is dropped: the network is the address's.
* A /24 or /48 is a heuristic: a carrier-grade NAT or a university puts thousands of people in
  one, and an IPv6 user may get several /48s. The signals that use it say so.
* **Garbage in, garbage out unchanged**: a value that is not an IP address (empty, spaces
  around it, a hostname, a CIDR, leading zeros in an IPv4 octet, ``None`` turned into text) is
  returned as it is, so it is its own "network": two accounts share one only if they sent the
  same bad string, and no bad value is merged with a real network or with other bad values.
  Callers that must reject bad addresses validate them first (the records validator does).
"""

from __future__ import annotations

import functools
import ipaddress

__all__ = ["DUCKDB_NETWORK_UDF", "duckdb_network_sql", "network_of"]

#: Longer inputs are not addresses (the longest IPv6 text with a zone id is far shorter); they
#: are returned unchanged without being parsed or cached.
_MAX_LEN = 100


def network_of(ip: str) -> str:
    """The network of ``ip``: ``"a.b.c.0/24"`` for IPv4 (and IPv4-mapped IPv6), the canonical
    compressed ``"x:y:z::/48"`` for IPv6; ``ip`` itself, unchanged, if it is not an IP address.

    >>> network_of("192.0.2.77"), network_of("2001:db8::1"), network_of("::ffff:192.0.2.77")
    ('192.0.2.0/24', '2001:db8::/48', '192.0.2.0/24')
    >>> network_of("not an ip")
    'not an ip'
    """
    if len(ip) > _MAX_LEN:
        return ip
    return _network_of(ip)


@functools.lru_cache(maxsize=1 << 16)
def _network_of(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is None:
            return str(ipaddress.IPv6Network((int(addr) >> 80 << 80, 48)))
        addr = mapped
    return str(ipaddress.IPv4Network((int(addr) >> 8 << 8, 24)))


#: Name under which the scan registers :func:`network_of` as a DuckDB function (the fallback of
#: :func:`duckdb_network_sql` for the rare addresses SQL leaves to Python).
DUCKDB_NETWORK_UDF = "dg_network_of"

# An IPv4 octet as ipaddress accepts it: 0..255 without leading zeros.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
# Plain IPv6 text: hexadecimal groups, at most one "::", no embedded IPv4 and no zone id.
_H = "[0-9a-fA-F]{1,4}"
_V6 = "|".join(
    [
        f"({_H}:){{7}}{_H}",
        f"({_H}:){{1,7}}:",
        f"({_H}:){{1,6}}:{_H}",
        f"({_H}:){{1,5}}(:{_H}){{1,2}}",
        f"({_H}:){{1,4}}(:{_H}){{1,3}}",
        f"({_H}:){{1,3}}(:{_H}){{1,4}}",
        f"({_H}:){{1,2}}(:{_H}){{1,5}}",
        f"{_H}:(:{_H}){{1,6}}",
        f":((:{_H}){{1,7}}|:)",
    ]
)


def duckdb_network_sql(column: str) -> str:
    """A DuckDB SQL expression equal to ``network_of(column)`` for every value.

    Dotted-quad IPv4 and plain IPv6 are computed in SQL (the bulk of a log, at SQL speed);
    anything else (IPv4-mapped and other embedded-IPv4 forms, a /48 that is all zeros, zone ids,
    garbage) goes to the Python function registered as :data:`DUCKDB_NETWORK_UDF`, which the
    connection must have (``con.create_function(DUCKDB_NETWORK_UDF, network_of, ["VARCHAR"],
    "VARCHAR")``); DuckDB evaluates a ``CASE`` branch only for the rows that reach it. NULL gives
    NULL. ``column`` is pasted as is: pass a column name or a trusted expression, never user
    text.
    """
    c = column
    # The first three groups of the expanded IPv6 address: the groups before "::" (all of them
    # without one), padded with the zeros "::" stands for; leading zeros dropped, then trailing
    # zero groups (they are the "::" of the /48). Wrong when "::" is followed by six or more
    # groups (it then stands for fewer zeros than the padding), and NULL when the /48 is all
    # zeros (the unspecified and loopback addresses, IPv4-mapped ones in hexadecimal): those
    # are left to Python.
    padded = f"regexp_replace(regexp_replace({c}, '::.*$', ':0:0:0'), '^:', '0:')"
    first3 = f"lower(regexp_extract({padded}, '^[^:]*:[^:]*:[^:]*'))"
    unpadded = f"regexp_replace({first3}, '(^|:)0+([0-9a-f])', '\\1\\2', 'g')"
    short = f"regexp_replace({unpadded}, '(:0)+$', '')"
    v6 = (
        f"CASE WHEN regexp_matches({c}, '::([^:]+:){{5}}[^:]+$') THEN NULL "
        f"ELSE nullif({short}, '0') || '::/48' END"
    )
    return (
        f"CASE WHEN {c} IS NULL THEN NULL "
        f"WHEN regexp_full_match({c}, '{_V4}') "
        f"THEN array_to_string(string_split({c}, '.')[1:3], '.') || '.0/24' "
        f"ELSE coalesce(CASE WHEN regexp_full_match({c}, '{_V6}') THEN {v6} END, "
        f"{DUCKDB_NETWORK_UDF}({c})) END"
    )
