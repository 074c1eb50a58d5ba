"""network_of: the /24 or /48 of an address, its DuckDB twin, and every consumer agreeing on it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from distillguard._internal.net import DUCKDB_NETWORK_UDF, duckdb_network_sql, network_of

# ---------------------------------------------------------------- spellings of an address


@st.composite
def ipv6_spellings(draw: st.DrawFn) -> tuple[int, str]:
    """An IPv6 address and one of its many legal spellings: any zero run (not only the longest)
    compressed to "::", groups with or without leading zeros, upper or lower case, sometimes
    the last 32 bits as a dotted quad."""
    zero_heavy = st.one_of(st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF))
    groups = draw(st.lists(zero_heavy, min_size=8, max_size=8))
    value = 0
    for g in groups:
        value = value << 16 | g
    dotted = draw(st.booleans())
    n = 6 if dotted else 8

    def fmt(g: int) -> str:
        text = f"{g:04x}" if draw(st.booleans()) else f"{g:x}"
        return text.upper() if draw(st.booleans()) else text

    parts = [fmt(g) for g in groups[:n]]
    tail = [".".join(str(b) for b in (value & 0xFFFFFFFF).to_bytes(4, "big"))] if dotted else []
    runs: list[tuple[int, int]] = []
    for i in range(n):
        for j in range(i + 1, n + 1):
            if all(g == 0 for g in groups[i:j]):
                single_ok: bool = draw(st.booleans())
                if j - i > 1 or single_ok:
                    runs.append((i, j))
    compress: bool = draw(st.booleans())
    if runs and compress:
        i, j = draw(st.sampled_from(runs))
        text = ":".join(parts[:i]) + "::" + ":".join(parts[j:] + tail)
    else:
        text = ":".join(parts + tail)
    return value, text


def _v4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


ipv4 = st.integers(0, 2**32 - 1)
#: Text that is mostly not an address, and some near misses.
garbage = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789abcdefABCDEF:.%/ ", max_size=45),
    st.sampled_from(
        [
            "",
            " 1.2.3.4",
            "1.2.3.4 ",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4/24",
            "2001:db8:::1",
            "2001:db8::1::2",
            "1:2:3:4:5:6:7:8:9",
            ":1:2:3:4:5:6:7",
            "12345::",
            "::ffff:1.2.3",
            "localhost",
            "None",
        ]
    ),
)


# ---------------------------------------------------------------- the Python function


@given(ipv4)
def test_ipv4_is_its_slash_24(value: int) -> None:
    a, b, c, _ = value.to_bytes(4, "big")
    assert network_of(_v4_text(value)) == f"{a}.{b}.{c}.0/24"


@given(ipv6_spellings())
@example((0x20010DB8 << 96 | 1, "2001:db8::1"))
@example((0x20010DB8 << 96 | 1, "2001:0DB8:0000:0000:0000:0000:0000:0001"))
def test_every_spelling_of_an_ipv6_address_has_one_canonical_network(
    case: tuple[int, str],
) -> None:
    value, text = case
    assert ipaddress.IPv6Address(text) == ipaddress.IPv6Address(value)  # the spelling is legal
    net = network_of(text)
    mapped = ipaddress.IPv6Address(value).ipv4_mapped
    if mapped is not None:  # deliberately the IPv4 /24
        assert net == network_of(str(mapped))
        return
    parsed = ipaddress.IPv6Network(net)
    assert parsed.prefixlen == 48
    assert ipaddress.IPv6Address(value) in parsed
    assert net == str(parsed)  # canonical (RFC 5952) text
    assert ":::" not in net
    # the same as every other spelling of the address
    assert net == network_of(str(ipaddress.IPv6Address(value)))
    assert net == network_of(ipaddress.IPv6Address(value).exploded.upper())


def test_the_issue_20_examples() -> None:
    """Compressed IPv6 gave ``2001:db8:::/48`` in some copies and ``2001:db8::/48`` in others."""
    assert network_of("2001:db8::1") == "2001:db8::/48"
    assert network_of("2001:DB8:0:0:1::1") == "2001:db8::/48"
    assert network_of("2001:db8:0:1::") == "2001:db8::/48"
    assert network_of("2001:db8:12:34::") == "2001:db8:12::/48"
    assert network_of("::1") == "::/48"
    assert network_of("fe80::1%eth0") == "fe80::/48"  # the zone id is dropped


@given(ipv4)
def test_ipv4_mapped_ipv6_is_the_ipv4_network(value: int) -> None:
    v4 = _v4_text(value)
    assert network_of(f"::ffff:{v4}") == network_of(v4)
    assert network_of(f"::FFFF:{value >> 16:x}:{value & 0xFFFF:x}") == network_of(v4)
    assert network_of(f"0:0:0:0:0:ffff:{v4}") == network_of(v4)


@given(garbage)
def test_garbage_is_returned_unchanged(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        assert network_of(text) == text
    else:  # an address after all: it has a network
        assert network_of(text).endswith(("/24", "/48"))


def test_very_long_input_is_returned_unparsed() -> None:
    text = "1" * 10_000
    assert network_of(text) is text


# ---------------------------------------------------------------- the DuckDB twin


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.create_function(DUCKDB_NETWORK_UDF, network_of, ["VARCHAR"], "VARCHAR")
    yield c
    c.close()


def _sql(con: duckdb.DuckDBPyConnection, values: list[str | None]) -> list[str | None]:
    con.execute("CREATE OR REPLACE TEMP TABLE t (i INTEGER, ip VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    rows = con.execute(f"SELECT {duckdb_network_sql('ip')} FROM t ORDER BY i").fetchall()
    return [r[0] for r in rows]


_many = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_many
@given(
    st.lists(
        st.one_of(
            ipv4.map(_v4_text),
            ipv6_spellings().map(lambda c: c[1]),
            ipv4.map(lambda v: f"::ffff:{_v4_text(v)}"),
            garbage,
        ),
        min_size=1,
        max_size=60,
    )
)
def test_duckdb_twin_equals_network_of(con: duckdb.DuckDBPyConnection, values: list[str]) -> None:
    assume(all("\x00" not in v for v in values))  # DuckDB VARCHAR cannot hold NUL
    assert _sql(con, list(values)) == [network_of(v) for v in values]


def test_duckdb_twin_fixed_cases(con: duckdb.DuckDBPyConnection) -> None:
    values: list[str | None] = [
        "192.0.2.77",
        "2001:db8::1",
        "2001:0DB8:0:0::7",
        "1::2:3:4:5:6:7",  # "::" for one group after a long tail (left to Python)
        "::1:2:3:4:5:6:7",
        "::1:2:3:4:5:6",
        "1:2::3:4:5:6:7",
        "0:0:1::",
        "::ffff:c000:24d",
        "::ffff:192.0.2.77",
        "fe80::1%eth0",
        "01.2.3.4",
        "",
        None,
    ]
    assert _sql(con, values) == [None if v is None else network_of(v) for v in values]


def test_duckdb_twin_leaves_only_rare_forms_to_python() -> None:
    """Ordinary IPv4 and IPv6 are computed in SQL: the Python fallback is not called for them."""
    calls: list[str] = []

    def counting(ip: str) -> str:
        calls.append(ip)
        return network_of(ip)

    c = duckdb.connect()
    c.create_function(DUCKDB_NETWORK_UDF, counting, ["VARCHAR"], "VARCHAR")
    got = c.execute(
        f"SELECT {duckdb_network_sql('ip')} FROM (VALUES ('10.1.2.3'), ('2001:db8:5::9'), "
        "('2001:DB8:0:0:0:0:0:1'), ('::ffff:10.1.2.3')) v(ip)"
    ).fetchall()
    assert [r[0] for r in got] == ["10.1.2.0/24", "2001:db8:5::/48", "2001:db8::/48", "10.1.2.0/24"]
    assert calls == ["::ffff:10.1.2.3"]


# ---------------------------------------------------------------- every consumer agrees


_SPELLINGS = ["2001:db8::1", "2001:0db8:0:0::2", "2001:DB8:0:0:0:0:0:3"]


def _ipv6_log(folder: Path) -> Path:
    from distillguard.testing import make_account, make_exchange, write_log

    accounts = [make_account(f"acct-{i}") for i in range(len(_SPELLINGS))]
    exchanges = [
        make_exchange(f"ex-{i}", account_id=f"acct-{i}", ip=ip, offset_s=float(i))
        for i, ip in enumerate(_SPELLINGS)
    ]
    write_log(folder, accounts, exchanges)
    return folder


def test_regression_ipv6_network_is_the_same_in_every_consumer(tmp_path: Path) -> None:
    """Issue 20: the scan (DuckDB), the online monitor, the console and the evidence report each
    had their own /48 and disagreed on compressed IPv6. One address family, three spellings of
    one /48: every consumer must give ``2001:db8::/48`` for all three."""
    from distillguard.app.ingest import ingest_log
    from distillguard.console import ConsoleQueries
    from distillguard.monitor._load import load_log
    from distillguard.monitor.online import OnlineScorer
    from distillguard.store import infrastructure, open_store
    from distillguard.testing import make_exchange

    log = _ipv6_log(tmp_path / "log")
    want = {"2001:db8::/48"}

    dcon = duckdb.connect()
    load_log(dcon, log)
    assert {r[0] for r in dcon.execute("SELECT DISTINCT net FROM ex").fetchall()} == want

    keys = {
        key
        for ip in _SPELLINGS
        for kind, key in OnlineScorer._keys_of(make_exchange("x", ip=ip))
        if kind == "net"
    }
    assert keys == want

    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    try:
        ingest_log(store, log)
        accounts = [f"acct-{i}" for i in range(len(_SPELLINGS))]
        console = {e.key for e in ConsoleQueries(store).infrastructure(accounts) if e.kind == "net"}
        shared = {u.key for u in infrastructure(store, accounts) if u.kind == "net"}
    finally:
        store.close()
    assert console == want
    assert shared == want  # the evidence report's query (store.infrastructure)
