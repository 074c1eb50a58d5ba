"""The bulk path of ingest (issue 23) agrees with the record path, record for record.

``prepare_exchange`` may only accept what ``exchange_from_mapping`` accepts, and must encode
exactly the row the store writes for the frozen record and the commitments the ledger makes of
it; everything it does not accept goes through the record path, so verdicts and quarantine
entries are the record path's by construction. End to end: the same log (valid and broken
lines) ingested both ways gives the same counts, the same quarantine file, the same stored
records and a ledger that audits clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from distillguard.app.ingest import ingest_log
from distillguard.config import RetentionSettings
from distillguard.ledger import Ledger, audit_ledger, commit_parts, commit_record
from distillguard.privacy import RetentionPolicy
from distillguard.records import FieldError, exchange_from_mapping
from distillguard.records._bulk import prepare_exchange
from distillguard.store import open_store
from distillguard.store.base import exchange_row
from distillguard.testing import make_account, make_exchange, write_jsonl

ABSENT = object()

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
ODD: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.sampled_from(["", "\x00", "x\x00y", [], {}, [1], {"a": 1}, 12.0, -0.0, 2**53, 2**63]),
    TEXT,
)
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-02-01T00:00:00Z",
            "2026-02-01T00:00:00.1Z",
            "2026-02-01T00:00:00.037Z",
            "2026-02-01T00:00:00.123456Z",
            "2026-02-01T00:00:00.1234567Z",
            "2026-02-01T00:00:00.000000Z",
            "2026-02-01t00:00:00Z",
            "2026-02-01T00:00:00z",
            "2026-02-01 00:00:00Z",
            "2026-02-01T00:00:00+01:00",
            "2026-02-01T00:00:00-00:00",
            "2026-02-01T00:00:00",
            "2026-02-30T00:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-13-01T00:00:00Z",
            "0999-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "２０２６-02-01T00:00:00Z",
            "2026-02-01T00:00:00.Z",
        ]
    ),
    st.datetimes(
        min_value=__import__("datetime").datetime(1, 1, 2),
        max_value=__import__("datetime").datetime(9999, 12, 30),
    ).map(lambda d: d.isoformat() + "Z"),
    ODD,
)
IPS = st.one_of(
    st.sampled_from(
        [
            "203.0.113.7",
            "10.0.0.1",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "1.2.3",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4\x00",
            "",
        ]
    ),
    st.ip_addresses().map(str),
    ODD,
)
COUNTS = st.one_of(st.integers(min_value=0, max_value=100_000), ODD)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXT}
    ),
    st.fixed_dictionaries({"content": TEXT, "role": TEXT}),
    st.fixed_dictionaries({"role": TEXT, "content": TEXT, "name": TEXT}),
    st.fixed_dictionaries({"role": ODD, "content": ODD}),
    st.fixed_dictionaries({"role": TEXT}),
    ODD,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "exchange_id": st.one_of(st.from_regex(r"ex-[0-9a-z]{1,8}", fullmatch=True), ODD),
    "ts": TIMESTAMPS,
    "account_id": st.one_of(st.just("acct-1"), ODD),
    "api_key_id": st.one_of(st.none(), TEXT, ODD),
    "agent_id": st.one_of(st.none(), TEXT, ODD),
    "ip": IPS,
    "asn": st.one_of(st.none(), st.integers(min_value=0, max_value=4_294_967_295), ODD),
    "user_agent": st.one_of(st.none(), TEXT, ODD),
    "client_fingerprint": st.one_of(st.none(), TEXT, ODD),
    "model": st.one_of(st.just("provider-large"), ODD),
    "endpoint": st.one_of(st.none(), st.just("/v1/chat/completions"), ODD),
    "messages": st.one_of(st.lists(MESSAGE, max_size=4), ODD),
    "response": st.one_of(st.none(), TEXT, ODD),
    "reasoning": st.one_of(st.none(), TEXT, ODD),
    "tools": st.one_of(st.none(), st.lists(TEXT, max_size=3), st.lists(ODD, max_size=2), ODD),
    "prompt_tokens": COUNTS,
    "completion_tokens": COUNTS,
    "status": st.one_of(st.integers(min_value=100, max_value=599), ODD),
    "latency_ms": st.one_of(
        st.none(), st.floats(min_value=0, allow_nan=False), st.integers(0, 10**6), ODD
    ),
}
#: Every field present and well-formed most of the time; absent or odd some of the time.
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        **{name: strategy for name, strategy in FIELDS.items()},
        "extra_field": ODD,
        "_extra": st.one_of(st.just('{"k": 1}'), ODD),
    },
)
SALT = bytes(range(32))


def _check_agreement(obj: dict[str, Any]) -> bool:
    """Assert that the bulk path accepts only what the record path accepts, with the same row
    and commitments; returns whether the bulk path took the record."""
    prepared = prepare_exchange(obj)
    if prepared is None:
        return False
    try:
        exchange = exchange_from_mapping(obj)
    except FieldError as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"bulk path accepted a record the record path rejects: {exc.field}: {exc}")
    row = exchange_row(exchange, seq=0, salt=SALT, run_id="", now_us=0)
    assert prepared.exchange_id == exchange.exchange_id
    assert prepared.account_id == exchange.account_id
    assert prepared.values == row[:1] + row[2:21]
    assert [type(v) for v in prepared.values] == [type(v) for v in row[:1] + row[2:21]]
    reference = commit_record(exchange.to_dict(), SALT)  # RFC 8785 through the reference path
    assert commit_parts(prepared.meta, prepared.content, SALT) == (
        reference.leaf_hash,
        reference.content_hash,
    )
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS)
def test_bulk_accepts_only_what_the_record_path_accepts_and_encodes_it_the_same(
    obj: dict[str, Any],
) -> None:
    _check_agreement(obj)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({name: FIELDS[name] for name in FIELDS}))
def test_json_decoded_records_agree(obj: dict[str, Any]) -> None:
    try:
        line = orjson.dumps(obj)
    except TypeError:  # not JSON (e.g. a lone surrogate): a reader never hands such a dict
        assume(False)
    _check_agreement(orjson.loads(line))


VALID = st.builds(
    lambda i, ts, ip, text, tools, latency, asn, reasoning: make_exchange(
        f"ex-{i}",
        offset_s=ts,
        ip=ip,
        messages=(
            make_exchange().messages[0],
            type(make_exchange().messages[0])("user", text),
        ),
        tools=tools,
        latency_ms=latency,
        asn=asn,
        reasoning=reasoning,
        user_agent=text.replace("\x00", "") or None,
    ).to_dict(),
    st.integers(0, 10**6),
    st.floats(0, 10**9, allow_nan=False),
    st.ip_addresses().map(str),
    TEXT,
    st.one_of(st.none(), st.lists(TEXT, max_size=3).map(tuple)),
    st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e9, allow_nan=False)),
    st.one_of(st.none(), st.integers(0, 4_294_967_295)),
    st.one_of(st.none(), TEXT),
)


@settings(max_examples=300, deadline=None)
@given(VALID)
def test_well_formed_records_take_the_bulk_path(obj: dict[str, Any]) -> None:
    """Not vacuous: the shapes a real log has are encoded by the bulk path."""
    line = orjson.loads(orjson.dumps(obj))
    assume("%" not in line["ip"])  # scoped IPv6: the record path's ipaddress fallback
    assert _check_agreement(line), line


def _log_lines(tmp: Path) -> Path:
    log = tmp / "log"
    write_jsonl(log / "accounts.jsonl", [make_account(f"acct-{i}").to_dict() for i in range(3)])
    good = [
        make_exchange(f"ex-{i}", account_id=f"acct-{i % 3}", offset_s=i).to_dict()
        for i in range(40)
    ]
    odd = [
        {**good[0], "exchange_id": "ex-lower", "ts": "2026-02-01t00:00:00z"},  # record path
        {**good[0], "exchange_id": "ex-extra", "vendor": {"k": [1, 2]}},  # record path, extra
        {**good[0], "exchange_id": "ex-scoped", "ip": "fe80::1%eth0"},  # record path
        {**good[0], "exchange_id": "ex-float", "prompt_tokens": 12.0},  # record path
        {**good[0], "exchange_id": "ex-bad-ts", "ts": "2026-02-30T00:00:00Z"},  # quarantined
        {**good[0], "exchange_id": "ex-neg", "status": 42},  # quarantined
        {**good[0], "exchange_id": "ex-noacct", "account_id": "acct-none"},  # quarantined
        {**good[0], "exchange_id": "ex-nul", "model": "m\x00"},  # quarantined
        good[5],  # duplicate id: quarantined
    ]
    lines = [orjson.dumps(r) for r in good[:20]]
    lines += [b"", b"{not json", b"[1, 2]"]
    lines += [orjson.dumps(r) for r in odd]
    lines += [orjson.dumps(r) for r in good[20:]]
    (log / "exchanges.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return log


def _stored(store: Any) -> list[tuple[int, dict[str, Any]]]:
    return [
        (s.seq, s.exchange.to_dict())
        for batch in store.iter_exchanges(batch_size=1000)
        for s in batch
    ]


def _quarantine(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("atomic", [True, False])
def test_bulk_and_record_paths_store_and_quarantine_the_same(
    store_url: str, tmp_path: Path, atomic: bool
) -> None:
    log = _log_lines(tmp_path)
    outcomes = {}
    for bulk in (True, False):
        url = store_url
        if store_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'{bulk}.sqlite'}"
        elif bulk is False:
            url = store_url.replace("schema=", "schema=r")
        quarantine = tmp_path / f"q-{bulk}.jsonl"
        with open_store(url) as store:
            result = ingest_log(store, log, quarantine=quarantine, atomic=atomic, bulk=bulk)
            ledger = Ledger.open(store)
            report = audit_ledger(ledger, public_keys=[])
            assert report.ok and report.leaves_checked == result.exchanges.inserted
            outcomes[bulk] = (
                result.exchanges.to_dict(),
                result.accounts.to_dict(),
                _quarantine(quarantine),
                _stored(store),
                ledger.size,
            )
            # a second run adds nothing and says so, on both paths
            again = ingest_log(store, log, atomic=atomic, bulk=bulk)
            assert again.exchanges.inserted == 0
            assert again.exchanges.already_stored == result.exchanges.inserted
            if url.startswith("postgresql"):
                store.drop_schema()  # type: ignore[attr-defined]
    assert outcomes[True] == outcomes[False]
    counts, _, quarantined, stored, size = outcomes[True]
    assert counts == {"read": 51, "inserted": 44, "already_stored": 0, "quarantined": 7}
    assert sorted((q["line"], q["field"]) for q in quarantined) == [
        (22, None),
        (23, None),
        (28, "ts"),
        (29, "status"),
        (30, "account_id"),
        (31, "model"),
        (32, "exchange_id"),
    ]
    assert size == len(stored) == 44


def test_bulk_path_is_not_taken_when_content_is_minimised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Minimisation must see every stored record: with a minimising policy the record path
    runs (its insert hooks), never the bulk insert."""
    policy = RetentionPolicy.from_settings(RetentionSettings.model_validate({"minimise": "hash"}))
    assert policy.minimises
    log = _log_lines(tmp_path)
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:

        def refuse(*args: Any, **kw: Any) -> Any:
            raise AssertionError("bulk insert used with a minimising policy")

        monkeypatch.setattr(store, "add_exchange_rows", refuse)
        result = ingest_log(store, log, retention=policy)
        assert result.reconciles and result.exchanges.inserted == 44


