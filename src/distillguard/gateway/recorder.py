"""Recording exchanges in the store and the ledger before the response completes.

:class:`ExchangeRecorder` owns one store connection in one writer thread (a store is used from
one thread at a time) with the ledger attached, so that every exchange row and its ledger leaf
commit in the same transaction. A request hands its exchange over with :meth:`record` and
awaits the commit; only then does the gateway send (the end of) the response, so an
acknowledged exchange is always durable.

Durability:

* ``"sync"``: one transaction per exchange, committed and flushed to disk before the answer.
* ``"batch"``: group commit. The writer takes every exchange waiting at the start of a
  transaction (at most ``max_batch``, after waiting at most ``max_delay_s`` for more) and commits
  them together; each request still waits for its own group's commit. If a group's transaction
  fails, its exchanges are committed again one per transaction, so that an exchange the store
  refuses fails alone.

For a SQLite store the write-ahead log is ``fsync``-ed after each commit (the store runs with
``synchronous=NORMAL``, which survives a process crash but not a power loss); PostgreSQL flushes
its WAL at commit by default (``synchronous_commit = on``).

Extra rows (policy actions) can ride in the same transaction (:meth:`record` ``rows``).

Failure mode open (``spool``): a group the store refuses for want of a connection (the server
down, the network cut: :func:`store_unreachable`) is appended to the local
:class:`~distillguard.gateway.spool.ExchangeSpool` instead, ``fsync``-ed, and its requests are
answered as if committed. From then on every group goes to the spool (so that the order stays
the order of arrival) until a replay thread has moved every spooled record into the store, in
order, exactly once by exchange id; then the writer commits to the store again. A value the
store refuses (not a connection failure) still fails its request. Extra rows are spooled when
they carry a ``spool_form`` (``(kind, JSON object)``) that ``row_decoders[kind]`` turns back
into a :data:`RowWriter`; a group with a row that cannot be spooled fails instead.

``inline=True`` commits in the event loop's own thread instead of a writer thread: the exchanges
that arrive during one turn of the loop are committed together at the end of it (natural group
commit, no waiting), which saves two thread hand-offs per request. It is what the embedded mode
uses (SQLite, ``batch``, no per-commit fsync: a commit is a write to the WAL, a fraction of a
millisecond); a commit that waits for a disk flush or a network round trip (``sync``,
PostgreSQL) belongs in the writer thread, where it does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from distillguard._internal.timeutil import to_micros
from distillguard.errors import StorageError, StoreConnectionError
from distillguard.gateway.spool import ExchangeSpool
from distillguard.records import Account, Exchange, account_from_mapping, exchange_from_mapping
from distillguard.store import Store, open_store
from distillguard.store.base import ACCOUNT_COLUMNS, Cursor, account_row, new_salts

__all__ = [
    "SPOOLED",
    "ExchangeRecorder",
    "RecordedExchange",
    "RecorderStats",
    "RowWriter",
    "store_unreachable",
]

SPOOLED = -1
"""The ``seq`` of an exchange acknowledged from the spool (its store seq comes with replay)."""

logger = logging.getLogger(__name__)

RowWriter = Callable[[Store, Cursor], None]
"""Writes extra rows with the store's cursor inside the exchange transaction."""


@dataclass(slots=True)
class _Item:
    exchange: Exchange
    account: Account | None
    rows: Sequence[RowWriter]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[int] | None
    done: threading.Event | None = None
    result: int | BaseException | None = None


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """A committed exchange: its store sequence number."""

    exchange_id: str
    seq: int


@dataclass(slots=True)
class RecorderStats:
    """Counters of the writer (read without a lock: monotonic integers)."""

    exchanges: int = 0
    transactions: int = 0
    failures: int = 0
    largest_batch: int = 0
    commit_seconds: float = 0.0
    spooled: int = 0
    replayed: int = 0


_STOP = object()


