"""Bulk ingest (issue 23): flat per-record cost without changing what ingest guarantees.

Two causes of the cost growing with the log were removed: full garbage collections walking the
run's growing id set (automatic collection is off during a run, young generations collected per
batch), and row-by-row maintenance of the two secondary indexes of ``exchanges`` (an atomic run
into an empty SQLite table builds them once at its end, in the same transaction).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from distillguard.app.ingest import ingest_log
from distillguard.errors import LogFormatError
from distillguard.store import open_store
from distillguard.store.base import Cursor, StoredExchange
from distillguard.testing import make_account, make_exchange, write_jsonl

SECONDARY = {"exchanges_account_ts", "exchanges_ts"}


def _log(folder: Path, first: int, count: int) -> Path:
    write_jsonl(folder / "accounts.jsonl", [make_account(f"acct-{i}").to_dict() for i in range(3)])
    rows = [
        make_exchange(f"ex-{i}", account_id=f"acct-{i % 3}", offset_s=i).to_dict()
        for i in range(first, first + count)
    ]
    write_jsonl(folder / "exchanges.jsonl", rows)
    return folder


def _indexes(cur: Cursor) -> set[str]:
    cur.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'exchanges'")
    return {r[0] for r in cur.fetchall()} & SECONDARY


class _Spy:
    """An insert hook that records, per batch, the secondary indexes and the GC state."""

    def __init__(self) -> None:
        self.indexes: list[set[str]] = []
        self.gc_enabled: list[bool] = []

    def __call__(self, cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        self.indexes.append(_indexes(cur))
        self.gc_enabled.append(gc.isenabled())


def _stored_indexes(store: Any) -> set[str]:
    with store.transaction() as cur:
        return _indexes(cur)


def test_atomic_ingest_into_an_empty_table_builds_the_indexes_at_the_end(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        spy = _Spy()
        store.insert_hooks.register("spy", spy)
        result = ingest_log(store, _log(tmp_path / "a", 0, 12), batch_size=5)
        assert result.exchanges.inserted == 12 and result.reconciles
        assert spy.indexes == [set(), set(), set()]  # not maintained row by row
        assert _stored_indexes(store) == SECONDARY  # built before the commit
        with store.transaction() as cur:  # and used
            cur.execute(
                "EXPLAIN QUERY PLAN SELECT exchange_id FROM exchanges WHERE account_id = ? "
                "AND ts > ?",
                ("acct-1", 0),
            )
            assert "exchanges_account_ts" in " ".join(str(r) for r in cur.fetchall())
            cur.execute("SELECT count(*) FROM exchanges WHERE account_id = 'acct-1'")
            assert cur.fetchone()[0] == 4
        # a table that already holds rows keeps its indexes during the next run
        spy.indexes.clear()
        result = ingest_log(store, _log(tmp_path / "b", 12, 6), batch_size=5)
        assert result.exchanges.inserted == 6
        assert spy.indexes == [SECONDARY, SECONDARY]


def test_commit_batches_keeps_the_indexes(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        spy = _Spy()
        store.insert_hooks.register("spy", spy)
        ingest_log(store, _log(tmp_path / "a", 0, 7), batch_size=5, atomic=False)
        assert spy.indexes == [SECONDARY, SECONDARY]  # other connections see each commit


def test_a_failed_atomic_run_leaves_the_indexes_as_they_were(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [make_account("acct-1").to_dict()])
    write_jsonl(
        folder / "exchanges" / "a.jsonl", [make_exchange(f"ex-{i}").to_dict() for i in range(9)]
    )
    (folder / "exchanges" / "b.parquet").write_bytes(b"PAR1 not parquet PAR1")
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        spy = _Spy()
        store.insert_hooks.register("spy", spy)
        with pytest.raises(LogFormatError):
            ingest_log(store, folder, batch_size=4)
        assert spy.indexes and all(not i for i in spy.indexes)  # dropped during the run
        assert store.count("exchanges") == 0
        assert _stored_indexes(store) == SECONDARY  # rolled back with the run


def test_bulk_load_outside_a_transaction_is_refused(tmp_path: Path) -> None:
    with (
        open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store,
        pytest.raises(RuntimeError, match="inside a transaction"),
        store.bulk_load(),
    ):
        pass


@pytest.mark.parametrize("atomic", [True, False])
def test_no_automatic_gc_during_a_run_and_the_state_comes_back(
    tmp_path: Path, atomic: bool
) -> None:
    assert gc.isenabled()
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        spy = _Spy()
        store.insert_hooks.register("spy", spy)
        ingest_log(store, _log(tmp_path / "a", 0, 7), batch_size=5, atomic=atomic)
        assert spy.gc_enabled == [False, False]
        assert gc.isenabled()
        # a failing run restores it too
        store.insert_hooks.register("fail", _fail)
        with pytest.raises(OSError, match="disk full"):
            ingest_log(store, _log(tmp_path / "b", 7, 3), batch_size=5, atomic=atomic)
        assert gc.isenabled()
        # and a caller that had turned it off keeps it off
        store.insert_hooks.unregister("fail")
        gc.disable()
        try:
            ingest_log(store, _log(tmp_path / "c", 10, 3), batch_size=5, atomic=atomic)
            assert not gc.isenabled()
        finally:
            gc.enable()


def _fail(cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
    raise OSError("disk full")


def test_young_generations_are_still_collected_during_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distillguard.app.ingest as ingest_module

    calls: list[int] = []
    monkeypatch.setattr(ingest_module, "_COLLECT_EVERY", 5)
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(generation))
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        ingest_log(store, _log(tmp_path / "a", 0, 12), batch_size=3)
    # read 3, 6 (collect), 9, 12 (collect): young generations only, never a full collection
    assert calls == [1, 1]


@pytest.mark.postgres
def test_postgres_staging_table_holds_no_dead_rows_across_batches_of_one_run(
    tmp_path: Path,
) -> None:
    from distillguard.testing import postgres_store_url

    sizes: list[int] = []

    def staging_size(cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        cur.execute("SELECT pg_relation_size('dg_stage')")
        sizes.append(int(cur.fetchone()[0]))

    with postgres_store_url() as url, open_store(url) as store:
        store.insert_hooks.register("staging_size", staging_size)
        result = ingest_log(store, _log(tmp_path / "a", 0, 900), batch_size=300)
        assert result.exchanges.inserted == 900 and store.count("exchanges") == 900
    # emptied with TRUNCATE after each bulk batch: rows DELETEd in a run that is one
    # transaction stayed as dead tuples, and each later batch scanned them all again
    assert sizes == [0, 0, 0]


def test_other_connections_keep_the_indexes_while_an_atomic_run_loads(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite"
    seen: list[set[str]] = []

    def other_connection(cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        reader = sqlite3.connect(str(path))
        try:
            rows = reader.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'exchanges'"
            ).fetchall()
            seen.append({r[0] for r in rows} & SECONDARY)
        finally:
            reader.close()

    with open_store(f"sqlite:///{path}") as store:
        store.insert_hooks.register("other_connection", other_connection)
        ingest_log(store, _log(tmp_path / "a", 0, 7), batch_size=5)
    assert seen == [SECONDARY, SECONDARY]  # the WAL snapshot before the run's transaction