def test_bulk_path_skips_what_an_earlier_ingest_stored(store_url: str, tmp_path: Path) -> None:
    """Half of a batch stored by an earlier run: the bulk insert skips exactly those rows (their
    seq is 0), appends leaves for the others only, and the ledger still audits clean."""
    accounts = [make_account(f"acct-{i}").to_dict() for i in range(3)]
    rows = [
        make_exchange(f"ex-{i:03d}", account_id=f"acct-{i % 3}", offset_s=i).to_dict()
        for i in range(60)
    ]
    first, full = tmp_path / "first", tmp_path / "full"
    write_jsonl(first / "accounts.jsonl", accounts)
    write_jsonl(first / "exchanges.jsonl", rows[::2])  # every other one
    write_jsonl(full / "accounts.jsonl", accounts)
    write_jsonl(full / "exchanges.jsonl", rows)
    with open_store(store_url) as store:
        assert ingest_log(store, first).exchanges.inserted == 30
        result = ingest_log(store, full, batch_size=16)
        assert result.exchanges.to_dict() == {
            "read": 60,
            "inserted": 30,
            "already_stored": 30,
            "quarantined": 0,
        }
        stored = _stored(store)
        assert sorted(r["exchange_id"] for _, r in stored) == [r["exchange_id"] for r in rows]
        seqs = [seq for seq, _ in stored]
        assert len(set(seqs)) == 60
        report = audit_ledger(Ledger.open(store), public_keys=[])
        assert report.ok and report.leaves_checked == 60, report.findings[:3]