class ExchangeRecorder:
    """The single writer of exchanges (see the module documentation).

    Args:
        store_url: the store (the writer opens its own connection).
        durability: ``"sync"`` or ``"batch"``.
        max_batch: most exchanges per transaction (batch mode).
        max_delay_s: longest wait for more exchanges before committing (batch mode).
        ledger_origin: the ledger name if this creates the ledger.
        prepare: called once with the writer's store (create component tables).
        fsync: flush the SQLite write-ahead log after each commit.
        on_commit: called (in the writer thread) with the size of each committed group.
        inline: commit in the event loop's thread instead of a writer thread (see the module
            documentation); only with an embedded (SQLite) store and no per-commit fsync.
        spool: failure mode open: where groups go while the store cannot be reached (see the
            module documentation); None: such a group fails its requests (failure mode closed).
        row_decoders: extra rows' ``spool_form`` kinds and what turns them back into writers.
        replay_interval_s: how often the replay thread tries the store while it is down.
        on_spool: called with the number of exchanges spooled (+) or replayed (-).
    """

    def __init__(
        self,
        *,
        store_url: str,
        durability: Literal["sync", "batch"] = "batch",
        max_batch: int = 256,
        max_delay_s: float = 0.001,
        ledger_origin: str | None = None,
        prepare: Callable[[Store], None] | None = None,
        fsync: bool = True,
        on_commit: Callable[[int], None] | None = None,
        inline: bool = False,
        spool: ExchangeSpool | None = None,
        row_decoders: Mapping[str, Callable[[dict[str, Any]], RowWriter]] | None = None,
        replay_interval_s: float = 1.0,
        on_spool: Callable[[int], None] | None = None,
    ) -> None:
        if durability not in ("sync", "batch"):
            raise ValueError("durability must be 'sync' or 'batch'")
        self.store_url = store_url
        self.durability = durability
        self.max_batch = 1 if durability == "sync" else max(1, max_batch)
        self.max_delay_s = 0.0 if durability == "sync" else max(0.0, max_delay_s)
        self.fsync = fsync
        self._on_commit = on_commit
        self.stats = RecorderStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._known_accounts: set[str] = set()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._ledger_origin = ledger_origin
        self._prepare = prepare
        self._closed = False
        self.inline = inline
        self._commit_lock = threading.Lock()
        self._pending: list[_Item] = []
        self._flush_scheduled = False
        self.spool = spool
        self._row_decoders = dict(row_decoders or {})
        self._replay_interval_s = replay_interval_s
        self._on_spool = on_spool
        self._spool_lock = threading.Lock()  # the writer's choice (spool or store) vs the flip
        self._spooling = spool is not None and not spool.empty  # records left from before
        self._replay_wake = threading.Event()
        self._broken = False  # the writer's store was found unreachable: reopen before use
        self._retry_at = 0.0
        self._store: Store
        self._wal: str | None = None
        self._replayer: threading.Thread | None = None
        if spool is not None:
            self._replayer = threading.Thread(
                target=self._replay_loop, name="dg-spool-replay", daemon=True
            )
            self._replayer.start()
        if inline:
            self._store, self._wal = self._open()
            self._thread: threading.Thread | None = None
            return
        self._thread = threading.Thread(target=self._run, name="dg-recorder", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def __repr__(self) -> str:
        return f"ExchangeRecorder(durability={self.durability!r}, max_batch={self.max_batch})"

    @property
    def spooling(self) -> bool:
        """True while exchanges go to the spool (the store was unreachable, or the spool still
        holds records to replay)."""
        return self._spooling

    @property
    def store_down(self) -> bool:
        """True while the store is known to be unreachable (its last use failed for want of a
        connection, and no new connection has opened since), or exchanges go to the spool."""
        return self._broken or self._spooling

    @property
    def alive(self) -> bool:
        """True while the recorder accepts exchanges (its writer thread runs)."""
        if self._closed:
            return False
        return self._thread is None or self._thread.is_alive()

    # -- producer side --------------------------------------------------------------------

    async def record(
        self,
        exchange: Exchange,
        *,
        account: Account | None = None,
        rows: Sequence[RowWriter] = (),
    ) -> RecordedExchange:
        """Store ``exchange`` (and its account if new, and ``rows``) and wait for the commit.

        Raises:
            StorageError: the transaction failed or the recorder is closed.
        """
        if self._closed:
            raise StorageError("the exchange recorder is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        item = _Item(exchange, account, rows, loop, future)
        if self.inline:
            self._pending.append(item)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush_inline)
        else:
            self._queue.put(item)
        seq = await future
        return RecordedExchange(exchange.exchange_id, seq)

    def record_blocking(
        self, exchange: Exchange, *, account: Account | None = None, rows: Sequence[RowWriter] = ()
    ) -> RecordedExchange:
        """:meth:`record` for threads without an event loop."""
        if self._closed:
            raise StorageError("the exchange recorder is closed")
        item = _Item(exchange, account, rows, None, None, threading.Event())
        if self.inline:
            with self._commit_lock:
                self._commit([item])
        else:
            self._queue.put(item)
        assert item.done is not None
        item.done.wait()
        if isinstance(item.result, BaseException):
            raise item.result
        assert isinstance(item.result, int)
        return RecordedExchange(exchange.exchange_id, item.result)

    def close(self, *, timeout_s: float = 30.0) -> None:
        """Commit what is queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._stop_replayer(timeout_s)
        if self._thread is None:
            with self._commit_lock:
                while self._pending:
                    batch, self._pending = (
                        self._pending[: self.max_batch],
                        self._pending[self.max_batch :],
                    )
                    self._commit(batch)
                self._store.close()
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self.spool is not None:
            self.spool.close()

    def _stop_replayer(self, timeout_s: float) -> None:
        if self._replayer is not None:
            self._replay_wake.set()
            self._replayer.join(timeout_s)

    # -- writer thread --------------------------------------------------------------------

    def _open(self) -> tuple[Store, str | None]:
        from distillguard.ledger import Ledger

        store = open_store(self.store_url)
        if self._ledger_origin:
            Ledger.attach(store, origin=self._ledger_origin)
        else:
            Ledger.attach(store)
        if self._prepare is not None:
            self._prepare(store)
        wal = None
        path = getattr(store, "path", None)
        if self.fsync and store.dialect == "sqlite" and path is not None:
            wal = f"{path}-wal"
        return store, wal

    def _flush_inline(self) -> None:
        """Commit the exchanges that arrived since the last flush (in the event loop)."""
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush_inline)
        else:
            self._flush_scheduled = False
        if batch:
            with self._commit_lock:
                self._commit(batch)

    def _run(self) -> None:
        try:
            store, wal = self._open()
        except BaseException as exc:  # reported to the constructor
            self._startup_error = exc
            self._ready.set()
            return
        self._store, self._wal = store, wal
        self._ready.set()
        try:
            self._loop()
        finally:
            self._store.close()

    def _gather(self, first: Any) -> tuple[list[_Item], bool]:
        batch: list[_Item] = [first]
        stop = False
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._commit(batch)
            if stop:
                # drain anything queued after the stop marker
                rest: list[_Item] = []
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        rest.append(item)
                if rest:
                    self._commit(rest)
                return

    def _usable(self) -> bool:
        """Whether the writer's store can be tried: after it was found unreachable, a new
        connection is opened (at most once per ``replay_interval_s``; refused at once while the
        server is down) instead of waiting for the old pool's timeout on every group."""
        if not self._broken:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._replay_interval_s
        try:
            store, wal = self._open()
        except Exception as exc:
            logger.warning("the store is still unreachable: %s", type(exc).__name__)
            return False
        old, self._store, self._wal, self._broken = self._store, store, wal, False
        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
        logger.warning("the store answers again: exchanges are committed to it")
        return True

    def _commit(self, batch: list[_Item]) -> None:
        """Commit ``batch`` as one transaction; if that fails, each exchange in its own.

        One exchange that cannot be stored (a value the database refuses) then fails alone
        instead of failing every request of its group.
        """
        if self.spool is not None and self._spooling:
            with self._spool_lock:
                if self._spooling:  # the replay may have caught up meanwhile
                    self._deliver(batch, self._to_spool(batch))
                    return
        if self._usable():
            store, wal = self._store, self._wal
            outcome = self._transaction(store, wal, batch)
        else:
            outcome = _UnreachableError(ConnectionError("the store is unreachable"))
        if isinstance(outcome, _UnreachableError):
            self._unreachable(batch, outcome)
            return
        if not isinstance(outcome, BaseException) or len(batch) == 1:
            self._deliver(batch, outcome)
            return
        logger.warning("recording a group of %d failed; retrying one by one", len(batch))
        for i, item in enumerate(batch):
            one = self._transaction(self._store, self._wal, [item])
            if isinstance(one, _UnreachableError):  # the server went away meanwhile
                self._unreachable(batch[i:], one)
                return
            self._deliver([item], one)

    def _unreachable(self, batch: list[_Item], failure: _UnreachableError) -> None:
        """The store cannot be reached: spool ``batch`` (open) or fail it (closed), and stop
        using the writer's connection until a new one opens (:meth:`_usable`)."""
        if not self._broken:
            self._broken = True
            self._retry_at = time.monotonic() + self._replay_interval_s
        if self.spool is not None:
            with self._spool_lock:
                self._spooling = True
                self._deliver(batch, self._to_spool(batch))
            logger.warning(
                "the store is unreachable (%s): exchanges go to the spool %s",
                failure.cause,
                self.spool.path,
            )
            self._replay_wake.set()
            return
        self._deliver(batch, StorageError(f"the exchange could not be recorded: {failure.cause}"))

    # -- the spool (failure mode open) -----------------------------------------------------

    def _to_spool(self, batch: list[_Item]) -> list[int] | BaseException:
        """Append ``batch`` to the spool (called under the spool lock)."""
        assert self.spool is not None
        try:
            self.spool.append([self._encode(item) for item in batch])
        except StorageError as exc:
            logger.error("spooling %d exchanges failed: %s", len(batch), exc)
            self.stats.failures += 1
            return exc
        self.stats.spooled += len(batch)
        if self._on_spool is not None:
            self._on_spool(len(batch))
        return [SPOOLED] * len(batch)

    def _encode(self, item: _Item) -> bytes:
        rows: list[list[Any]] = []
        for write in item.rows:
            form = getattr(write, "spool_form", None)
            if form is None or form[0] not in self._row_decoders:
                raise StorageError("an extra row of this exchange cannot be spooled")
            rows.append([form[0], form[1]])
        return orjson.dumps(
            {
                "exchange": item.exchange.to_dict(),
                "account": item.account.to_dict() if item.account is not None else None,
                "rows": rows,
            }
        )

    def _decode(self, payload: bytes) -> tuple[Exchange, Account | None, list[RowWriter]]:
        obj = orjson.loads(payload)
        account = obj.get("account")
        return (
            exchange_from_mapping(obj["exchange"]),
            account_from_mapping(account) if account is not None else None,
            [self._row_decoders[kind](data) for kind, data in obj.get("rows", [])],
        )

    def _replay_loop(self) -> None:
        """Move spooled records into the store, in order (the replay thread)."""
        store: Store | None = None
        try:
            while not self._closed:
                if not self._spooling:
                    self._replay_wake.wait(self._replay_interval_s)
                    self._replay_wake.clear()
                    continue
                try:
                    if store is None:
                        store = self._open()[0]
                    self._replay_some(store)
                except Exception as exc:
                    logger.warning(
                        "spool replay: the store is still unreachable (%s); %d records wait",
                        type(exc).__name__,
                        self.spool.pending_records if self.spool else 0,
                    )
                    if store is not None and not store_unreachable(exc):
                        logger.error("spool replay failed: %s", exc)
                    self._replay_wake.wait(self._replay_interval_s)
                    self._replay_wake.clear()
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

    def _replay_some(self, store: Store) -> None:
        """Replay one chunk; when the spool is empty after it, switch back to the store."""
        spool = self.spool
        assert spool is not None
        payloads, cursor = spool.read(self.max_batch)
        if payloads:
            items = [
                _Item(exchange, account, rows, None, None)
                for exchange, account, rows in map(self._decode, payloads)
            ]
            outcome = self._transaction(store, None, items, count=False)
            if isinstance(outcome, BaseException):
                raise outcome.cause if isinstance(outcome, _UnreachableError) else outcome
            spool.advance(cursor, len(payloads))
            self.stats.replayed += len(payloads)
            if self._on_spool is not None:
                self._on_spool(-len(payloads))
        with self._spool_lock:
            if spool.empty and self._spooling:
                self._spooling = False
                self._retry_at = 0.0  # the writer reconnects at its next group
                logger.warning("the spool is replayed: exchanges go to the store again")

    def wait_replayed(self, timeout_s: float = 30.0) -> bool:
        """Wait until nothing is spooled (tests, shutdown); True if so."""
        deadline = time.monotonic() + timeout_s
        while self._spooling and time.monotonic() < deadline:
            self._replay_wake.set()
            time.sleep(0.05)
        return not self._spooling

    def _transaction(
        self, store: Store, wal: str | None, batch: list[_Item], *, count: bool = True
    ) -> list[int] | BaseException:
        started = time.perf_counter()
        outcome: list[int] | BaseException
        try:
            salts = new_salts(len(batch))
            now_us = to_micros(datetime.now(UTC))
            accounts: dict[str, Account] = {}
            for item in batch:
                a = item.account
                if a is not None and a.account_id not in self._known_accounts:
                    accounts.setdefault(a.account_id, a)
            with store.transaction() as cur:
                if accounts:
                    _add_accounts(store, cur, list(accounts.values()))
                stored = store.add_exchanges(
                    cur,
                    [(item.exchange, s) for item, s in zip(batch, salts, strict=True)],
                    run_id="gateway",
                    now_us=now_us,
                )
                for item in batch:
                    for write in item.rows:
                        write(store, cur)
            if wal is not None:
                _fsync_path(wal)
            if count:
                self._known_accounts.update(accounts)
            seqs = {s.exchange.exchange_id: s.seq for s in stored}
            outcome = [seqs.get(item.exchange.exchange_id, -1) for item in batch]
            self.stats.exchanges += len(stored)
            self.stats.transactions += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            if self._on_commit is not None and stored:
                self._on_commit(len(stored))
        except Exception as exc:
            logger.error(
                "recording %d exchanges failed: %s: %s",
                len(batch),
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            )
            self.stats.failures += 1
            if store_unreachable(exc):
                outcome = _UnreachableError(exc)
            else:
                outcome = StorageError(f"the exchange could not be recorded: {type(exc).__name__}")
        self.stats.commit_seconds += time.perf_counter() - started
        return outcome

    @staticmethod
    def _deliver(batch: list[_Item], outcome: list[int] | BaseException) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]] = {}
        for i, item in enumerate(batch):
            value: Any = outcome if isinstance(outcome, BaseException) else outcome[i]
            if item.loop is not None and item.future is not None:
                by_loop.setdefault(item.loop, []).append((item.future, value))
            elif item.done is not None:
                item.result = value
                item.done.set()
        for loop, pairs in by_loop.items():
            if _running_loop() is loop:
                _resolve(pairs)
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, pairs)


def _close_quietly(store: Store) -> None:
    with contextlib.suppress(Exception):
        store.close()


class _UnreachableError(StorageError):
    """A transaction failed because the store could not be reached (internal)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the store is unreachable: {type(cause).__name__}")
        self.cause = cause


def store_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the store cannot be reached (server down, connection lost, no
    connection within the pool's timeout), not that it refused what was written."""
    if isinstance(exc, StoreConnectionError | ConnectionError | TimeoutError):
        return True
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # no PostgreSQL driver: SQLite stores are local files
        return False
    return isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout
    )


def _add_accounts(store: Store, cur: Cursor, accounts: list[Account]) -> None:
    """Insert accounts, skipping stored ones without a race between replicas (ON CONFLICT)."""
    cols = ", ".join(ACCOUNT_COLUMNS)
    marks = ", ".join("?" * len(ACCOUNT_COLUMNS))
    cur.executemany(
        store.q(
            f"INSERT INTO accounts ({cols}) VALUES ({marks}) ON CONFLICT (account_id) DO NOTHING"
        ),
        [account_row(a, run_id="gateway") for a in accounts],
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(pairs: list[tuple[asyncio.Future[int], Any]]) -> None:
    for future, value in pairs:
        if future.done():
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
