"""Extreme and hostile input: every record is accepted or quarantined, never an exception.

Issue 24, finding 9 (a valid timestamp whose UTC form is outside the datetime range crashed
``validate`` and ``ingest`` with exit 70) and the class "no exit 70 from input": Hypothesis feeds
the reader extreme values through JSONL and Parquet files, and the counts must reconcile.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA, ReadReport, read_log
from distillguard.records._reader import MAX_RAW_KEPT
from distillguard.testing import make_account, make_exchange, write_jsonl

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",  # the finding: valid RFC 3339, before year 1 in UTC
    "0001-01-01T13:59:59.999999+14:00",
    "9999-12-31T23:59:59-00:01",  # after year 9999 in UTC
    "9999-12-31T23:00:00-14:00",
]
EDGES_OK = ["0001-01-01T00:00:00Z", "0001-01-01T14:00:00+14:00", "9999-12-31T23:59:59.999999Z"]


def _ex(i: int, **kw: Any) -> dict[str, Any]:
    d = make_exchange(f"ex-{i}", offset_s=i).to_dict()
    d.update(kw)
    return d


def _read(folder: Path, **kw: Any) -> tuple[list[Any], list[Any], ReadReport, list[dict[str, Any]]]:
    q = folder.parent / "quarantine.jsonl"
    reader = read_log(folder, quarantine=q, **kw)
    accounts = [a for b in reader.accounts() for a in b]
    exchanges = [e for b in reader.exchanges() for e in b]
    reader.quarantine.close()
    rep = reader.report
    assert rep.reconciles
    assert rep.exchanges.accepted == len(exchanges) and rep.accounts.accepted == len(accounts)
    entries = [orjson.loads(x) for x in q.read_bytes().splitlines()] if q.exists() else []
    return accounts, exchanges, rep, entries


# -- finding 9: out-of-range timestamps ------------------------------------------------------------


def test_out_of_range_timestamps_are_quarantined_jsonl(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(
        folder / "accounts.jsonl",
        [
            make_account("acct-1").to_dict(),
            {**make_account("acct-2").to_dict(), "created_at": OUT_OF_RANGE[0]},
        ],
    )
    rows = [_ex(i, ts=ts) for i, ts in enumerate(OUT_OF_RANGE)]
    rows += [_ex(10 + i, ts=ts) for i, ts in enumerate(EDGES_OK)]
    write_jsonl(folder / "exchanges.jsonl", rows)
    accounts, exchanges, rep, entries = _read(folder)
    assert [a.account_id for a in accounts] == ["acct-1"]
    assert [e.exchange_id for e in exchanges] == ["ex-10", "ex-11", "ex-12"]
    assert exchanges[0].ts == datetime(1, 1, 1, tzinfo=UTC)
    assert rep.accounts.quarantined == 1 and rep.exchanges.quarantined == len(OUT_OF_RANGE)
    acc = entries[0]
    assert (acc["table"], acc["line"], acc["field"]) == ("accounts", 2, "created_at")
    ex_entries = [e for e in entries if e["table"] == "exchanges"]
    assert [e["line"] for e in ex_entries] == [1, 2, 3, 4]
    for entry in ex_entries:
        assert entry["field"] == "ts"
        assert entry["file"].endswith("exchanges.jsonl")
        assert "out of range" in entry["reason"] and "0001-01-01T00:00:00Z" in entry["reason"]


def test_out_of_range_and_unreadable_parquet_values_are_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    pq.write_table(
        pa.Table.from_pylist(
            [make_account("acct-1").to_dict() | {"created_at": datetime(2026, 1, 1, tzinfo=UTC)}],
            schema=ACCOUNT_SCHEMA,
        ),
        folder / "accounts.parquet",
    )
    good = [make_exchange(f"ex-{i}", offset_s=i) for i in range(3)]
    table = pa.Table.from_pylist(
        [{**e.to_dict(), "ts": e.ts} for e in good], schema=EXCHANGE_SCHEMA
    )
    # row 2: the finding's timestamp, stored in a column with a +14:00 zone
    plus14 = timezone(timedelta(hours=14))
    ts14 = pa.array(
        [
            datetime(2026, 1, 1, tzinfo=plus14),
            datetime(1, 1, 1, tzinfo=plus14),
            datetime(2026, 1, 1, tzinfo=plus14),
        ],
        pa.timestamp("us", tz="+14:00"),
    )
    pq.write_table(table.set_column(1, pa.field("ts", ts14.type), ts14), folder / "tz.parquet")
    # row 1 of another file: microseconds past year 9999 (Python cannot hold it)
    huge = pa.array([2**62, 0, 0], pa.timestamp("us", tz="UTC"))
    ids = pa.array(["big-0", "big-1", "big-2"])
    t2 = table.set_column(1, pa.field("ts", huge.type), huge).set_column(0, "exchange_id", ids)
    # row 3: a model name that is not UTF-8
    bad_utf8 = pa.Array.from_buffers(
        pa.string(),
        3,
        [
            None,
            pa.py_buffer(b"".join(n.to_bytes(4, "little") for n in (0, 1, 2, 5))),
            pa.py_buffer(b"mm\xed\xa0\x80"),
        ],
    )
    t2 = t2.set_column(t2.schema.get_field_index("model"), "model", bad_utf8)
    exchanges_dir = folder / "exchanges"
    exchanges_dir.mkdir()
    pq.write_table(
        table.set_column(1, pa.field("ts", ts14.type), ts14), exchanges_dir / "a.parquet"
    )
    pq.write_table(t2, exchanges_dir / "b.parquet")
    (folder / "tz.parquet").unlink()
    _, exchanges, rep, entries = _read(folder)
    assert sorted(e.exchange_id for e in exchanges) == ["big-1", "ex-0", "ex-2"]
    assert rep.exchanges.read == 6 and rep.exchanges.quarantined == 3
    where = {(Path(e["file"]).name, e["line"], e["field"]) for e in entries}
    assert where == {("a.parquet", 2, "ts"), ("b.parquet", 1, "ts"), ("b.parquet", 3, "model")}
    for entry in entries:
        assert entry["reason"] and entry["record_sha256"]


def test_validate_and_ingest_cli_quarantine_instead_of_exit_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillguard.cli.main import main
    from distillguard.store import open_store

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    write_jsonl(folder / "exchanges.jsonl", [_ex(1), _ex(2, ts=OUT_OF_RANGE[0]), _ex(3)])
    assert main(["-q", "validate", str(folder), "--quarantine", str(tmp_path / "v.jsonl")]) == 1
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    assert (
        main(
            [
                "-q",
                "ingest",
                str(folder),
                "--store",
                store,
                "--quarantine",
                str(tmp_path / "i.jsonl"),
            ]
        )
        == 1
    )
    with open_store(store) as s:
        assert s.count("accounts") == 1 and s.count("exchanges") == 2
    (entry,) = [orjson.loads(x) for x in (tmp_path / "i.jsonl").read_bytes().splitlines()]
    assert entry["field"] == "ts" and entry["line"] == 2


def test_values_the_store_cannot_write_are_quarantined(tmp_path: Path) -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(400):  # orjson reads 1,024 levels but writes only 254
        node.append([])
        node = node[0]
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    msg = {"role": "user", "content": "hi", "meta": deep}
    write_jsonl(
        folder / "exchanges.jsonl",
        [_ex(1, deep=deep), _ex(2, messages=[msg]), _ex(3, prompt_tokens=-1), _ex(4)],
    )
    _, exchanges, _, entries = _read(folder)
    assert [e.exchange_id for e in exchanges] == ["ex-4"]
    assert [(e["line"], e["field"]) for e in entries] == [
        (1, "deep"),
        (2, "messages[0]"),
        (3, "prompt_tokens"),
    ]
    assert "cannot be stored as JSON" in entries[0]["reason"]
    assert ">= 0" in entries[2]["reason"]  # token counts are counts


# -- quarantine caps ---------------------------------------------------------------------------


def test_quarantine_copy_is_capped_with_size_and_digest(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    big = _ex(1, status="bad", response="y" * (3 * MAX_RAW_KEPT))
    write_jsonl(folder / "exchanges.jsonl", [big])
    line = (folder / "exchanges.jsonl").read_bytes()
    _, _, _, (entry,) = _read(folder)
    assert entry["record_truncated"] is True
    assert entry["record_bytes"] == len(line)
    assert entry["record_sha256"] == hashlib.sha256(line).hexdigest()
    assert len(entry["record"].encode()) <= MAX_RAW_KEPT + 3


def test_gzip_bomb_cannot_fill_the_disk_through_the_quarantine(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    bad = b'{"exchange_id": "' + b"A" * 200_000 + b'"}\n'  # each line is missing every field
    n = 300
    with gzip.open(folder / "exchanges.jsonl.gz", "wb", compresslevel=9) as fh:
        for _ in range(n):
            fh.write(bad)
        fh.write(orjson.dumps(_ex(1)) + b"\n")
    compressed = (folder / "exchanges.jsonl.gz").stat().st_size
    assert compressed < 200_000 and n * len(bad) > 50_000_000  # small input, big expansion
    cap = 1_000_000
    _, exchanges, rep, entries = _read(folder, quarantine_max_bytes=cap)
    q = tmp_path / "quarantine.jsonl"
    assert q.stat().st_size <= cap
    assert len(exchanges) == 1 and rep.exchanges.quarantined == n
    assert rep.exchanges.read == rep.exchanges.accepted + rep.exchanges.quarantined
    assert len(entries) + rep.quarantine_unwritten == n and rep.quarantine_unwritten > 0
    assert any("reached its cap" in i.message for i in rep.issues)
    assert rep.to_dict()["quarantine_unwritten"] == rep.quarantine_unwritten


def test_quarantine_file_is_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    write_jsonl(folder / "exchanges.jsonl", [b"{broken"])
    _read(folder)
    assert stat.S_IMODE((tmp_path / "quarantine.jsonl").stat().st_mode) == 0o600


# -- property tests: extreme values through JSONL and Parquet -----------------------------------

INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1]),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -0.0, 5e-324])
TEXT = st.text(max_size=6) | st.sampled_from(["\x00", "\ud800", "a\udfffb", "\U0010ffff", ""])
STAMPS = st.sampled_from(
    [
        *OUT_OF_RANGE,
        *EDGES_OK,
        "2026-12-31T23:59:60Z",  # leap second
        "1972-06-30T23:59:60+00:00",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-02-23T14:05:09.1234567891+23:59",
        "2026-02-23T14:05:09-24:00",
        "2026-02-23T14:05:09",
    ]
) | st.builds(
    lambda y, off: f"{y:04d}-06-15T12:00:00{off}",
    st.integers(1, 9999),
    st.sampled_from(["Z", "+14:00", "-14:00", "+23:59", "-23:59"]),
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
ANY = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3),
    max_leaves=6,
) | st.builds(_nested, st.sampled_from([200, 253, 254, 255, 300, 1023, 1100]))
MESSAGES = (
    st.lists(
        st.fixed_dictionaries({"role": TEXT | ANY, "content": TEXT | ANY}, optional={"meta": ANY}),
        max_size=3,
    )
    | ANY
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "exchange_id": TEXT | ANY,
    "ts": STAMPS | ANY,
    "account_id": st.sampled_from(["acct-1", "nobody"]) | ANY,
    "ip": st.sampled_from(["10.0.0.1", "::1", "fe80::1%eth0", "999.1.1.1"]) | ANY,
    "model": TEXT | ANY,
    "messages": MESSAGES,
    "prompt_tokens": INTS | FLOATS | ANY,
    "completion_tokens": INTS | FLOATS | ANY,
    "status": INTS | ANY,
    "asn": INTS | ANY,
    "latency_ms": FLOATS | INTS | ANY,
    "tools": st.lists(TEXT, max_size=2) | ANY,
    "response": TEXT | ANY,
    "extra_thing": ANY,
}
BASE = make_exchange().to_dict()


@st.composite
def exchange_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = dict(BASE)
    for name in draw(st.sets(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4)):
        row[name] = draw(FIELDS[name])
    return row


def _jsonl_line(row: dict[str, Any]) -> bytes:
    """The row as JSON, written the way a hostile producer would (orjson refuses some values)."""
    try:
        return orjson.dumps(row)
    except TypeError:  # surrogates, ints past 64 bits, NaN: hand-written JSON-ish text
        return repr(row).encode("utf-8", errors="surrogatepass")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(exchange_rows(), min_size=1, max_size=8), STAMPS)
def test_jsonl_extremes_are_accepted_or_quarantined(
    rows: list[dict[str, Any]], created: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "log"
        write_jsonl(
            folder / "accounts.jsonl",
            [
                make_account("acct-1").to_dict(),
                {**make_account("acct-2").to_dict(), "created_at": created},
            ],
        )
        write_jsonl(folder / "exchanges.jsonl", [_jsonl_line(r).replace(b"\n", b" ") for r in rows])
        _, exchanges, rep, entries = _read(folder)
        assert rep.exchanges.read == len(rows)
        assert len(entries) == rep.accounts.quarantined + rep.exchanges.quarantined
        _assert_storable(exchanges)


def _assert_storable(exchanges: list[Any]) -> None:
    """What the reader accepts, the store can write: its JSON columns serialise."""
    from distillguard.store.base import exchange_row

    for ex in exchanges:
        assert ex.prompt_tokens >= 0 and ex.completion_tokens >= 0
        exchange_row(ex, seq=1, salt=b"s" * 16, run_id="r", now_us=0)


PARQUET_TS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from(
    [-62135596800000000, 253402300799999999, 253402300800000000, 0]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            PARQUET_TS,
            st.integers(-(2**63), 2**63 - 1),
            FLOATS,
            st.binary(max_size=6),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["UTC", "+14:00", "-14:00", "Asia/Kolkata"]),
)
def test_parquet_extremes_are_accepted_or_quarantined(
    values: list[tuple[int, int, float, bytes]], zone: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "log"
        write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
        n = len(values)
        base = pa.Table.from_pylist(
            [{**BASE, "exchange_id": f"e{i}", "ts": make_exchange().ts} for i in range(n)],
            schema=EXCHANGE_SCHEMA,
        )
        ts = pa.array([v[0] for v in values], pa.int64()).cast(pa.timestamp("us", tz=zone))
        offsets = [0]
        for v in values:
            offsets.append(offsets[-1] + len(v[3]))
        model = pa.Array.from_buffers(
            pa.string(),
            n,
            [
                None,
                pa.py_buffer(b"".join(o.to_bytes(4, "little") for o in offsets)),
                pa.py_buffer(b"".join(v[3] for v in values)),
            ],
        )
        t = base.set_column(1, pa.field("ts", ts.type), ts)
        t = t.set_column(t.schema.get_field_index("model"), "model", model)
        t = t.set_column(
            t.schema.get_field_index("prompt_tokens"),
            "prompt_tokens",
            pa.array([v[1] for v in values], pa.int64()),
        )
        t = t.set_column(
            t.schema.get_field_index("latency_ms"),
            "latency_ms",
            pa.array([v[2] for v in values], pa.float64()),
        )
        pq.write_table(t, folder / "exchanges.parquet")
        _, exchanges, rep, entries = _read(folder)
        assert rep.exchanges.read == n
        assert len(entries) == rep.exchanges.quarantined
        _assert_storable(exchanges)
