"""SQLite backend: one file, WAL mode, the embedded default."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Literal

from distillguard._internal.files import ensure_private
from distillguard.errors import StoreConnectionError
from distillguard.records import Exchange
from distillguard.store._migrations import open_schema
from distillguard.store.base import (
    CORE_DDL,
    EXCHANGE_COLUMNS,
    Cursor,
    Store,
    StoredExchange,
    exchange_row,
)

__all__ = ["SQLiteStore"]

logger = logging.getLogger(__name__)

#: The secondary (non-unique) indexes of ``exchanges``: ``(name, CREATE INDEX statement)``. Their
#: keys are not in insertion order, so maintaining them row by row touches pages all over the
#: file; a bulk load into an empty table builds them once at its end instead (one sort).
_DEFERRABLE_INDEXES: tuple[tuple[str, str], ...] = tuple(
    (ddl.split()[5], ddl)
    for ddl in CORE_DDL
    if ddl.startswith("CREATE INDEX IF NOT EXISTS ") and ddl.split()[7] == "exchanges"
)


#: Marks an erasure whose bytes may still be in the ``-wal`` file: written in the erasure's own
#: transaction, deleted once a ``wal_checkpoint(TRUNCATE)`` has completed after it. One row; a
#: later erasure replaces its token. Every DistillGuard connection to the file reads it at the
#: end of each write transaction, so whichever process writes next finishes the scrub.
_SCRUB_DDL = (
    "CREATE TABLE IF NOT EXISTS wal_scrub_pending "
    "(id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL, since_us INTEGER NOT NULL)"
)
#: How long :meth:`SQLiteStore.finish_erasure` waits for writers and readers to let the
#: checkpoint finish before it hands over to the background retry.
_SCRUB_WAIT_MS = 1000
#: How long the background retry after an erasure keeps trying (then the next write or the next
#: open of the store does it), and its longest pause between tries.
_SCRUB_RETRY_S = 120.0
_SCRUB_RETRY_MAX_PAUSE_S = 0.5
#: ``PRAGMA journal_size_limit``: after a checkpoint resets the write-ahead log, a ``-wal`` file
#: larger than this is truncated to it (SQLite otherwise keeps the file at its largest size).
_JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
_BUSY_TIMEOUT_MS = 60_000


def _scrub_wal(conn: sqlite3.Connection, *, wait_ms: int) -> bool:
    """If an erasure is pending, try ``wal_checkpoint(TRUNCATE)`` on ``conn`` (waiting at most
    ``wait_ms`` for other connections) and clear the mark when it completed.

    Returns True when nothing is pending any more (or this connection cannot tell), False when
    the checkpoint could not finish (a reader or writer held the log).
    """
    try:
        row = conn.execute("SELECT token FROM wal_scrub_pending").fetchone()
    except sqlite3.Error:
        return True  # no such table (a store from before the mark): nothing to retry
    if row is None:
        return True
    try:
        conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            return False
        # only this token: an erasure committed since then keeps its own mark
        conn.execute("DELETE FROM wal_scrub_pending WHERE token = ?", (row[0],))
    except sqlite3.Error as exc:
        logger.debug("WAL scrub after erasure not done yet: %s", exc)
        return False
    finally:
        with suppress(sqlite3.Error):
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    logger.info("WAL checkpointed and truncated after an erasure: erased bytes are gone")
    return True


class SQLiteStore(Store):
    """A store in one SQLite file (``sqlite:///path/to/file.sqlite``; ``sqlite://`` = memory).

    The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives
    a crash of the process; write transactions take the write lock at their start
    (``BEGIN IMMEDIATE``), so concurrent writers queue instead of failing half-way.
    """

    dialect: ClassVar[Literal["sqlite", "postgresql"]] = "sqlite"
    _TYPES: ClassVar[dict[str, str]] = {
        "blob": "BLOB",
        "bigint": "INTEGER",
        "text": "TEXT",
        "double": "REAL",
    }

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        super().__init__(url)
        path = url.removeprefix("sqlite://")
        path = path.removeprefix("/")
        self.path: Path | None = Path(path) if path and path != ":memory:" else None
        try:
            if self.path is not None:  # 0600; SQLite gives -wal/-shm the database's mode
                ensure_private(self.path)
            self._conn = sqlite3.connect(
                str(self.path) if self.path else ":memory:",
                isolation_level=None,
                check_same_thread=False,
                timeout=60.0,
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA temp_store=MEMORY")
            self._conn.execute("PRAGMA cache_size=-65536")
            self._conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreConnectionError(
                f"cannot open SQLite store {self.path or ':memory:'}: {exc}",
                hint="check that the folder exists and is writable",
            ) from None
        self._depth = 0
        self._scrub_stop = threading.Event()
        self._scrubber: threading.Thread | None = None
        try:
            open_schema(self, check=check_schema)  # a new file is created at the head version
        except BaseException:
            self._conn.close()
            raise
        _scrub_wal(self._conn, wait_ms=0)  # an erasure left pending by an earlier process

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        cur = self._conn.cursor()
        if self._depth:
            self._depth += 1
            try:
                yield cur
            finally:
                self._depth -= 1
            return
        cur.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield cur
            pending = self._scrub_pending()
        except BaseException:
            self._depth = 0
            self._conn.rollback()
            raise
        self._depth = 0
        self._conn.commit()
        if pending:  # an erasure's bytes may still be in -wal: try again (no waiting)
            _scrub_wal(self._conn, wait_ms=0)

    def _scrub_pending(self) -> bool:
        """Whether an erasure awaits its WAL scrub (read in the write transaction: one row)."""
        try:
            return self._conn.execute("SELECT 1 FROM wal_scrub_pending").fetchone() is not None
        except sqlite3.OperationalError:  # during migrate(), before the table exists
            return False

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Inside a write transaction: when ``exchanges`` is empty, drop its secondary indexes
        (``(account_id, ts)`` and ``(ts)``) for the duration and build them again at the end.

        Measured on 1,000,000 exchanges, maintaining them row by row made each insert cost more
        as the table grew (random pages of two indexes evicted from the cache by the table's
        appended pages): 10 -> 17 us per row, against 7 -> 8 us plus a 3 s build at the end.
        The primary key and ``seq`` stay (they decide what is a duplicate). Everything happens
        in the caller's transaction: other connections keep seeing the indexes (WAL snapshot),
        and if the transaction rolls back the indexes are back as they were. A table that
        already holds rows keeps its indexes (rebuilding would cost more than it saves).
        """
        if not self._depth:
            raise RuntimeError("bulk_load() must be used inside a transaction")
        cur = self._conn.cursor()
        if cur.execute("SELECT 1 FROM exchanges LIMIT 1").fetchone() is not None:
            yield
            return
        for name, _ in _DEFERRABLE_INDEXES:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
        yield  # an exception propagates: the transaction rolls back, indexes included
        for _, ddl in _DEFERRABLE_INDEXES:
            cur.execute(self.ddl(ddl))

    def close(self) -> None:
        """Close the database file (a pending erasure scrub is tried once more first)."""
        self._scrub_stop.set()
        if self._scrubber is not None:
            self._scrubber.join(timeout=5.0)
        _scrub_wal(self._conn, wait_ms=0)
        self._conn.close()

    def prepare_erasure(self, cur: Cursor) -> None:
        """``secure_delete`` on (see the base class), and the scrub mark set in the erasure's
        own transaction, so that a crash before :meth:`finish_erasure` still leaves it."""
        super().prepare_erasure(cur)
        cur.execute(
            "INSERT OR REPLACE INTO wal_scrub_pending (id, token, since_us) VALUES (1, ?, ?)",
            (secrets.token_hex(8), time.time_ns() // 1000),
        )

    def finish_erasure(self) -> None:
        """Checkpoint the WAL into the database file and truncate it (see the base class).

        The checkpoint cannot finish while another connection holds a read transaction on an
        older snapshot. Then the erasure stays marked as pending: a background thread retries
        (every half second at most, for :data:`_SCRUB_RETRY_S`), and every later write
        transaction of any DistillGuard connection to the file, and every open of the store,
        tries again without waiting, until one completes and clears the mark.
        """
        if _scrub_wal(self._conn, wait_ms=_SCRUB_WAIT_MS):
            return
        logger.warning(
            "WAL checkpoint after erasure could not finish (another connection holds a read "
            "transaction); erased bytes remain in %s-wal until it ends: retrying in the "
            "background and after each later write",
            self.path,
        )
        self._start_scrubber()

    def _start_scrubber(self) -> None:
        if self.path is None or (self._scrubber is not None and self._scrubber.is_alive()):
            return
        path = self.path
        stop = self._scrub_stop

        def retry() -> None:
            deadline = time.monotonic() + _SCRUB_RETRY_S
            pause = 0.02
            while not stop.wait(pause):
                try:
                    conn = sqlite3.connect(str(path), isolation_level=None, timeout=0)
                except sqlite3.Error:
                    return
                try:
                    if _scrub_wal(conn, wait_ms=50):
                        return
                finally:
                    conn.close()
                if time.monotonic() > deadline:
                    logger.warning(
                        "WAL scrub after erasure still blocked after %.0f s; the next write to "
                        "%s (or the next open of it) retries",
                        _SCRUB_RETRY_S,
                        path,
                    )
                    return
                pause = min(pause * 2, _SCRUB_RETRY_MAX_PAUSE_S)

        self._scrubber = threading.Thread(target=retry, name="dg-wal-scrub", daemon=True)
        self._scrubber.start()

    def _insert_exchanges(
        self,
        cur: Cursor,
        batch: Sequence[tuple[Exchange, bytes]],
        *,
        run_id: str,
        now_us: int,
    ) -> list[StoredExchange]:
        cur.execute("SELECT coalesce(max(seq), 0) FROM exchanges")
        base = int(cur.fetchone()[0])
        rows: list[tuple[Any, ...]] = []
        stored: list[StoredExchange] = []
        for i, (exchange, salt) in enumerate(batch, start=1):
            row = exchange_row(exchange, seq=base + i, salt=salt, run_id=run_id, now_us=now_us)
            rows.append(row)
            stored.append(StoredExchange(exchange=exchange, salt=salt, seq=base + i))
        cols = ", ".join(EXCHANGE_COLUMNS)
        marks = ", ".join("?" * len(EXCHANGE_COLUMNS))
        before = self._conn.total_changes
        cur.executemany(f"INSERT OR IGNORE INTO exchanges ({cols}) VALUES ({marks})", rows)
        if self._conn.total_changes - before == len(rows):
            return stored
        # Some ids were already stored: keep exactly the rows whose seq we wrote.
        cur.execute(
            "SELECT seq FROM exchanges WHERE seq > ? AND seq <= ?", (base, base + len(rows))
        )
        written = {int(r[0]) for r in cur.fetchall()}
        return [s for s in stored if s.seq in written]

    def _insert_rows(
        self, cur: Cursor, rows: Sequence[Sequence[Any]], *, run_id: str, now_us: int
    ) -> list[int]:
        cur.execute("SELECT coalesce(max(seq), 0) FROM exchanges")
        base = int(cur.fetchone()[0])
        full = [(r[0], base + i, *r[1:], run_id, now_us) for i, r in enumerate(rows, start=1)]
        cols = ", ".join(EXCHANGE_COLUMNS)
        marks = ", ".join("?" * len(EXCHANGE_COLUMNS))
        before = self._conn.total_changes
        cur.executemany(f"INSERT OR IGNORE INTO exchanges ({cols}) VALUES ({marks})", full)
        seqs = list(range(base + 1, base + 1 + len(rows)))
        if self._conn.total_changes - before == len(rows):
            return seqs
        # Some ids were already stored: keep exactly the seqs we wrote.
        cur.execute(
            "SELECT seq FROM exchanges WHERE seq > ? AND seq <= ?", (base, base + len(rows))
        )
        written = {int(r[0]) for r in cur.fetchall()}
        return [s if s in written else 0 for s in seqs]
