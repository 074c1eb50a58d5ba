"""The ledger: an RFC 9162 Merkle log of every stored exchange, kept in the store.

:meth:`Ledger.attach` creates the ledger's tables and registers an insert hook on the store, so
every exchange stored afterwards becomes a leaf *in the same transaction* as its row: records
and tree never disagree, whatever crashes. Appends are incremental (a compact range, see
:mod:`distillguard.ledger._compact_range`) and batched.

Tables (created with ``store.ensure_tables("ledger", ...)``):

* ``ledger_leaves``: one row per leaf: index, exchange id, leaf hash, content hash (kept so that
  metadata stays verifiable after the content is erased or minimised); keyed by the index only
  (on SQLite the rowid), so an append is a B-tree append with no secondary index to update;
* ``ledger_segments``: one row per run of consecutive ``exchanges.seq`` appended as consecutive
  leaves (normally one per batch): how an exchange id is mapped to its leaf, through the
  exchanges table's own primary key;
* ``ledger_nodes``: the perfect interior subtree hashes of height 4 and more, by in-order node id
  (proofs read these; the few lower ones a proof needs are recomputed from at most 16 leaves,
  which makes an append write about 1.06 rows per record instead of 2);
* ``ledger_state``: one row: origin, tree size and root (also the write lock on PostgreSQL);
* ``ledger_checkpoints``: every signed checkpoint published;
* ``ledger_erasures``: erasures of records or their content (written by :meth:`record_erasure`),
  each with the index of its tombstone leaf (``tombstone_leaf``): an erasure is itself a leaf of
  the log (:mod:`distillguard.ledger._tombstone`), so a signed checkpoint covers it, and the
  tombstone's signature by the ledger key (``signature``, ``signed_by``; null for a tombstone
  made without a keyring, until ``ledger seal-erasures`` signs it).

Example::

    store = open_store("sqlite:///store.sqlite")
    ledger = Ledger.attach(store)
    ...  # store.add_exchanges(...) in store.transaction()
    cp = ledger.publish_checkpoint(keyring.signing_key(KeyPurpose.LEDGER))
    bundle = ledger.prove("ex-123")
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from distillguard._internal.timeutil import format_ts, from_micros, to_micros
from distillguard.errors import DistillGuardError, InputError, ProofError, StorageError
from distillguard.keyring import SigningKey
from distillguard.ledger._bundle import ErasureBundle, InclusionBundle, TombstoneProof
from distillguard.ledger._checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from distillguard.ledger._compact_range import (
    CompactRange,
    node_id,
    node_level,
    range_nodes,
)
from distillguard.ledger._hashing import EMPTY_ROOT, HASH_SIZE, node_hash
from distillguard.ledger._hashing import leaf_hash as rfc_leaf_hash
from distillguard.ledger._leaf import CONTENT_FIELDS, commit_exchanges, content_hash
from distillguard.ledger._proofs import consistency_proof, inclusion_proof, root_hash
from distillguard.ledger._tombstone import (
    ERASED_CONTENT,
    TOMBSTONE_CONTENT_HASH,
    ErasureScope,
    Tombstone,
    TombstoneSignature,
    check_text,
    normalise_time,
    sign_tombstone,
)
from distillguard.store import Cursor, Store, StoredExchange

__all__ = [
    "DEFAULT_ORIGIN",
    "Erasure",
    "ErasureScope",
    "LeafRecord",
    "Ledger",
    "StoredCheckpoint",
    "TreeHead",
]

logger = logging.getLogger(__name__)

#: Origin (log name) of a ledger created without one; set ``[ledger] origin`` to your own.
DEFAULT_ORIGIN: Final = "distillguard.local/ledger"
#: Version 2: leaves without a per-leaf exchange-id index; ids are found through ``exchanges.seq``
#: and ``ledger_segments``. Version 3: erasures are tombstone leaves (``ledger_erasures`` gains
#: ``tombstone_leaf``). Older stores are migrated when opened; their erasures have no tombstone
#: and the audit reports them until they are sealed (:meth:`Ledger.seal_erasures`). Version 4:
#: each tombstone's signature by the ledger key (``signature``, ``signed_by``). Version 5: content
#: tombstones commit to the content left after the erasure (``content_after``), and a content
#: tombstone replaced by a later content erasure of the same leaf keeps its row in
#: ``ledger_superseded_erasures``.
SCHEMA_VERSION: Final = 5
_CHUNK: Final = 900  # ids per IN (...) query (SQLite's parameter limit is 999 on old builds)
#: Interior nodes below this height are not stored but recomputed from leaves when needed.
STORED_MIN_LEVEL: Final = 4

LEDGER_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS ledger_leaves (
        leaf_index {bigint} PRIMARY KEY, exchange_id {text} NOT NULL,
        leaf_hash {blob} NOT NULL, content_hash {blob} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_segments (
        first_leaf {bigint} PRIMARY KEY, first_seq {bigint} NOT NULL, count {bigint} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_segments_seq ON ledger_segments (first_seq)",
    "CREATE TABLE IF NOT EXISTS ledger_nodes (node_id {bigint} PRIMARY KEY, hash {blob} NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ledger_state (
        id {bigint} PRIMARY KEY, origin {text} NOT NULL, size {bigint} NOT NULL,
        root {blob} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        checkpoint_no {bigint} PRIMARY KEY, size {bigint} NOT NULL, root {blob} NOT NULL,
        created_at {bigint} NOT NULL, kid {text}, note {text} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_erasures (
        leaf_index {bigint} NOT NULL, exchange_id {text} NOT NULL, scope {text} NOT NULL,
        erased_at {bigint} NOT NULL, reason {text} NOT NULL, actor {text} NOT NULL,
        tombstone_leaf {bigint}, signature {blob}, signed_by {text}, content_after {blob},
        PRIMARY KEY (leaf_index, scope)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_superseded_erasures (
        tombstone_leaf {bigint} PRIMARY KEY, leaf_index {bigint} NOT NULL,
        exchange_id {text} NOT NULL, scope {text} NOT NULL, erased_at {bigint} NOT NULL,
        reason {text} NOT NULL, actor {text} NOT NULL, signature {blob}, signed_by {text},
        content_after {blob}
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_erasures_exchange ON ledger_erasures (exchange_id)",
    "CREATE INDEX IF NOT EXISTS ledger_erasures_tombstone ON ledger_erasures (tombstone_leaf)",
)
#: Segments read per exchange-id lookup before falling back to a scan (see ``_leaf_index_of``).
_SEGMENT_CANDIDATES: Final = 16


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The current state of the tree: origin, size and root hash."""

    origin: str
    size: int
    root_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        import base64

        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "root_hash_hex": self.root_hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class LeafRecord:
    """One row of ``ledger_leaves`` (a record's leaf, or a tombstone: see :attr:`is_tombstone`)."""

    leaf_index: int
    exchange_id: str
    leaf_hash: bytes
    content_hash: bytes

    @property
    def is_tombstone(self) -> bool:
        """Whether the row says this leaf is a tombstone (an empty content hash)."""
        return self.content_hash == TOMBSTONE_CONTENT_HASH


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure recorded in the ledger: which leaf, what was erased, when, why, by whom, and
    the index of its tombstone leaf (None for an erasure recorded before tombstones existed, or
    a row nobody put in the log)."""

    leaf_index: int
    exchange_id: str
    scope: ErasureScope
    erased_at: datetime
    reason: str
    actor: str
    tombstone_index: int | None = None
    #: The tombstone's signature by the ledger key (None: made without a keyring, or by hand).
    signature: TombstoneSignature | None = None
    #: A version 2 content tombstone's commitment to the content the row holds after the
    #: erasure (None: a record erasure, or a content erasure from before version 2).
    content_after: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "leaf_index": self.leaf_index,
            "exchange_id": self.exchange_id,
            "scope": self.scope,
            "erased_at": format_ts(self.erased_at),
            "reason": self.reason,
            "actor": self.actor,
            "tombstone_leaf": self.tombstone_index,
            "signed_by": None if self.signature is None else self.signature.kid,
            "content_after": None if self.content_after is None else self.content_after.hex(),
        }

    def tombstone(self, leaf_hash: bytes) -> Tombstone:
        """The tombstone of this erasure, given the erased leaf's hash."""
        return Tombstone(
            leaf_index=self.leaf_index,
            leaf_hash=leaf_hash,
            exchange_id=self.exchange_id,
            scope=self.scope,
            erased_at=self.erased_at,
            reason=self.reason,
            actor=self.actor,
            content_after=self.content_after,
        )


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as kept in the store (``note`` is the signed text; not verified here)."""

    checkpoint_no: int
    size: int
    root_hash: bytes
    created_at: datetime
    kid: str | None
    note: str

    def parse(self) -> Checkpoint:
        """The parsed note (signatures not verified)."""
        return parse_checkpoint(self.note)


def _blob(value: Any) -> bytes:
    """A hash column as bytes. SQLite lets an altered row hold text or a number there; that
    becomes bytes that match no hash (and no tombstone marker), so the audit names the leaf
    instead of failing on it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return b"\xff" + str(value).encode("utf-8", "replace")


