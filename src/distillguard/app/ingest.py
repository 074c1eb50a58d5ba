"""Ingest: loading an exchange log into the store, its ledger and the retention policy.

An application service above :mod:`~distillguard.store`, :mod:`~distillguard.ledger` and
:mod:`~distillguard.privacy`: it attaches the ledger (every stored exchange becomes a leaf,
appended in the same transaction as its row) and, where the retention policy minimises content,
the minimiser after it, then reads the log in validated batches through the store.

Every record read is accounted for: accepted records are inserted, or counted as already stored
when their id is in the store from an earlier ingest (so re-ingesting a log adds nothing and says
so); rejected records go to the quarantine file.

By default a run is one transaction: if it fails half-way (an unreadable file, a store error,
an interrupt), nothing of it stays in the store, so there are never accounts without the
exchanges of the same log; the ``ingest_runs`` row records the failure. ``atomic=False`` commits
each batch instead (shorter locks next to a live gateway); a failed run then leaves the batches
committed before the failure, and re-running the same log completes it.

:func:`checkpoint_after_ingest` signs a checkpoint of the ledger after a run, unless nothing was
added since the latest one.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from distillguard._internal.timeutil import to_micros
from distillguard.ledger import DEFAULT_ORIGIN, Ledger, commit_exchange, commit_parts
from distillguard.privacy import Minimiser, RetentionPolicy
from distillguard.records import (
    MAX_QUARANTINE_BYTES,
    Exchange,
    PreparedExchange,
    ReadReport,
    read_log,
)
from distillguard.store import Store
from distillguard.store.base import exchange_row, new_salts

if TYPE_CHECKING:
    from distillguard.keyring import SigningKey

__all__ = [
    "CheckpointInfo",
    "IngestCounts",
    "IngestResult",
    "checkpoint_after_ingest",
    "ingest_log",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestCounts:
    """What happened to the records of one table."""

    read: int = 0
    inserted: int = 0
    already_stored: int = 0
    quarantined: int = 0

    @property
    def reconciles(self) -> bool:
        """``read == inserted + already_stored + quarantined``."""
        return self.read == self.inserted + self.already_stored + self.quarantined

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {
            "read": self.read,
            "inserted": self.inserted,
            "already_stored": self.already_stored,
            "quarantined": self.quarantined,
        }


@dataclass(slots=True)
class IngestResult:
    """The outcome of :func:`ingest_log`."""

    run_id: str
    source: str
    accounts: IngestCounts = field(default_factory=IngestCounts)
    exchanges: IngestCounts = field(default_factory=IngestCounts)
    seconds: float = 0.0
    report: ReadReport | None = None

    @property
    def reconciles(self) -> bool:
        """Both tables reconcile."""
        return self.accounts.reconciles and self.exchanges.reconciles

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        rep = self.report
        rejected = self.accounts.quarantined + self.exchanges.quarantined
        return {
            "run_id": self.run_id,
            "source": self.source,
            "accounts": self.accounts.to_dict(),
            "exchanges": self.exchanges.to_dict(),
            "reconciles": self.reconciles,
            "seconds": round(self.seconds, 3),
            "exchanges_per_second": round(self.exchanges.read / self.seconds)
            if self.seconds > 0
            else None,
            "quarantine": str(rep.quarantine_path)
            if rep and rep.quarantine_path and rejected
            else None,
            "issues": [
                {"file": i.file, "severity": i.severity, "message": i.message}
                for i in (rep.issues if rep else [])
            ],
        }


#: Exchanges read between two collections of the young generations during a run. A collection
#: costs about what the objects alive at that moment (one batch) take to walk, whatever the
#: interval: every 5,000 exchanges it cost about 5 us per exchange, every 100,000 a twentieth.
_COLLECT_EVERY = 100_000


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """Automatic garbage collection off while a run loads; the loop collects the young
    generations itself every :data:`_COLLECT_EVERY` exchanges, and the previous state comes back
    at the end.

    Why: each batch's records survive long enough to be promoted, which made CPython run a full
    collection every one or two batches, and a full collection walks every object the run
    keeps, among them the set of exchange ids seen so far. Measured on 1,000,000 exchanges:
    128 full collections costing 9.6 us per record over the first 100,000 and 17.4 us over the
    last, most of the per-record cost's growth with the log's size. Ingest makes almost no
    reference cycles (in a 400,000-exchange run the young collections freed 504 objects, all
    while starting), and the periodic young collections still free those.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def ingest_log(
    store: Store,
    log_dir: Path,
    *,
    batch_size: int = 5000,
    max_record_bytes: int = 16 * 1024 * 1024,
    quarantine: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    ledger_origin: str = DEFAULT_ORIGIN,
    retention: RetentionPolicy | None = None,
    quarantine_max_bytes: int = MAX_QUARANTINE_BYTES,
    atomic: bool = True,
    ledger_key: SigningKey | None = None,
    bulk: bool = True,
) -> IngestResult:
    """Validate a log folder and load it into ``store``.

    Args:
        store: an open store (its insert hooks, e.g. the ledger, run in each batch's transaction).
        log_dir: the log folder (format v1).
        batch_size: records per transaction.
        max_record_bytes: longer JSONL lines are quarantined unread.
        quarantine: JSONL file for rejected records (created only if there are any).
        on_progress: called with the number of exchanges read since the previous call.
        ledger_origin: the ledger's name, used if this ingest creates the ledger.
        retention: the retention policy; where it minimises content (hash, drop, truncate),
            stored content is minimised right after the ledger committed to the full record.
        quarantine_max_bytes: cap on what this run writes to the quarantine file.
        atomic: one transaction for the whole run (all or nothing); False: one per batch.
        ledger_key: the ledger key (from the keyring), so that the tombstones of content
            minimised at ingest are signed; None leaves them unsigned until ``ledger
            seal-erasures``.
        bulk: load through the bulk path where it applies (JSONL records that the bulk checks
            prove valid are encoded in one pass, their rows inserted without the insert hooks
            and their leaves appended by this function, in the same transaction); it applies
            when the ledger is the store's one insert hook (no minimisation). Same verdicts,
            quarantine, counts, rows and leaves as False, the record path (kept for
            comparison).

    Raises:
        LogNotFoundError, LogFormatError: the log cannot be read at all.
        StorageError: the store fails.
    """
    ledger = Ledger.attach(store, origin=ledger_origin)  # every stored exchange becomes a leaf
    if ledger_key is not None:
        ledger.signing_key = ledger_key
    if retention is not None:  # after the ledger: it commits to the full record first
        Minimiser.attach(store, ledger=ledger, policy=retention)
    run_id = f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    result = IngestResult(run_id=run_id, source=str(log_dir))
    reader = read_log(
        log_dir,
        batch_size=batch_size,
        max_record_bytes=max_record_bytes,
        quarantine=quarantine,
        known_accounts=store.known_accounts,
        quarantine_max_bytes=quarantine_max_bytes,
    )
    started = time.perf_counter()
    now_us = to_micros(datetime.now(UTC))
    store.begin_ingest_run(run_id, source=str(log_dir), started_us=now_us)
    failure: BaseException | None = None
    try:
        with (
            _young_collections_only(),
            store.transaction() if atomic else nullcontext(),
            store.bulk_load() if atomic else nullcontext(),
        ):
            for accounts in reader.accounts():
                with store.transaction() as cur:  # joins the run's transaction if atomic
                    added = store.add_accounts(cur, accounts, run_id=run_id)
                result.accounts.inserted += added
                result.accounts.already_stored += len(accounts) - added
            read_before = 0
            next_collection = _COLLECT_EVERY
            # The bulk path writes encoded rows and appends their leaves itself, so it is taken
            # only where the ledger is the store's one insert hook (no minimisation, nothing
            # else that must see each stored record).
            bulk_ledger = ledger if bulk and store.insert_hooks.names() == (Ledger.HOOK,) else None
            batches: Iterator[Sequence[Exchange | PreparedExchange]] = (
                reader.prepared_exchanges() if bulk_ledger else reader.exchanges()
            )
            for batch in batches:
                if bulk_ledger is not None:
                    added = _store_prepared(store, bulk_ledger, batch, run_id, now_us)
                else:
                    salts = new_salts(len(batch))
                    with store.transaction() as cur:
                        added = len(
                            store.add_exchanges(
                                cur,
                                list(zip(batch, salts, strict=True)),  # type: ignore[arg-type]
                                run_id=run_id,
                                now_us=now_us,
                            )
                        )
                    del salts
                result.exchanges.inserted += added
                result.exchanges.already_stored += len(batch) - added
                del batch
                if reader.report.exchanges.read >= next_collection:
                    gc.collect(1)  # young generations only: cycles made since the last one
                    next_collection = reader.report.exchanges.read + _COLLECT_EVERY
                if on_progress is not None:
                    read_now = reader.report.exchanges.read
                    on_progress(read_now - read_before)
                    read_before = read_now
    except BaseException as exc:
        failure = exc
        if atomic:  # rolled back: nothing of this run is stored
            result.accounts.inserted = result.accounts.already_stored = 0
            result.exchanges.inserted = result.exchanges.already_stored = 0
        raise
    finally:
        reader.quarantine.close()
        result.seconds = time.perf_counter() - started
        rep = reader.report
        result.report = rep
        result.accounts.read = rep.accounts.read
        result.accounts.quarantined = rep.accounts.quarantined
        result.exchanges.read = rep.exchanges.read
        result.exchanges.quarantined = rep.exchanges.quarantined
        summary = result.to_dict()
        if failure is not None:
            summary["failed"] = f"{type(failure).__name__}: {failure}"[:1000]
            summary["rolled_back"] = atomic
        try:
            store.finish_ingest_run(
                run_id, finished_us=to_micros(datetime.now(UTC)), summary=orjson.dumps(summary)
            )
        except Exception:  # the store itself failed: keep the original error
            if failure is None:
                raise
            logger.warning("ingest %s: could not record the failed run", run_id, exc_info=True)
    logger.info(
        "ingest %s: %d exchanges read, %d inserted, %d already stored, %d quarantined in %.1fs",
        run_id,
        result.exchanges.read,
        result.exchanges.inserted,
        result.exchanges.already_stored,
        result.exchanges.quarantined,
        result.seconds,
    )
    return result


