"""Ingest a log into each store backend, re-ingest, export and read the export back."""

from __future__ import annotations

from pathlib import Path

import orjson

from distillguard.app.ingest import ingest_log
from distillguard.records import read_log
from distillguard.store import open_store
from distillguard.store.export import export_log
from distillguard.testing import make_account, make_exchange, write_jsonl, write_log


def _log(tmp_path: Path, n: int = 50) -> Path:
    accounts = [make_account(f"acct-{i}") for i in range(5)]
    exchanges = [make_exchange(f"ex-{i}", account_id=f"acct-{i % 5}", offset_s=i) for i in range(n)]
    return write_log(tmp_path / "log", accounts, exchanges, fmt="jsonl.gz")


def test_ingest_reingest_and_export(store_url: str, tmp_path: Path) -> None:
    log = _log(tmp_path)
    with open_store(store_url) as store:
        first = ingest_log(store, log, batch_size=7, quarantine=tmp_path / "q.jsonl")
        assert first.exchanges.to_dict() == {
            "read": 50,
            "inserted": 50,
            "already_stored": 0,
            "quarantined": 0,
        }
        assert first.accounts.inserted == 5 and first.reconciles
        second = ingest_log(store, log, batch_size=7)
        assert second.exchanges.inserted == 0 and second.exchanges.already_stored == 50
        assert second.accounts.already_stored == 5
        assert store.count("exchanges") == 50
        export_log(store, tmp_path / "export", fmt="parquet")
    reader = read_log(tmp_path / "export")
    accounts = [a for b in reader.accounts() for a in b]
    exchanges = [e for b in reader.exchanges() for e in b]
    assert reader.report.ok and len(accounts) == 5
    original = read_log(log)
    list(original.accounts())
    expected = [e.to_dict() for b in original.exchanges() for e in b]
    assert [e.to_dict() for e in exchanges] == expected


def test_ingest_quarantines_and_reconciles(store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    rows = [make_exchange(f"ex-{i}").to_dict() for i in range(6)]
    rows[2]["status"] = "ok"
    rows[4] = rows[1]  # duplicate id inside the log
    write_jsonl(folder / "exchanges.jsonl", [*rows, b"{garbage"])
    quarantine = tmp_path / "q.jsonl"
    with open_store(store_url) as store:
        result = ingest_log(store, folder, quarantine=quarantine)
        assert result.exchanges.to_dict() == {
            "read": 7,
            "inserted": 4,
            "already_stored": 0,
            "quarantined": 3,
        }
        assert store.count("exchanges") == 4
    lines = [orjson.loads(x) for x in quarantine.read_bytes().splitlines()]
    assert [(q["line"], q["field"]) for q in lines] == [
        (3, "status"),
        (7, None),
        (5, "exchange_id"),
    ]


def test_exchanges_may_reference_accounts_stored_earlier(store_url: str, tmp_path: Path) -> None:
    first = write_log(tmp_path / "day1", [make_account("acct-1")], [make_exchange("ex-1")])
    second = write_log(tmp_path / "day2", [], [make_exchange("ex-2")])
    with open_store(store_url) as store:
        ingest_log(store, first)
        result = ingest_log(store, second)
        assert result.exchanges.inserted == 1 and result.exchanges.quarantined == 0