def _decode_state(size: Any, root: Any) -> tuple[int, bytes]:
    """The ``ledger_state`` row's size and root, checked (SQLite lets an altered row hold any
    type there).

    Raises:
        StorageError: the size is not a non-negative integer or the root not a 32-byte hash.
    """
    if type(size) is not int or size < 0:
        raise StorageError(
            f"ledger_state.size holds {size!r}, not a tree size",
            hint="the ledger tables were altered; run `distillguard ledger audit`",
        )
    if not isinstance(root, bytes | bytearray | memoryview) or len(bytes(root)) != HASH_SIZE:
        raise StorageError(
            f"ledger_state.root holds {root!r:.80}, not a 32-byte hash",
            hint="the ledger tables were altered; run `distillguard ledger audit`",
        )
    return size, bytes(root)


def _perfect_root(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree (a power-of-two number of leaf hashes)."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[k], level[k + 1]) for k in range(0, len(level), 2)]
    return level[0]


def _segments(first_leaf: int, seqs: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(first_leaf, first_seq, count)`` for each run of consecutive ``seqs`` (leaves in order)."""
    if (
        seqs
        and seqs[-1] - seqs[0] == len(seqs) - 1
        and list(seqs) == list(range(seqs[0], seqs[-1] + 1))  # the usual case, at C speed
    ):
        return [(first_leaf, seqs[0], len(seqs))]
    out: list[tuple[int, int, int]] = []
    start = 0
    for k in range(1, len(seqs)):
        if seqs[k] != seqs[k - 1] + 1:
            out.append((first_leaf + start, seqs[start], k - start))
            start = k
    if seqs:
        out.append((first_leaf + start, seqs[start], len(seqs) - start))
    return out


class _CursorNodes:
    """A :class:`~distillguard.ledger._proofs.NodeSource` reading through one cursor."""

    def __init__(self, ledger: Ledger, cur: Cursor) -> None:
        self._ledger = ledger
        self._cur = cur

    def get_nodes(self, ids: Iterable[int]) -> Mapping[int, bytes]:
        return self._ledger._fetch_nodes(self._cur, ids)


class Ledger:
    """The Merkle log of a store. Build it with :meth:`attach` (writers) or :meth:`open`.

    A ledger object is used from one thread at a time, like its store.
    """

    #: The name of the ledger's insert hook on a store (:class:`~distillguard.store.InsertHooks`).
    HOOK = "ledger"

    def __init__(self, store: Store, *, origin: str = DEFAULT_ORIGIN) -> None:
        self.store = store
        # The tables come from the store's migrations (older ledger layouts included: see
        # distillguard.store._migrations); this only checks their version.
        store.ensure_tables("ledger", SCHEMA_VERSION, LEDGER_DDL)
        with store.transaction() as cur:
            cur.execute(
                store.q(
                    "INSERT INTO ledger_state (id, origin, size, root) VALUES (1, ?, 0, ?) "
                    "ON CONFLICT (id) DO NOTHING"
                ),
                (origin, EMPTY_ROOT),
            )
            cur.execute("SELECT origin FROM ledger_state WHERE id = 1")
            self.origin: str = str(cur.fetchone()[0])
        self._frontier: CompactRange | None = None
        self._frontier_root: bytes = EMPTY_ROOT
        #: The ledger key that signs the tombstones of erasures recorded through this object
        #: (:meth:`record_erasures` without ``key``); None: they are left unsigned.
        self.signing_key: SigningKey | None = None

    def __repr__(self) -> str:
        return f"Ledger(origin={self.origin!r}, store={self.store!r})"

    @classmethod
    def open(cls, store: Store, *, origin: str = DEFAULT_ORIGIN) -> Ledger:
        """The ledger of ``store`` for reading, proving and auditing (tables created if needed).

        ``origin`` names a new ledger; an existing ledger keeps the origin it was created with.
        """
        return cls(store, origin=origin)

    @classmethod
    def attach(cls, store: Store, *, origin: str = DEFAULT_ORIGIN) -> Ledger:
        """The ledger of ``store``, registered so that every exchange stored from now on is a leaf.

        Attaching twice to the same store registers one hook only (named :attr:`HOOK`).

        Raises:
            ConfigurationError: another hook holds the name :attr:`HOOK` on this store.
        """
        existing = store.insert_hooks.get(cls.HOOK)
        if isinstance(existing, Ledger):
            return existing
        ledger = cls(store, origin=origin)
        store.insert_hooks.register(cls.HOOK, ledger)
        return ledger

    def __call__(self, cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        """The insert hook: :meth:`append`."""
        self.append(cur, inserted)

    # -- appending ----------------------------------------------------------------------------

    def _lock_state(self, cur: Cursor) -> tuple[int, bytes]:
        lock = " FOR UPDATE" if self.store.dialect == "postgresql" else ""
        cur.execute(f"SELECT size, root FROM ledger_state WHERE id = 1{lock}")
        row = cur.fetchone()
        if row is None:
            raise StorageError("the ledger_state row is missing", hint="run `ledger audit`")
        return _decode_state(row[0], row[1])

    def _frontier_for(self, cur: Cursor, size: int, root: bytes) -> CompactRange:
        cached = self._frontier
        if cached is not None and cached.size == size and self._frontier_root == root:
            return cached
        plan = range_nodes(0, size)
        ids = [node_id(level, index) for level, index in plan]
        nodes = self._fetch_nodes(cur, ids)
        if len(nodes) != len(ids):
            raise StorageError(
                f"the ledger lacks the frontier nodes of its tree of size {size}",
                hint="the ledger tables were altered; run `distillguard ledger audit`",
            )
        frontier = CompactRange(size, [nodes[i] for i in ids])
        if frontier.root() != root:
            raise StorageError(
                f"the ledger's stored nodes do not match its root at size {size}",
                hint="the ledger tables were altered; run `distillguard ledger audit`",
            )
        return frontier

    def append(self, cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        """Append stored exchanges as leaves, in order, through ``cur`` (the insert hook).

        Runs inside the transaction that stores the exchanges, so that both commit or neither.
        """
        if not inserted:
            return
        commits = commit_exchanges([(s.exchange, s.salt) for s in inserted])
        size = self._append_rows(
            cur,
            [(s.exchange.exchange_id, c[0], c[1]) for s, c in zip(inserted, commits, strict=True)],
        )
        cur.executemany(
            self.store.q(
                "INSERT INTO ledger_segments (first_leaf, first_seq, count) VALUES (?, ?, ?)"
            ),
            _segments(size, [s.seq for s in inserted]),
        )

    def append_commitments(
        self, cur: Cursor, leaves: Sequence[tuple[str, int, bytes, bytes]]
    ) -> None:
        """Append leaves already computed, ``(exchange id, seq, leaf hash, content hash)`` of
        stored exchanges in insertion order, through ``cur`` (the bulk ingest path, which
        inserts encoded rows without the insert hooks and calls this in the same transaction).
        """
        if not leaves:
            return
        size = self._append_rows(cur, [(leaf[0], leaf[2], leaf[3]) for leaf in leaves])
        cur.executemany(
            self.store.q(
                "INSERT INTO ledger_segments (first_leaf, first_seq, count) VALUES (?, ?, ?)"
            ),
            _segments(size, [leaf[1] for leaf in leaves]),
        )

    def _append_rows(self, cur: Cursor, rows: Sequence[tuple[str, bytes, bytes]]) -> int:
        """Append ``(exchange id, leaf hash, content hash)`` leaves; returns the first index."""
        size, root = self._lock_state(cur)
        frontier = self._frontier_for(cur, size, root).copy()
        nodes = frontier.append(
            [r[1] for r in rows], include_leaves=False, min_level=STORED_MIN_LEVEL
        )
        q = self.store.q
        cur.executemany(
            q(
                "INSERT INTO ledger_leaves (leaf_index, exchange_id, leaf_hash, content_hash) "
                "VALUES (?, ?, ?, ?)"
            ),
            [(size + i, r[0], r[1], r[2]) for i, r in enumerate(rows)],
        )
        if nodes:
            cur.executemany(q("INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)"), nodes)
        new_root = frontier.root()
        cur.execute(
            q("UPDATE ledger_state SET size = ?, root = ? WHERE id = 1"),
            (frontier.size, new_root),
        )
        # If the transaction rolls back, the next append sees another (size, root) and reloads.
        self._frontier = frontier
        self._frontier_root = new_root
        return size

    # -- reading ------------------------------------------------------------------------------

    def _fetch_nodes(self, cur: Cursor, ids: Iterable[int]) -> dict[int, bytes]:
        q = self.store.q
        wanted = sorted(set(ids))
        low: dict[int, tuple[int, int]] = {}  # node id -> (first leaf, leaf count)
        leaves: set[int] = set()
        inner: list[int] = []
        for i in wanted:
            level = node_level(i)
            if level == 0:
                leaves.add(i >> 1)
            elif level < STORED_MIN_LEVEL:
                first = (i >> (level + 1)) << level
                low[i] = (first, 1 << level)
                leaves.update(range(first, first + (1 << level)))
            else:
                inner.append(i)
        leaf_hashes: dict[int, bytes] = {}
        ordered = sorted(leaves)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                q(f"SELECT leaf_index, leaf_hash FROM ledger_leaves WHERE leaf_index IN ({marks})"),
                chunk,
            )
            leaf_hashes.update((int(r[0]), _blob(r[1])) for r in cur.fetchall())
        out: dict[int, bytes] = {}
        for i in wanted:
            if not i & 1 and (i >> 1) in leaf_hashes:
                out[i] = leaf_hashes[i >> 1]
        for i, (first, count) in low.items():
            hashes = [leaf_hashes.get(j) for j in range(first, first + count)]
            if all(h is not None for h in hashes):
                out[i] = _perfect_root([h for h in hashes if h is not None])
        for start in range(0, len(inner), _CHUNK):
            chunk = inner[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                q(f"SELECT node_id, hash FROM ledger_nodes WHERE node_id IN ({marks})"), chunk
            )
            out.update((int(r[0]), _blob(r[1])) for r in cur.fetchall())
        return out

    def get_nodes(self, ids: Iterable[int]) -> Mapping[int, bytes]:
        """Stored node hashes by in-order id (leaves included): a proof ``NodeSource``."""
        with self.store.transaction() as cur:
            return self._fetch_nodes(cur, ids)

    def head(self) -> TreeHead:
        """The current tree size and root hash."""
        with self.store.transaction() as cur:
            size, root = self._lock_state(cur)
        return TreeHead(origin=self.origin, size=size, root_hash=root)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self.head().size

    def root_hash(self, size: int | None = None) -> bytes:
        """The root of the tree (of its first ``size`` leaves), computed from stored nodes."""
        with self.store.transaction() as cur:
            current, root = self._lock_state(cur)
            if size is None or size == current:
                return root
            if not 0 <= size <= current:
                raise ProofError(f"the tree has {current} leaves, not {size}")
            return root_hash(_CursorNodes(self, cur), size=size)

    def leaf(self, index: int) -> LeafRecord | None:
        """The leaf at ``index``, or None."""
        return self._leaf_where("leaf_index = ?", index)

    def leaf_for(self, exchange_id: str) -> LeafRecord | None:
        """The leaf of an exchange, or None if it is not in the ledger.

        Found through the exchange's ``seq`` (stored records) or its erasure (erased ones).
        """
        with self.store.transaction() as cur:
            index = self._leaf_index_of(cur, exchange_id)
        return None if index is None else self.leaf(index)

    def _leaf_index_of(self, cur: Cursor, exchange_id: str) -> int | None:
        """The leaf index of an exchange: ``exchanges.seq`` mapped through ``ledger_segments``.

        Each append records the runs of consecutive ``seq`` it turned into consecutive leaves,
        so the lookup costs two index probes instead of a per-leaf index on the exchange id.
        The candidate leaf's stored exchange id must match; if none does (a ``seq`` reused
        after the newest record was deleted, or altered tables) the leaves are scanned, so the
        answer is always the one a direct lookup would give. Erased records are found through
        their erasure.
        """
        q = self.store.q
        cur.execute(q("SELECT seq FROM exchanges WHERE exchange_id = ?"), (exchange_id,))
        row = cur.fetchone()
        if row is not None:
            seq = int(row[0])
            cur.execute(
                q(
                    "SELECT first_leaf, first_seq, count FROM ledger_segments "
                    "WHERE first_seq <= ? ORDER BY first_seq DESC, first_leaf DESC LIMIT ?"
                ),
                (seq, _SEGMENT_CANDIDATES),
            )
            candidates = [
                int(r[0]) + seq - int(r[1]) for r in cur.fetchall() if seq < int(r[1]) + int(r[2])
            ]
            for index in candidates:
                cur.execute(
                    q("SELECT exchange_id FROM ledger_leaves WHERE leaf_index = ?"), (index,)
                )
                found = cur.fetchone()
                if found is not None and found[0] == exchange_id:
                    return index
            if candidates:
                logger.warning("ledger segment lookup missed an exchange; scanning the leaves")
                cur.execute(
                    q("SELECT min(leaf_index) FROM ledger_leaves WHERE exchange_id = ?"),
                    (exchange_id,),
                )
                found = cur.fetchone()
                if found is not None and found[0] is not None:
                    return int(found[0])
        cur.execute(
            q("SELECT min(leaf_index) FROM ledger_erasures WHERE exchange_id = ?"), (exchange_id,)
        )
        found = cur.fetchone()
        return None if found is None or found[0] is None else int(found[0])

    def _leaf_where(self, where: str, value: object) -> LeafRecord | None:
        with self.store.transaction() as cur:
            cur.execute(
                self.store.q(
                    "SELECT leaf_index, exchange_id, leaf_hash, content_hash FROM ledger_leaves "
                    f"WHERE {where}"
                ),
                (value,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return LeafRecord(int(row[0]), str(row[1]), _blob(row[2]), _blob(row[3]))

    def iter_leaves(self, *, batch_size: int = 10_000) -> Iterator[list[LeafRecord]]:
        """All leaves in index order, in batches."""
        last = -1
        while True:
            with self.store.transaction() as cur:
                cur.execute(
                    self.store.q(
                        "SELECT leaf_index, exchange_id, leaf_hash, content_hash FROM "
                        "ledger_leaves WHERE leaf_index > ? ORDER BY leaf_index LIMIT ?"
                    ),
                    (last, batch_size),
                )
                rows = cur.fetchall()
            if not rows:
                return
            batch = [LeafRecord(int(r[0]), str(r[1]), _blob(r[2]), _blob(r[3])) for r in rows]
            last = batch[-1].leaf_index
            yield batch

    def inclusion_proof(self, *, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        with self.store.transaction() as cur:
            current, _ = self._lock_state(cur)
            if size > current:
                raise ProofError(f"the tree has {current} leaves, not {size}")
            return inclusion_proof(_CursorNodes(self, cur), index=index, size=size)

    def consistency_proof(self, *, size1: int, size2: int) -> list[bytes]:
        """The consistency proof between the trees of ``size1`` and ``size2`` leaves."""
        with self.store.transaction() as cur:
            current, _ = self._lock_state(cur)
            if size2 > current:
                raise ProofError(f"the tree has {current} leaves, not {size2}")
            return consistency_proof(_CursorNodes(self, cur), size1=size1, size2=size2)

    # -- checkpoints --------------------------------------------------------------------------

    def publish_checkpoint(
        self, key: SigningKey, *, timestamp: datetime | None = None
    ) -> Checkpoint:
        """Sign the current tree head with ``key`` (the keyring's ledger key) and keep it."""
        when = (timestamp or datetime.now(UTC)).astimezone(UTC)
        with self.store.transaction() as cur:
            size, root = self._lock_state(cur)
            cp = sign_checkpoint(
                origin=self.origin, size=size, root_hash=root, key=key, timestamp=when
            )
            cur.execute("SELECT COALESCE(MAX(checkpoint_no), 0) FROM ledger_checkpoints")
            number = int(cur.fetchone()[0]) + 1
            cur.execute(
                self.store.q(
                    "INSERT INTO ledger_checkpoints (checkpoint_no, size, root, created_at, kid, "
                    "note) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (number, size, root, to_micros(when), key.kid, cp.note),
            )
        logger.info("published checkpoint %d of %s at size %d", number, self.origin, size)
        return cp

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every checkpoint kept, oldest first."""
        with self.store.transaction() as cur:
            cur.execute(
                "SELECT checkpoint_no, size, root, created_at, kid, note FROM ledger_checkpoints "
                "ORDER BY checkpoint_no"
            )
            rows = cur.fetchall()
        return [
            StoredCheckpoint(
                checkpoint_no=int(r[0]),
                size=int(r[1]),
                root_hash=bytes(r[2]),
                created_at=from_micros(int(r[3])),
                kid=r[4],
                note=str(r[5]),
            )
            for r in rows
        ]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The most recent checkpoint kept, or None."""
        with self.store.transaction() as cur:
            cur.execute(
                "SELECT checkpoint_no, size, root, created_at, kid, note FROM ledger_checkpoints "
                "ORDER BY checkpoint_no DESC LIMIT 1"
            )
            r = cur.fetchone()
        if r is None:
            return None
        return StoredCheckpoint(
            int(r[0]), int(r[1]), bytes(r[2]), from_micros(int(r[3])), r[4], str(r[5])
        )

    # -- erasure ------------------------------------------------------------------------------

    def record_erasure(
        self,
        cur: Cursor,
        *,
        exchange_id: str,
        scope: ErasureScope,
        reason: str,
        actor: str,
        erased_at: datetime | None = None,
        key: SigningKey | None = None,
    ) -> Erasure:
        """Record that an exchange's content (``"content"``) or whole record (``"record"``) is
        being erased. The caller deletes the data in the same transaction (``cur``).

        The erased leaf stays in the tree and a tombstone leaf is appended that commits to it,
        the scope, the reason, the actor and the time (see :meth:`record_erasures`).

        Raises:
            InputError: unknown exchange (not in the ledger), bad scope, empty reason or actor.
        """
        done, missing = self.record_erasures(
            cur,
            [exchange_id],
            scope=scope,
            reason=reason,
            actor=actor,
            erased_at=erased_at,
            key=key,
        )
        if missing:
            raise InputError(
                f"exchange {exchange_id!r} is not in the ledger",
                hint="only exchanges stored while the ledger was attached have leaves",
            )
        return done[0]

    def record_erasures(
        self,
        cur: Cursor,
        exchange_ids: Sequence[str],
        *,
        scope: ErasureScope,
        reason: str,
        actor: str,
        erased_at: datetime | None = None,
        key: SigningKey | None = None,
        content_after: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[list[Erasure], list[str]]:
        """Record the erasure of several exchanges' content or records, in one append.

        For each exchange a ``ledger_erasures`` row and a tombstone leaf (appended in the order
        given) are written through ``cur``; the caller deletes the data in the same transaction.
        An exchange whose erasure of this scope is already in the log keeps the first one; a
        row left from before tombstones existed (or put there by hand) gets its tombstone now,
        with these reason, actor and time. Each new tombstone is signed with ``key`` (default:
        :attr:`signing_key`), the ledger key; without one it is left unsigned and ``ledger
        audit`` reports it (``tombstone_unsigned``) until :meth:`seal_erasures` signs it. The
        audit accepts the erasure once the tombstone is signed and a signed checkpoint covers
        it: publish one after the transaction commits.

        A content tombstone (version 2) also commits to the content the row holds after the
        erasure: ``content_after[exchange_id]`` (the record's ``content`` part, e.g. the
        minimised text), by default the content of a row whose content columns are NULL
        (:data:`~distillguard.ledger._tombstone.ERASED_CONTENT`). The audit recomputes it from
        the row, so content written into an erased row afterwards is ``record_changed``. A
        content erasure of a leaf whose content tombstone left other content (minimised at
        ingest, erased later) appends a new tombstone; the old one's row moves to
        ``ledger_superseded_erasures``.

        Returns:
            The erasures (one per exchange found, in order) and the ids that have no leaf.

        Raises:
            InputError: bad scope, empty or non-text reason or actor.
        """
        if scope not in ("content", "record"):
            raise InputError(f"erasure scope must be 'content' or 'record', not {scope!r}")
        if not reason.strip() or not actor.strip():
            raise InputError("an erasure needs a reason and an actor")
        check_text(reason, "reason")
        check_text(actor, "actor")
        key = key if key is not None else self.signing_key
        when = normalise_time(erased_at or datetime.now(UTC))
        q = self.store.q
        self._lock_state(cur)  # the write lock first: concurrent erasures queue here
        found: dict[int, str] = {}
        missing: list[str] = []
        for exchange_id in exchange_ids:
            check_text(exchange_id, "exchange id")
            index = self._leaf_index_of(cur, exchange_id)
            if index is None:
                missing.append(exchange_id)
            else:
                found.setdefault(index, exchange_id)
        indices = list(found)
        existing: dict[int, Erasure] = {}
        hashes: dict[int, bytes] = {}
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                q(
                    "SELECT leaf_index, exchange_id, scope, erased_at, reason, actor, "
                    f"{_SIGNED_COLUMNS} FROM ledger_erasures WHERE scope = ? AND leaf_index IN "
                    f"({marks})"
                ),
                [scope, *chunk],
            )
            for r in cur.fetchall():
                existing[int(r[0])] = _erasure_from_row(r)
            cur.execute(
                q(f"SELECT leaf_index, leaf_hash FROM ledger_leaves WHERE leaf_index IN ({marks})"),
                chunk,
            )
            hashes.update((int(r[0]), _blob(r[1])) for r in cur.fetchall())
        after: dict[int, bytes] = {}
        if scope == "content":
            after = self._content_after(cur, found, content_after or {})
        fresh = [
            i
            for i in indices
            if existing.get(i) is None
            or existing[i].tombstone_index is None
            or (
                existing[i].content_after is not None
                and i in after
                and existing[i].content_after != after[i]
            )
        ]
        superseded = [existing[i] for i in fresh if existing.get(i) is not None]
        superseded = [e for e in superseded if e.tombstone_index is not None]
        if superseded:
            cur.executemany(
                q(
                    "INSERT INTO ledger_superseded_erasures (tombstone_leaf, leaf_index, "
                    "exchange_id, scope, erased_at, reason, actor, signature, signed_by, "
                    "content_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (
                        e.tombstone_index,
                        e.leaf_index,
                        e.exchange_id,
                        e.scope,
                        to_micros(e.erased_at),
                        e.reason,
                        e.actor,
                        None if e.signature is None else e.signature.signature,
                        None if e.signature is None else e.signature.kid,
                        e.content_after,
                    )
                    for e in superseded
                ],
            )
        out: dict[int, Erasure] = {i: e for i, e in existing.items() if i not in fresh}
        if fresh:
            stones = [
                Tombstone(i, hashes[i], found[i], scope, when, reason, actor, after.get(i))
                for i in fresh
            ]
            first = self._append_rows(
                cur,
                [(t.exchange_id, t.tombstone_hash, TOMBSTONE_CONTENT_HASH) for t in stones],
            )
            new_rows: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            for k, t in enumerate(stones):
                sig = None if key is None else sign_tombstone(self.origin, t, key)
                erasure = Erasure(
                    t.leaf_index,
                    t.exchange_id,
                    scope,
                    when,
                    reason,
                    actor,
                    first + k,
                    sig,
                    t.content_after,
                )
                out[t.leaf_index] = erasure
                row = (
                    to_micros(when),
                    reason,
                    actor,
                    first + k,
                    None if sig is None else sig.signature,
                    None if sig is None else sig.kid,
                    t.content_after,
                    t.leaf_index,
                    scope,
                )
                (updates if t.leaf_index in existing else new_rows).append(row)
            if new_rows:
                cur.executemany(
                    q(
                        "INSERT INTO ledger_erasures (erased_at, reason, actor, tombstone_leaf, "
                        "signature, signed_by, content_after, leaf_index, scope, exchange_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    [(*r, found[r[7]]) for r in new_rows],
                )
            if updates:
                logger.warning(
                    "%d erasure row(s) without a tombstone or superseded were put in the log",
                    len(updates),
                )
                cur.executemany(
                    q(
                        "UPDATE ledger_erasures SET erased_at = ?, reason = ?, actor = ?, "
                        "tombstone_leaf = ?, signature = ?, signed_by = ?, content_after = ? "
                        "WHERE leaf_index = ? AND scope = ?"
                    ),
                    updates,
                )
            logger.info(
                "recorded %d %s erasure(s) as tombstone leaves (%s)",
                len(fresh),
                scope,
                "signed" if key is not None else "UNSIGNED: no ledger key",
            )
        return [out[i] for i in indices], missing

    def _content_after(
        self, cur: Cursor, found: Mapping[int, str], given: Mapping[str, Mapping[str, Any]]
    ) -> dict[int, bytes]:
        """Leaf index -> salted commitment to the content each row holds after the erasure
        (rows without a readable salt get none: their tombstone is version 1)."""
        ids = {exchange_id: index for index, exchange_id in found.items()}
        salts: dict[str, bytes] = {}
        names = list(ids)
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self.store.q(
                    f"SELECT exchange_id, salt FROM exchanges WHERE exchange_id IN ({marks})"
                ),
                chunk,
            )
            for r in cur.fetchall():
                if isinstance(r[1], bytes | bytearray | memoryview):
                    salts[str(r[0])] = bytes(r[1])
        out: dict[int, bytes] = {}
        for exchange_id, salt in salts.items():
            try:
                out[ids[exchange_id]] = content_hash(given.get(exchange_id, ERASED_CONTENT), salt)
            except DistillGuardError:
                logger.warning("the content of %r cannot be committed to", exchange_id)
        return out

    def unsealed_erasures(self) -> list[Erasure]:
        """Erasure rows that have no tombstone leaf (recorded before version 3, or by hand)."""
        return [e for es in self.erasures().values() for e in es if e.tombstone_index is None]

    def unsigned_erasures(self) -> list[Erasure]:
        """Erasures whose tombstone has no signature (made without a keyring, or by hand)."""
        return [
            e
            for es in self.erasures().values()
            for e in es
            if e.tombstone_index is not None and e.signature is None
        ]

    def seal_erasures(
        self, *, actor: str, key: SigningKey, erased_at: datetime | None = None
    ) -> list[Erasure]:
        """Put every reviewed erasure in the log, signed by ``key`` (one transaction).

        Erasure rows without a tombstone (stores upgraded from before tombstones, or rows added
        by hand) get a signed tombstone leaf, keeping each row's reason with ``actor`` recorded
        as who sealed it; tombstones without a signature (erasures run without a keyring) are
        signed as they are, where the stored tombstone leaf matches its row (a tombstone that
        does not is left alone: the audit names it). The operator first reviews what
        :meth:`unsealed_erasures` and :meth:`unsigned_erasures` list (the audit reports each):
        an erasure an insider added to hide a deletion is blessed by sealing it. Publish a
        checkpoint after.
        """
        sealed: list[Erasure] = []
        with self.store.transaction() as cur:
            self._lock_state(cur)
            for e in self.unsealed_erasures():
                # The tombstone commits to the content the reviewed row holds now.
                now_content: dict[str, Mapping[str, Any]] = {}
                try:
                    stored = (
                        self.store.get_exchange(e.exchange_id) if e.scope == "content" else None
                    )
                except DistillGuardError:
                    stored = None  # an undecodable row: the default (erased) content
                if stored is not None:
                    now_content[e.exchange_id] = {
                        k: v for k, v in stored.exchange.to_dict().items() if k in CONTENT_FIELDS
                    }
                done, _ = self.record_erasures(
                    cur,
                    [e.exchange_id],
                    scope=e.scope,
                    reason=e.reason,
                    actor=f"{e.actor} (sealed by {actor})",
                    erased_at=erased_at or e.erased_at,
                    key=key,
                    content_after=now_content,
                )
                sealed.extend(done)
            for e in self.unsigned_erasures():
                signed = self._sign_matching(cur, e, key)
                if signed is not None:
                    sealed.append(signed)
        if sealed:
            logger.warning("sealed %d erasure(s), reviewed by %s", len(sealed), actor)
        return sealed

    def _sign_matching(self, cur: Cursor, e: Erasure, key: SigningKey) -> Erasure | None:
        """Sign the tombstone of ``e`` with ``key`` where its stored leaf still matches its row
        (and follows the erased leaf); None (and a warning) where it does not."""
        assert e.tombstone_index is not None
        erased = self.leaf(e.leaf_index)
        stone = self.leaf(e.tombstone_index)
        if erased is None or stone is None:
            logger.warning("erasure of leaf %d: its leaves are missing", e.leaf_index)
            return None
        tombstone = e.tombstone(erased.leaf_hash)
        try:
            matches = rfc_leaf_hash(tombstone.leaf_data) == stone.leaf_hash
        except DistillGuardError:
            matches = False
        if not matches or stone.leaf_index <= e.leaf_index:
            logger.warning(
                "tombstone leaf %d does not match the %s erasure of leaf %d: not signed",
                e.tombstone_index,
                e.scope,
                e.leaf_index,
            )
            return None
        sig = sign_tombstone(self.origin, tombstone, key)
        cur.execute(
            self.store.q(
                "UPDATE ledger_erasures SET signature = ?, signed_by = ? "
                "WHERE leaf_index = ? AND scope = ?"
            ),
            (sig.signature, sig.kid, e.leaf_index, e.scope),
        )
        return replace(e, signature=sig)

    def erasures_signed_by(self, kid: str) -> list[Erasure]:
        """Erasures whose tombstone signature names the key ``kid``."""
        return [
            e
            for es in self.erasures().values()
            for e in es
            if e.tombstone_index is not None and e.signature is not None and e.signature.kid == kid
        ]

    def resign_erasures(self, kid: str, *, key: SigningKey, actor: str) -> list[Erasure]:
        """Re-sign with ``key`` the tombstones signed by the key ``kid`` (one transaction).

        For the ledger-key compromise runbook: once ``kid`` is marked compromised nothing it
        signed is trusted, so its legitimate erasures fail the audit (``tombstone_signature``).
        The operator reviews what :meth:`erasures_signed_by` lists (the leaked key may have
        signed forged erasures too), then re-signs them. Only tombstones whose stored leaf still
        matches their row are signed (the others are left for the audit to name). Publish a
        checkpoint after.

        Raises:
            InputError: ``key`` is the key ``kid`` itself.
        """
        if key.kid == kid:
            raise InputError(
                f"key {kid} cannot re-sign its own tombstones",
                hint="mark it compromised first (`distillguard keys compromised KID`): that "
                "makes a new ledger key",
            )
        done: list[Erasure] = []
        with self.store.transaction() as cur:
            self._lock_state(cur)
            for e in self.erasures_signed_by(kid):
                signed = self._sign_matching(cur, e, key)
                if signed is not None:
                    done.append(signed)
        logger.warning(
            "re-signed %d erasure(s) of key %s with key %s, reviewed by %s",
            len(done),
            kid,
            key.kid,
            actor,
        )
        return done

    def erasures(self) -> dict[int, list[Erasure]]:
        """Every recorded erasure, by erased leaf index."""
        with self.store.transaction() as cur:
            cur.execute(
                "SELECT leaf_index, exchange_id, scope, erased_at, reason, actor, "
                f"{_SIGNED_COLUMNS} FROM ledger_erasures ORDER BY leaf_index, erased_at"
            )
            rows = cur.fetchall()
        out: dict[int, list[Erasure]] = {}
        for r in rows:
            e = _erasure_from_row(r)
            out.setdefault(e.leaf_index, []).append(e)
        return out

    def erasures_of(self, leaf_index: int) -> list[Erasure]:
        """The erasures recorded for one leaf."""
        with self.store.transaction() as cur:
            cur.execute(
                self.store.q(
                    "SELECT leaf_index, exchange_id, scope, erased_at, reason, actor, "
                    f"{_SIGNED_COLUMNS} FROM ledger_erasures WHERE leaf_index = ? "
                    "ORDER BY erased_at"
                ),
                (leaf_index,),
            )
            return [_erasure_from_row(r) for r in cur.fetchall()]

    # -- proofs for third parties --------------------------------------------------------------

    def needed_size(self, exchange_id: str) -> int | None:
        """The smallest tree size a checkpoint must have to prove an exchange and its tombstones
        (None if the exchange has no leaf)."""
        leaf = self.leaf_for(exchange_id)
        if leaf is None:
            return None
        marks = [leaf.leaf_index] + [
            e.tombstone_index
            for e in self.erasures_of(leaf.leaf_index)
            if e.tombstone_index is not None
        ]
        return max(marks) + 1

    def _tombstone_proofs(
        self, leaf: LeafRecord, erased: Sequence[Erasure], size: int
    ) -> tuple[TombstoneProof, ...]:
        out = []
        for e in erased:
            if e.tombstone_index is None:
                continue
            if e.tombstone_index >= size:
                raise ProofError(
                    f"no checkpoint covers the tombstone (leaf {e.tombstone_index}) of the "
                    f"{e.scope} erasure of leaf {leaf.leaf_index} yet",
                    hint="publish one with `distillguard ledger checkpoint`",
                )
            if e.signature is None:
                raise ProofError(
                    f"the tombstone (leaf {e.tombstone_index}) of the {e.scope} erasure of leaf "
                    f"{leaf.leaf_index} is not signed by the ledger key",
                    hint="review it, then `distillguard ledger seal-erasures --yes` signs it",
                )
            out.append(
                TombstoneProof(
                    tombstone=e.tombstone(leaf.leaf_hash),
                    index=e.tombstone_index,
                    proof=tuple(self.inclusion_proof(index=e.tombstone_index, size=size)),
                    signature=e.signature,
                )
            )
        return tuple(out)

    def prove(
        self, exchange_id: str, *, checkpoint: StoredCheckpoint | None = None
    ) -> InclusionBundle:
        """A self-contained inclusion bundle for an exchange against a signed checkpoint.

        Uses the latest checkpoint unless one is given; it must cover the exchange's leaf and
        the tombstones of its erasures. Where the content was erased the bundle carries the
        metadata and the content erasure's tombstone with its own inclusion proof.

        Raises:
            InputError: the exchange is unknown, not in the ledger, or erased as a whole (see
                :meth:`prove_erasure`).
            ProofError: no checkpoint covers the leaf or a tombstone yet (publish one first).
        """
        leaf = self.leaf_for(exchange_id)
        if leaf is None:
            raise InputError(f"exchange {exchange_id!r} is not in the ledger")
        erased = self.erasures_of(leaf.leaf_index)
        if any(e.scope == "record" for e in erased):
            raise InputError(
                f"exchange {exchange_id!r} was erased; there is nothing to prove",
                hint="`ledger prove` shows its erasure (Ledger.prove_erasure)",
            )
        stored = self.store.get_exchange(exchange_id)
        if stored is None:
            raise InputError(f"exchange {exchange_id!r} is in the ledger but not in the store")
        cp_row = checkpoint or self.latest_checkpoint()
        if cp_row is None or cp_row.size <= leaf.leaf_index:
            raise ProofError(
                f"no checkpoint covers leaf {leaf.leaf_index} of exchange {exchange_id!r} yet",
                hint="publish one with `distillguard ledger checkpoint`",
            )
        proof = self.inclusion_proof(index=leaf.leaf_index, size=cp_row.size)
        record = stored.exchange.to_dict()
        content_erased = any(e.scope == "content" for e in erased)
        if content_erased:
            for name in CONTENT_FIELDS:
                record.pop(name, None)
        return InclusionBundle(
            record=record,
            salt=stored.salt,
            leaf_index=leaf.leaf_index,
            leaf_hash=leaf.leaf_hash,
            content_hash=leaf.content_hash,
            content_included=not content_erased,
            proof=tuple(proof),
            checkpoint=cp_row.note,
            tombstones=self._tombstone_proofs(leaf, erased, cp_row.size),
        )

    def prove_erasure(
        self, exchange_id: str, *, checkpoint: StoredCheckpoint | None = None
    ) -> ErasureBundle:
        """A self-contained bundle showing that an exchange was erased: its leaf's inclusion
        proof and each tombstone (what, when, why, by whom) with its own inclusion proof.

        Raises:
            InputError: the exchange is not in the ledger, or its record is not erased.
            ProofError: no checkpoint covers the leaf or its tombstones yet.
        """
        leaf = self.leaf_for(exchange_id)
        if leaf is None:
            raise InputError(f"exchange {exchange_id!r} is not in the ledger")
        erased = [e for e in self.erasures_of(leaf.leaf_index) if e.tombstone_index is not None]
        if not any(e.scope == "record" for e in erased):
            raise InputError(f"exchange {exchange_id!r} has no record erasure in the log")
        cp_row = checkpoint or self.latest_checkpoint()
        if cp_row is None or cp_row.size <= leaf.leaf_index:
            raise ProofError(
                f"no checkpoint covers leaf {leaf.leaf_index} of exchange {exchange_id!r} yet",
                hint="publish one with `distillguard ledger checkpoint`",
            )
        return ErasureBundle(
            exchange_id=exchange_id,
            leaf_index=leaf.leaf_index,
            leaf_hash=leaf.leaf_hash,
            proof=tuple(self.inclusion_proof(index=leaf.leaf_index, size=cp_row.size)),
            tombstones=self._tombstone_proofs(leaf, erased, cp_row.size),
            checkpoint=cp_row.note,
        )


#: The erasure columns after ``actor`` that :func:`_erasure_from_row` reads.
_SIGNED_COLUMNS: Final = "tombstone_leaf, signature, signed_by, content_after"


def _erasure_from_row(r: Sequence[Any]) -> Erasure:
    scope: ErasureScope = "record" if r[2] == "record" else "content"
    signature = None
    if len(r) > 8 and r[7] is not None and isinstance(r[8], str):
        signature = TombstoneSignature(kid=r[8], signature=_blob(r[7]))
    return Erasure(
        int(r[0]),
        str(r[1]),
        scope,
        from_micros(int(r[3])),
        str(r[4]),
        str(r[5]),
        None if r[6] is None else int(r[6]),
        signature,
        None if len(r) < 10 or r[9] is None else _blob(r[9]),
    )