def _store_prepared(
    store: Store,
    ledger: Ledger,
    batch: Sequence[Exchange | PreparedExchange],
    run_id: str,
    now_us: int,
) -> int:
    """One batch of the bulk path in one transaction (the run's, if atomic): the encoded rows
    inserted, then a ledger leaf for each row inserted; returns how many were inserted.

    A :class:`PreparedExchange` carries its row and the canonical bytes its commitments hash; a
    record the bulk checks left to the record path (an :class:`Exchange`) is encoded by the
    same functions as the single-record path (``exchange_row``, ``commit_exchange``).
    """
    salts = new_salts(len(batch))
    rows: list[tuple[Any, ...]] = []
    add_row = rows.append
    for record, salt in zip(batch, salts, strict=True):
        if type(record) is PreparedExchange:
            add_row((*record.values, salt))
        else:
            assert isinstance(record, Exchange)
            full = exchange_row(record, seq=0, salt=salt, run_id="", now_us=0)
            add_row(full[:1] + full[2:22])  # the fields, extra and the salt
    del add_row
    with store.transaction() as cur:
        seqs = store.add_exchange_rows(cur, rows, run_id=run_id, now_us=now_us)
        del rows
        leaves: list[tuple[str, int, bytes, bytes]] = []
        for record, salt, seq in zip(batch, salts, seqs, strict=True):
            if not seq:  # already stored by an earlier ingest
                continue
            if type(record) is PreparedExchange:
                leaf_hash, content_hash = commit_parts(record.meta, record.content, salt)
            else:
                assert isinstance(record, Exchange)
                c = commit_exchange(record, salt)
                leaf_hash, content_hash = c.leaf_hash, c.content_hash
            leaves.append((record.exchange_id, seq, leaf_hash, content_hash))
        ledger.append_commitments(cur, leaves)
    return len(leaves)


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """The ledger's checkpoint after an ingest: newly published, or the latest one unchanged."""

    size: int
    root_hash: bytes
    note: str
    published: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the root hash in base64 and in hex)."""
        import base64

        return {
            "size": self.size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "root_hash_hex": self.root_hash.hex(),
            "note": self.note,
            "published": self.published,
        }


def checkpoint_after_ingest(
    store: Store, key: SigningKey, *, origin: str = DEFAULT_ORIGIN
) -> CheckpointInfo:
    """Sign and keep a checkpoint of the ledger of ``store`` with the ledger key ``key``, unless
    the ledger has not grown since its latest checkpoint (another one at the same size would
    say nothing more: that one is returned, ``published=False``)."""
    ledger = Ledger.open(store, origin=origin)
    head = ledger.head()
    latest = ledger.latest_checkpoint()
    if latest is not None and (latest.size, latest.root_hash) == (head.size, head.root_hash):
        return CheckpointInfo(latest.size, latest.root_hash, latest.note, published=False)
    cp = ledger.publish_checkpoint(key)
    return CheckpointInfo(cp.size, cp.root_hash, cp.note, published=True)
