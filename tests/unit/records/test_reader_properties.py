"""Property tests: the reader never crashes, never loses a record, and is a fixed point."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.records import FieldError, exchange_from_mapping, read_log
from distillguard.testing import make_account, make_exchange, write_jsonl

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
TIMESTAMPS = st.sampled_from(
    ["2026-02-23T14:05:09Z", "2026-02-23T14:05:09.1+05:30", "2026-02-23", "yesterday", ""]
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "exchange_id": st.text(max_size=6) | JSON,
    "ts": TIMESTAMPS | JSON,
    "account_id": st.sampled_from(["acct-1", "acct-2", "nobody"]) | JSON,
    "ip": st.sampled_from(["10.1.2.3", "::1", "300.1.1.1", "x"]) | JSON,
    "model": st.text(max_size=5) | JSON,
    "messages": st.lists(
        st.fixed_dictionaries({"role": st.text(max_size=4), "content": st.text(max_size=8)}),
        max_size=3,
    )
    | JSON,
    "prompt_tokens": st.integers(-5, 10**6) | JSON,
    "completion_tokens": st.integers(0, 10**6) | JSON,
    "status": st.integers(0, 1000) | JSON,
    "latency_ms": st.floats(allow_nan=True) | JSON,
    "tools": st.lists(st.text(max_size=4), max_size=2) | JSON,
    "asn": st.integers(-1, 2**40) | JSON,
}
BASE = make_exchange().to_dict()


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    rec = dict(BASE)
    for name in draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=4)):
        rec[name] = draw(FIELD_VALUES[name])
    for name in draw(st.sets(st.sampled_from(sorted(BASE)), max_size=2)):
        rec.pop(name, None)
    rec.update(draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2)))
    return rec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=12), st.lists(st.binary(max_size=40), max_size=3))
def test_reader_never_loses_records(rows: list[dict[str, Any]], junk: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "log"
        write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
        lines: list[dict[str, Any] | bytes] = [*rows, *(j.replace(b"\n", b" ") for j in junk)]
        write_jsonl(folder / "exchanges.jsonl", lines)
        reader = read_log(folder, quarantine=Path(tmp) / "q.jsonl")
        list(reader.accounts())
        accepted = [e for batch in reader.exchanges() for e in batch]
        reader.quarantine.close()
        rep = reader.report.exchanges
        assert rep.read == rep.accepted + rep.quarantined
        assert len(accepted) == rep.accepted
        q = Path(tmp) / "q.jsonl"
        stored = q.read_bytes().splitlines() if q.exists() else []
        assert len(stored) == rep.quarantined
        # accepted records are a fixed point of validation
        for ex in accepted:
            assert exchange_from_mapping(orjson.loads(orjson.dumps(ex.to_dict()))) == ex


@settings(max_examples=300, deadline=None)
@given(records())
def test_validation_raises_only_field_errors(rec: dict[str, Any]) -> None:
    try:
        ex = exchange_from_mapping(rec)
    except FieldError as exc:
        assert exc.reason
        return
    assert ex.exchange_id == rec["exchange_id"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([f"id-{i}" for i in range(40)]), max_size=30), max_size=6),
    st.integers(0, 25),
)
def test_seen_ids_is_an_exact_set_in_memory_and_spilled(
    batches: list[list[str]], limit: int
) -> None:
    from distillguard.records._reader import _SeenIds

    seen = _SeenIds(limit=limit)
    reference: set[str] = set()
    try:
        for batch in batches:
            expected = []
            for i in batch:
                expected.append(i not in reference)
                reference.add(i)
            assert seen.add_new(batch) == expected
    finally:
        seen.close()
