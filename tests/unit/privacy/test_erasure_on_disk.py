"""Erased content leaves the SQLite files while the database stays open (issue 24, finding 6).

A gateway keeps its connection open; before the fix the erased text stayed in the ``-wal`` file
(and in freed pages) until shutdown.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distillguard.ledger import Ledger, audit_ledger
from distillguard.privacy import erase_account
from distillguard.records import Account, Exchange, Message
from distillguard.store import Store, open_store
from distillguard.store.base import new_salts

from ..ledger.conftest import signing_key

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CANARY = "ZQXJ-erase-me-7781"


def _exchange(i: int, account: str, text: str) -> Exchange:
    return Exchange(
        exchange_id=f"{account}-{i}",
        ts=T0 + timedelta(seconds=i),
        account_id=account,
        ip="198.51.100.4",
        model="m",
        messages=(Message("user", text),),
        prompt_tokens=10,
        completion_tokens=20,
        status=200,
        response=text[::-1] + " " + text,
    )


def _add(store: Store, exchanges: list[Exchange]) -> None:
    with store.transaction() as cur:
        store.add_accounts(
            cur,
            [Account(account_id=a, created_at=T0) for a in {e.account_id for e in exchanges}],
            run_id="t",
        )
        store.add_exchanges(cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)))


def _on_disk(path: Path) -> dict[str, int]:
    """How often the canary occurs in the database file and in its write-ahead log."""
    out = {}
    for suffix in ("", "-wal"):
        f = path.with_name(path.name + suffix)
        out[suffix or "db"] = f.read_bytes().count(CANARY.encode()) if f.exists() else 0
    return out


@pytest.mark.parametrize("scope", ["record", "content"])
@pytest.mark.parametrize("in_db_file", [False, True], ids=["in-wal", "in-db-file"])
def test_erased_content_is_in_neither_the_db_nor_the_wal(
    tmp_path: Path, scope: str, in_db_file: bool
) -> None:
    path = tmp_path / "store.sqlite"
    key = signing_key()
    eraser = open_store(f"sqlite:///{path}")
    gateway = open_store(f"sqlite:///{path}")  # another connection that holds the file open
    try:
        ledger = Ledger.attach(eraser)
        Ledger.attach(gateway)
        _add(eraser, [_exchange(i, "other", f"ordinary question {i}") for i in range(40)])
        long_text = f"{CANARY} " + "private words " * 600  # spills into overflow pages
        _add(
            eraser,
            [_exchange(i, "victim", f"{CANARY} short {i}") for i in range(5)]
            + [_exchange(99, "victim", long_text)],
        )
        assert gateway.get_exchange("victim-0") is not None  # the gateway has read the data
        if in_db_file:  # an automatic checkpoint already copied the pages into the file
            with sqlite3.connect(path) as other:
                other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert _on_disk(path)["db"] > 0
        with eraser.transaction() as cur:  # as SQLite builds without SQLITE_SECURE_DELETE are
            cur.execute("PRAGMA secure_delete=OFF")
        assert sum(_on_disk(path).values()) > 0  # the text is on disk before the erasure
        erase_account(
            eraser,
            account_id="victim",
            scope=scope,  # type: ignore[arg-type]
            reason="GDPR art. 17",
            actor="dpo",
            ledger=ledger,
            signing_key=key,
        )
        assert _on_disk(path) == {"db": 0, "-wal": 0}
        # the gateway goes on writing; nothing of the erased text comes back
        _add(gateway, [_exchange(i, "later", f"later question {i}") for i in range(100)])
        assert _on_disk(path) == {"db": 0, "-wal": 0}
        assert audit_ledger(Ledger.open(eraser), public_keys=[key.public_key()]).ok
    finally:
        gateway.close()
        eraser.close()


@pytest.mark.postgres
def test_postgres_erasure_vacuums(caplog: pytest.LogCaptureFixture) -> None:
    import uuid

    store = open_store(
        f"postgresql://postgres@127.0.0.1:5432/test?schema=dg_vac_{uuid.uuid4().hex[:10]}"
    )
    try:
        ledger = Ledger.attach(store)
        _add(store, [_exchange(i, "victim", f"{CANARY} {i}") for i in range(3)])
        with caplog.at_level(logging.WARNING, logger="distillguard.store"):
            erase_account(
                store,
                account_id="victim",
                reason="r",
                actor="a",
                ledger=ledger,
                signing_key=signing_key(),
            )
        assert not [r for r in caplog.records if "VACUUM" in r.getMessage()]
        with store.transaction() as cur:
            cur.execute("SELECT count(*) FROM exchanges")
            assert cur.fetchone()[0] == 0
    finally:
        store.drop_schema()  # type: ignore[attr-defined]
        store.close()


# -- a reader holds a read transaction during the erasure (issue 24 follow-up, gap A) ---------


def _victim_store(path: Path) -> tuple[Store, Ledger]:
    eraser = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(eraser)
    _add(eraser, [_exchange(i, "other", f"ordinary question {i}") for i in range(40)])
    long_text = f"{CANARY} " + "private words " * 600
    _add(eraser, [_exchange(i, "victim", f"{CANARY} {i} {long_text}") for i in range(5)])
    return eraser, ledger


def _erase_with_reader(path: Path, eraser: Store, ledger: Ledger) -> sqlite3.Connection:
    """Erase the victim while another connection holds a read transaction; returns it open."""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM exchanges").fetchone()[0] == 45
    started = time.monotonic()
    erase_account(
        eraser, account_id="victim", reason="r", actor="a", ledger=ledger, signing_key=signing_key()
    )
    assert time.monotonic() - started < 10  # the erasure does not hang on the reader
    # the reader's snapshot still needs the old page images: they cannot leave the -wal yet
    assert _on_disk(path)["-wal"] > 0
    return reader


@pytest.mark.parametrize("later", ["writes", "wait", "reopen"])
def test_erased_content_leaves_the_wal_once_a_reader_lets_go(
    tmp_path: Path, later: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillguard.store.sqlite import SQLiteStore

    if later != "wait":  # the background retry off: the later writes / the next open do it
        monkeypatch.setattr(SQLiteStore, "_start_scrubber", lambda self: None)
    path = tmp_path / "store.sqlite"
    eraser, ledger = _victim_store(path)
    gateway = open_store(f"sqlite:///{path}")  # opened before the erasure, as a running gateway
    try:
        reader = _erase_with_reader(path, eraser, ledger)
        holder = sqlite3.connect(path)  # keeps the file open: no checkpoint at the last close
        holder.execute("SELECT count(*) FROM accounts").fetchone()  # (after a read, in WAL mode)
        if later == "reopen":  # every DistillGuard connection goes while the reader is there
            gateway.close()
            eraser.close()
        reader.execute("COMMIT")
        reader.close()
        if later == "writes":
            assert _on_disk(path)["-wal"] > 0  # nothing else scrubbed it: the writes must
            for k in range(3):
                _add(gateway, [_exchange(100 * k + i, "later", f"later {i}") for i in range(5)])
        elif later == "wait":
            deadline = time.monotonic() + 10
            while sum(_on_disk(path).values()) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            assert _on_disk(path)["-wal"] > 0  # the mark outlives the processes that saw it
            eraser = gateway = open_store(f"sqlite:///{path}")
        assert _on_disk(path) == {"db": 0, "-wal": 0}
        _add(gateway, [_exchange(i, "after", f"after {i}") for i in range(50)])
        assert _on_disk(path) == {"db": 0, "-wal": 0}
        with gateway.transaction() as cur:  # the mark is cleared once the scrub completed
            cur.execute("SELECT count(*) FROM wal_scrub_pending")
            assert cur.fetchone()[0] == 0
        holder.close()
    finally:
        gateway.close()
        eraser.close()
