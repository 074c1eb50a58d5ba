"""Ingest on failure (issue 24, finding 9): all or nothing, and bad records never break it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.app.ingest import ingest_log
from distillguard.errors import LogFormatError
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_jsonl


def _log_with_a_corrupt_second_file(root: Path) -> Path:
    folder = root / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account(f"acct-{i}").to_dict() for i in range(3)])
    rows = [make_exchange(f"ex-{i}", account_id=f"acct-{i % 3}").to_dict() for i in range(20)]
    write_jsonl(folder / "exchanges" / "a.jsonl", rows)
    (folder / "exchanges" / "b.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    return folder


def _runs(store: Any) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        cur.execute("SELECT summary FROM ingest_runs")
        return [orjson.loads(r[0]) for r in cur.fetchall()]


def test_failed_ingest_stores_nothing(store_url: str, tmp_path: Path) -> None:
    log = _log_with_a_corrupt_second_file(tmp_path)
    with open_store(store_url) as store:
        with pytest.raises(LogFormatError, match="not a readable Parquet file"):
            ingest_log(store, log, batch_size=4)
        # accounts and the 20 exchanges of a.jsonl were written in the run's transaction and
        # rolled back with it: no accounts without their exchanges, no half log
        assert store.count("accounts") == 0 and store.count("exchanges") == 0
        (summary,) = _runs(store)
        assert summary["rolled_back"] is True and "LogFormatError" in summary["failed"]
        assert summary["exchanges"]["inserted"] == 0
        (log / "exchanges" / "b.parquet").unlink()
        result = ingest_log(store, log, batch_size=4)  # the repaired log goes in whole
        assert result.exchanges.inserted == 20 and result.accounts.inserted == 3
        assert store.count("exchanges") == 20


def test_batch_commits_keep_what_was_committed_and_a_rerun_completes(
    store_url: str, tmp_path: Path
) -> None:
    log = _log_with_a_corrupt_second_file(tmp_path)
    with open_store(store_url) as store:
        with pytest.raises(LogFormatError):
            ingest_log(store, log, batch_size=4, atomic=False)
        assert store.count("accounts") == 3 and store.count("exchanges") == 20
        (summary,) = _runs(store)
        assert summary["rolled_back"] is False
        (log / "exchanges" / "b.parquet").unlink()
        result = ingest_log(store, log, batch_size=4, atomic=False)
        assert result.exchanges.already_stored == 20 and result.reconciles


@pytest.mark.parametrize(
    ("bulk", "method"), [(True, "add_exchange_rows"), (False, "add_exchanges")]
)
def test_store_error_mid_run_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool, method: str
) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    write_jsonl(folder / "exchanges.jsonl", [make_exchange(f"ex-{i}").to_dict() for i in range(9)])
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        real = getattr(store, method)
        calls = {"n": 0}

        def failing(*args: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full")
            return real(*args, **kw)

        monkeypatch.setattr(store, method, failing)
        with pytest.raises(OSError, match="disk full"):
            ingest_log(store, folder, batch_size=4, bulk=bulk)
        assert store.count("accounts") == 0 and store.count("exchanges") == 0
        with store.transaction() as cur:  # the ledger's leaves went with their rows
            cur.execute("SELECT coalesce(max(size), 0) FROM ledger_state")
            assert cur.fetchone()[0] == 0


BAD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-01:00",
        "2026-12-31T23:59:60Z",
        -1,
        2**63,
        -(2**63) - 1,
        1e308,
        None,
        [[[[[]]]]],
        "\x00",
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ts", "prompt_tokens", "completion_tokens", "status", "asn", "ip"]),
            BAD_VALUES,
        ),
        max_size=6,
    )
)
def test_quarantined_records_never_break_ingest(bad: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "log"
        write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
        rows = [
            {**make_exchange(f"bad-{i}").to_dict(), name: value}
            for i, (name, value) in enumerate(bad)
        ]
        rows.append(make_exchange("good").to_dict())
        write_jsonl(folder / "exchanges.jsonl", rows)
        with open_store("sqlite://") as store:
            result = ingest_log(store, folder, quarantine=Path(tmp) / "q.jsonl")
            assert result.reconciles
            assert result.exchanges.read == len(rows)
            assert store.count("exchanges") == result.exchanges.inserted >= 1
            assert store.count("accounts") == 1
