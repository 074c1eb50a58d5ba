"""The ledger audit: recompute every leaf and the whole tree from the stored records.

:func:`audit_ledger` walks the leaves in order and, for each, reads its record and salt from the
store, recomputes the leaf commitment (:mod:`distillguard.ledger._leaf`), rebuilds the tree
incrementally, compares every interior node with the stored one, and checks every signed
checkpoint (the store's and any given from outside, e.g. saved by a witness): its signature, and
that its root is the recomputed root at its size. It reports:

* the first leaf whose record no longer matches (changed, missing, reordered, or a row that is
  not a valid record at all), by index and exchange id;
* the first checkpoint that fails (forged signature, root not in the recomputed tree, or a tree
  size beyond the current tree: the tree was truncated or rolled back);
* erased leaves as *erased*, with when, why and by whom, never as tampering, but only where the
  erasure is in the log: a tombstone leaf (:mod:`distillguard.ledger._tombstone`) recomputed from
  its ``ledger_erasures`` row, matching the stored leaf, and covered by a signed checkpoint whose
  root matches the recomputed tree. An erasure row with no tombstone (``erasure_unlogged``), one
  whose tombstone does not match (``tombstone_mismatch``, ``erasure_unverified``) or whose
  tombstone no signed checkpoint covers yet (``erasure_unsigned``) is a finding: a row in a table
  is not evidence of an erasure, a signed log entry is. The checkpoint signer signs whatever tree
  it finds, so the tombstone must also carry its own signature by a trusted ledger key, made by
  the process that erased (``tombstone_unsigned`` without one, ``tombstone_signature`` for one
  that does not verify, or by a key retired before the erasure or before a signed checkpoint
  that did not yet hold the tombstone, or compromised);
* records in the store that are not in the ledger.

Nothing in the store can make the audit raise: a row that cannot be decoded is a located finding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature

from distillguard._internal.timeutil import format_ts, from_micros
from distillguard.errors import DistillGuardError
from distillguard.keyring import VerifyKey
from distillguard.ledger._checkpoint import (
    Checkpoint,
    LedgerKey,
    note_key_hash,
    parse_checkpoint,
    verify_checkpoint,
)
from distillguard.ledger._compact_range import CompactRange
from distillguard.ledger._hashing import EMPTY_ROOT, leaf_hash
from distillguard.ledger._leaf import (
    commit_exchange,
    commit_exchanges,
    content_hash,
    leaf_data,
    meta_hash,
    split_record,
)
from distillguard.ledger._log import STORED_MIN_LEVEL, Erasure, LeafRecord, Ledger, TreeHead
from distillguard.ledger._tombstone import TombstoneSignature, verify_tombstone_signature
from distillguard.ledger._verify import verify_inclusion
from distillguard.records import Exchange
from distillguard.store import StoredExchange
from distillguard.store.base import UndecodableExchange

__all__ = ["AuditFinding", "AuditReport", "FindingKind", "audit_ledger"]

logger = logging.getLogger(__name__)

FindingKind = Literal[
    "record_changed",
    "record_missing",
    "leaf_missing",
    "node_mismatch",
    "state_mismatch",
    "checkpoint_signature",
    "checkpoint_malformed",
    "checkpoint_root",
    "checkpoint_beyond_tree",
    "record_not_in_ledger",
    "record_undecodable",
    "erasure_unlogged",
    "erasure_unverified",
    "erasure_unsigned",
    "tombstone_mismatch",
    "tombstone_unsigned",
    "tombstone_signature",
    "checkpoint_distrusted",
]
_WINDOW: Final = 50_000
_MAX_FINDINGS: Final = 1000


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One problem the audit found; ``leaf_index`` or ``checkpoint`` names where."""

    kind: FindingKind
    message: str
    leaf_index: int | None = None
    exchange_id: str | None = None
    checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "kind": self.kind,
            "message": self.message,
            "leaf_index": self.leaf_index,
            "exchange_id": self.exchange_id,
            "checkpoint": self.checkpoint,
        }


@dataclass(slots=True)
class AuditReport:
    """The outcome of an audit. ``ok`` is true when nothing but erasures was found."""

    origin: str
    tree_size: int
    root_hash: bytes
    leaves_checked: int = 0
    checkpoints_checked: int = 0
    erased: list[Erasure] = field(default_factory=list)
    findings: list[AuditFinding] = field(default_factory=list)
    #: The largest tree size a verified checkpoint signs whose root matched the recomputed tree.
    signed_size: int = 0
    #: What is reported without failing the audit: checkpoints signed only by a key marked
    #: compromised whose tree a trusted later checkpoint covers (``checkpoint_distrusted``).
    warnings: list[AuditFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every leaf, node and checkpoint checked out."""
        return not self.findings

    @property
    def first_bad_index(self) -> int | None:
        """The smallest leaf index named by a finding, if any."""
        indices = [f.leaf_index for f in self.findings if f.leaf_index is not None]
        return min(indices) if indices else None

    @property
    def first_bad_checkpoint(self) -> str | None:
        """The first checkpoint named by a finding, if any."""
        for f in self.findings:
            if f.checkpoint is not None:
                return f.checkpoint
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "ok": self.ok,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash_hex": self.root_hash.hex(),
            "leaves_checked": self.leaves_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_index": self.first_bad_index,
            "first_bad_checkpoint": self.first_bad_checkpoint,
            "signed_size": self.signed_size,
            "erased": [e.to_dict() for e in self.erased],
            "findings": [f.to_dict() for f in self.findings],
            "warnings": [w.to_dict() for w in self.warnings],
        }


@dataclass(frozen=True, slots=True)
class _Expected:
    label: str
    checkpoint: Checkpoint
    #: The id of the compromised key that alone signed it (None: a trusted checkpoint).
    distrusted_by: str | None = None


def _compromised_signer(cp: Checkpoint, public_keys: Sequence[LedgerKey]) -> str | None:
    """The id of a key marked compromised whose signature of ``cp`` verifies, if any."""
    body = cp.body.encode()
    for key in public_keys:
        if not (isinstance(key, VerifyKey) and key.compromised):
            continue
        wanted = note_key_hash(cp.origin, key.public_key)
        for sig in cp.signatures:
            if sig.name != cp.origin or sig.key_hash != wanted:
                continue
            try:
                key.public_key.verify(sig.signature, body)
            except InvalidSignature:
                continue
            return key.kid
    return None


_Row = StoredExchange | UndecodableExchange


def _id_of(row: _Row) -> str:
    return row.exchange_id if isinstance(row, UndecodableExchange) else row.exchange.exchange_id


class _Records:
    """Stored records by exchange id, read in insertion order with a bounded look-ahead."""

    def __init__(self, ledger: Ledger) -> None:
        self._store = ledger.store
        self._iter: Iterator[list[_Row]] = ledger.store.iter_exchanges_checked()
        self._pending: dict[str, _Row] = {}
        self._fetched_directly: set[str] = set()
        self._done = False

    def get(self, exchange_id: str) -> _Row | None:
        pending = self._pending
        while exchange_id not in pending and not self._done and len(pending) < _WINDOW:
            batch = next(self._iter, None)
            if batch is None:
                self._done = True
                break
            for s in batch:
                sid = _id_of(s)
                if sid in self._fetched_directly:
                    self._fetched_directly.discard(sid)
                else:
                    pending[sid] = s
        found = pending.pop(exchange_id, None)
        if found is None and not self._done:
            found = self._store.get_exchange_checked(exchange_id)
            if found is not None:
                self._fetched_directly.add(exchange_id)
        return found

    def leftovers(self) -> Iterator[str]:
        yield from self._pending
        for batch in self._iter:
            for s in batch:
                if _id_of(s) not in self._fetched_directly:
                    yield _id_of(s)


def _load_checkpoints(
    ledger: Ledger,
    report: AuditReport,
    public_keys: Sequence[LedgerKey],
    external: Sequence[tuple[str, str]],
    verified: list[Checkpoint],
) -> dict[int, list[_Expected]]:
    notes = [(f"checkpoint #{c.checkpoint_no}", c.note) for c in ledger.checkpoints()]
    notes.extend(external)
    by_size: dict[int, list[_Expected]] = {}
    for label, note in notes:
        report.checkpoints_checked += 1
        try:
            parsed = parse_checkpoint(note)
        except DistillGuardError as exc:
            report.findings.append(
                AuditFinding("checkpoint_malformed", f"{label}: {exc.message}", checkpoint=label)
            )
            continue
        try:
            cp = verify_checkpoint(parsed, public_keys=public_keys, origin=ledger.origin)
        except DistillGuardError as exc:
            kid = (
                _compromised_signer(parsed, public_keys) if parsed.origin == ledger.origin else None
            )
            if kid is not None:
                # Judged after the walk: distrusted where a trusted later checkpoint covers it.
                by_size.setdefault(parsed.size, []).append(_Expected(label, parsed, kid))
                continue
            report.findings.append(
                AuditFinding(
                    "checkpoint_signature",
                    f"{label} (size {parsed.size}): {exc.message}",
                    checkpoint=label,
                )
            )
            continue
        by_size.setdefault(cp.size, []).append(_Expected(label, cp))
        verified.append(cp)
    verified.sort(key=lambda cp: cp.size)
    return by_size


@dataclass(slots=True)
class _Erasures:
    """The erasure rows and what the walk learns about them."""

    by_leaf: dict[int, list[Erasure]]
    by_tombstone: dict[int, list[Erasure]] = field(default_factory=dict)
    #: Content erasures replaced by a later one of the same leaf, by tombstone leaf: they
    #: explain their tombstone leaf and excuse nothing.
    superseded: dict[int, list[Erasure]] = field(default_factory=dict)
    #: Stored leaf hash of each walked leaf that has erasure rows (what its tombstone names).
    erased_hashes: dict[int, bytes] = field(default_factory=dict)
    #: (erased leaf, scope) -> index and hash of the tombstone leaf that matched its row.
    vouched: dict[tuple[int, str], tuple[int, bytes]] = field(default_factory=dict)
    #: Erasures the audit relied on to accept a missing or changed record.
    relied: list[tuple[LeafRecord, Erasure, str]] = field(default_factory=list)


def _read_erasures(ledger: Ledger, add: Callable[[AuditFinding], None]) -> _Erasures:
    """Every ``ledger_erasures`` row; a row that cannot be read is a finding, not a crash."""
    out = _Erasures(by_leaf={})
    with ledger.store.transaction() as cur:
        cur.execute(
            "SELECT leaf_index, exchange_id, scope, erased_at, reason, actor, tombstone_leaf, "
            "signature, signed_by, content_after FROM ledger_erasures"
        )
        rows = [(r, False) for r in cur.fetchall()]
        cur.execute(
            "SELECT leaf_index, exchange_id, scope, erased_at, reason, actor, tombstone_leaf, "
            "signature, signed_by, content_after FROM ledger_superseded_erasures"
        )
        rows.extend((r, True) for r in cur.fetchall())
    for r, old in rows:
        try:
            if r[2] not in ("content", "record") or not isinstance(r[1], str):
                raise ValueError(f"scope {r[2]!r}")
            if not (isinstance(r[4], str) and isinstance(r[5], str)):
                raise ValueError("reason and actor must be text")
            sig = None
            if r[7] is not None:
                raw = r[7]
                blob = bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else b""
                sig = TombstoneSignature(kid=str(r[8]), signature=blob)
            after = r[9]
            if after is not None:
                if not isinstance(after, bytes | bytearray | memoryview):
                    raise ValueError("content_after must be a hash")
                after = bytes(after)
            e = Erasure(
                int(r[0]),
                r[1],
                "record" if r[2] == "record" else "content",
                from_micros(int(r[3])),
                r[4],
                r[5],
                None if r[6] is None else int(r[6]),
                sig,
                after,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            index = r[0] if type(r[0]) is int else None
            add(
                AuditFinding(
                    "erasure_unverified",
                    f"an erasure row (leaf {r[0]!r}, exchange {r[1]!r}) cannot be read: {exc}",
                    leaf_index=index,
                    exchange_id=r[1] if isinstance(r[1], str) else None,
                )
            )
            continue
        if old:
            if e.tombstone_index is not None:
                out.superseded.setdefault(e.tombstone_index, []).append(e)
            continue
        out.by_leaf.setdefault(e.leaf_index, []).append(e)
        if e.tombstone_index is not None:
            out.by_tombstone.setdefault(e.tombstone_index, []).append(e)
    for erased in out.by_leaf.values():
        erased.sort(key=lambda e: (e.erased_at, e.scope))
    return out


def audit_ledger(
    ledger: Ledger,
    *,
    public_keys: Sequence[LedgerKey],
    external_checkpoints: Sequence[tuple[str, str]] = (),
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit a ledger against its store and its checkpoints.

    Args:
        ledger: the ledger to audit.
        public_keys: the ledger's public keys (active and retired) that checkpoints and
            tombstones may carry; as :class:`~distillguard.keyring.VerifyKey` (the keyring's,
            or :func:`~distillguard.ledger._checkpoint.load_public_keys`) a retired key counts
            only for what it signed before its ``retired_at``.
        external_checkpoints: ``(label, note)`` checkpoints kept outside the store (a witness's,
            a file handed to a third party); a rollback of the whole store shows against these.
        batch_size: leaves read per query.
        progress: called with the number of leaves checked after each batch.
    """
    head: TreeHead | None
    try:
        head = ledger.head()
    except DistillGuardError as exc:
        head = None  # a mistyped ledger_state row: a finding below, never a crash
        state_error = exc.message
    report = AuditReport(
        origin=ledger.origin,
        tree_size=0 if head is None else head.size,
        root_hash=EMPTY_ROOT if head is None else head.root_hash,
    )
    verified: list[Checkpoint] = []
    expected = _load_checkpoints(ledger, report, public_keys, external_checkpoints, verified)
    records = _Records(ledger)
    tree = CompactRange()
    findings = report.findings

    def add(finding: AuditFinding) -> None:
        if len(findings) < _MAX_FINDINGS:
            findings.append(finding)

    erasures = _read_erasures(ledger, add)

    #: Checkpoints of compromised keys whose root matched the recomputed tree at their size.
    distrusted: list[_Expected] = []

    def check_checkpoints(size: int, root: bytes) -> None:
        for exp in expected.pop(size, []):
            if exp.distrusted_by is not None and exp.checkpoint.root_hash == root:
                distrusted.append(exp)
            elif exp.distrusted_by is not None:
                add(
                    AuditFinding(
                        "checkpoint_signature",
                        f"{exp.label} (size {size}) is signed only by key {exp.distrusted_by}, "
                        "marked compromised, and its root is not the recomputed tree's: a "
                        "checkpoint forged with the leaked key",
                        checkpoint=exp.label,
                    )
                )
            elif exp.checkpoint.root_hash != root:
                add(
                    AuditFinding(
                        "checkpoint_root",
                        f"{exp.label} (size {size}) signs a root that is not the root of the "
                        "recomputed tree: the records or the tree changed after it was signed",
                        checkpoint=exp.label,
                    )
                )
            else:
                report.signed_size = max(report.signed_size, size)

    check_checkpoints(0, EMPTY_ROOT)
    next_index = 0
    for batch in ledger.iter_leaves(batch_size=batch_size):
        good = batch
        for k, leaf in enumerate(batch):
            if leaf.leaf_index != next_index + k:
                add(
                    AuditFinding(
                        "leaf_missing",
                        f"leaves {next_index + k}..{leaf.leaf_index - 1} are missing from the "
                        "ledger",
                        leaf_index=next_index + k,
                    )
                )
                good = batch[:k]  # the tree cannot be rebuilt past a gap
                break
        hashes = _check_leaves(good, records, erasures, add)
        # Grow the tree in runs that end at the signed sizes, whose roots are then compared.
        base = tree.size
        pos = 0
        for size in sorted(n for n in expected if base < n <= base + len(hashes)):
            tree.append(hashes[pos : size - base], include_leaves=False)
            pos = size - base
            check_checkpoints(size, tree.root())
        tree.append(hashes[pos:], include_leaves=False)
        next_index += len(good)
        if len(good) < len(batch):
            break
        report.leaves_checked = next_index
        if progress is not None:
            progress(next_index)
    report.leaves_checked = tree.size
    if head is None:
        add(
            AuditFinding(
                "state_mismatch",
                f"the ledger_state row cannot be read ({state_error}); the recomputed tree has "
                f"{tree.size} leaves",
                leaf_index=tree.size,
            )
        )
        report.tree_size, report.root_hash = tree.size, tree.root()
        head = TreeHead(ledger.origin, -1, b"")
    elif tree.size == head.size and tree.root() != head.root_hash:
        add(
            AuditFinding(
                "state_mismatch",
                "the stored tree root is not the root recomputed from the records",
            )
        )
    elif tree.size != head.size:
        add(
            AuditFinding(
                "state_mismatch",
                f"the ledger says it has {head.size} leaves but {tree.size} could be checked",
                leaf_index=tree.size,
            )
        )
    _check_stored_nodes(ledger, tree.size, add)
    for exp in distrusted:
        size = exp.checkpoint.size
        if size <= report.signed_size:
            # The recomputed tree has this root at this size and a trusted checkpoint's root at
            # a size at or beyond it: the trusted checkpoint covers (is consistent with) it.
            report.warnings.append(
                AuditFinding(
                    "checkpoint_distrusted",
                    f"{exp.label} (size {size}) is signed only by key {exp.distrusted_by}, "
                    f"marked compromised: not trusted; the trusted checkpoint of size "
                    f"{report.signed_size} covers the same tree",
                    checkpoint=exp.label,
                )
            )
        else:
            add(
                AuditFinding(
                    "checkpoint_signature",
                    f"{exp.label} (size {size}) is signed only by key {exp.distrusted_by}, "
                    "marked compromised, and no trusted later checkpoint covers its tree: sign "
                    "one with the new key (`distillguard ledger checkpoint`)",
                    checkpoint=exp.label,
                )
            )
    for size, pending in sorted(expected.items()):
        for exp in pending:
            add(
                AuditFinding(
                    "checkpoint_beyond_tree",
                    f"{exp.label} signs a tree of {size} leaves but only {tree.size} are "
                    "present: the log was truncated or rolled back",
                    checkpoint=exp.label,
                )
            )

    def signed(index: int, hashed: bytes) -> bool:
        """Whether a verified checkpoint includes leaf ``index`` with this hash.

        Where the root of a checkpoint covering the leaf matched the recomputed tree, it does.
        Otherwise (another leaf was changed since) the leaf's inclusion proof, built from the
        stored nodes, is checked against each verified checkpoint that covers it: sound whatever
        the stored nodes say, since the root it must reach is signed.
        """
        if index < report.signed_size:
            return True
        for cp in verified:
            if cp.size <= index:
                continue
            try:
                proof = ledger.inclusion_proof(index=index, size=cp.size)
                verify_inclusion(
                    leaf_hash=hashed, index=index, size=cp.size, proof=proof, root=cp.root_hash
                )
            except DistillGuardError:
                continue
            return True
        return False

    def authorised(e: Erasure, index: int) -> AuditFinding | None:
        """None where the tombstone of ``e`` (at leaf ``index``) is signed by a trusted key."""
        erased_hash = erasures.erased_hashes.get(e.leaf_index)
        if erased_hash is None:
            return None  # not vouched: named elsewhere
        # A signature cannot be older than a signed checkpoint that did not hold the tombstone.
        not_before = max(
            (cp.timestamp for cp in verified if cp.size <= index and cp.timestamp is not None),
            default=None,
        )
        try:
            verify_tombstone_signature(
                ledger.origin,
                e.tombstone(erased_hash),
                e.signature,
                public_keys,
                not_before=not_before,
            )
        except DistillGuardError as exc:
            unsigned = e.signature is None
            return AuditFinding(
                "tombstone_unsigned" if unsigned else "tombstone_signature",
                f"leaf {e.leaf_index}: the tombstone (leaf {index}) of the {_describe(e)} of "
                f"{e.exchange_id!r} "
                + (
                    "is not signed by the ledger key: an erasure made without the keyring, or "
                    "forged by someone who can write the database; review it, then "
                    "`distillguard ledger seal-erasures --yes`"
                    if unsigned
                    else f"is not authorised: {exc.message}"
                ),
                leaf_index=e.leaf_index,
                exchange_id=e.exchange_id,
            )
        return None

    _settle_erasures(
        erasures,
        report,
        tree.size,
        complete=tree.size == head.size,
        signed=signed,
        authorised=authorised,
        add=add,
    )
    count = 0
    first: list[str] = []
    for exchange_id in records.leftovers():
        count += 1
        if len(first) < 5:
            first.append(exchange_id)
    if count:
        add(
            AuditFinding(
                "record_not_in_ledger",
                f"{count} stored record(s) have no leaf (e.g. {', '.join(first)})",
                exchange_id=first[0],
            )
        )
    findings.sort(key=lambda f: (f.leaf_index is None, f.leaf_index or 0))
    logger.info("audit of %s: %d finding(s)", ledger.origin, len(findings))
    return report


def _describe(e: Erasure) -> str:
    return f"{e.scope} erasure of {format_ts(e.erased_at)} by {e.actor!r} ({e.reason!r})"


def _settle_erasures(
    erasures: _Erasures,
    report: AuditReport,
    checked: int,
    *,
    complete: bool,
    signed: Callable[[int, bytes], bool],
    authorised: Callable[[Erasure, int], AuditFinding | None],
    add: Callable[[AuditFinding], None],
) -> None:
    """Accept each logged erasure whose tombstone matched, carries a trusted signature and is
    covered by a signed checkpoint; name the others."""
    relied = {(leaf.leaf_index, e.scope): state for leaf, e, state in erasures.relied}
    for index in sorted(erasures.by_leaf):
        if index >= checked and not complete:
            continue  # the walk stopped at a gap before this leaf (already a finding)
        for e in erasures.by_leaf[index]:
            if e.tombstone_index is None:
                continue  # named as erasure_unlogged when its leaf was checked
            vouched = erasures.vouched.get((index, e.scope))
            state = relied.get((index, e.scope))
            because = f" (the record is {state})" if state else ""
            if vouched is None:
                add(
                    AuditFinding(
                        "erasure_unverified",
                        f"leaf {index}: the {_describe(e)} of {e.exchange_id!r} names tombstone "
                        f"leaf {e.tombstone_index}, which is not a tombstone matching it{because}",
                        leaf_index=index,
                        exchange_id=e.exchange_id,
                    )
                )
            elif (refused := authorised(e, vouched[0])) is not None:
                add(refused)
            elif not signed(*vouched):
                add(
                    AuditFinding(
                        "erasure_unsigned",
                        f"leaf {index}: the tombstone (leaf {vouched[0]}) of the {_describe(e)} "
                        f"of {e.exchange_id!r} is not covered by a signed checkpoint yet"
                        f"{because}; publish one (`distillguard ledger checkpoint`)",
                        leaf_index=index,
                        exchange_id=e.exchange_id,
                    )
                )
            else:
                report.erased.append(e)
    report.erased.sort(key=lambda e: (e.leaf_index, e.erased_at))


def _poison(stored_hash: bytes) -> bytes:
    """A leaf hash that is certainly not the stored one (so the signed roots show the change)."""
    return leaf_hash(b"\xff" + stored_hash)


def _check_leaves(
    batch: Sequence[LeafRecord],
    records: _Records,
    erasures: _Erasures,
    add: Callable[[AuditFinding], None],
) -> list[bytes]:
    """The recomputed leaf hashes of a batch of consecutive leaves.

    Records with no erasure are recommitted in one :func:`commit_exchanges` call (the append
    path's own loop); leaves that differ, are missing, were erased or are tombstones go through
    :func:`_check_leaf` or :func:`_check_tombstone`, which name them.
    """
    stored = [None if leaf.is_tombstone else records.get(leaf.exchange_id) for leaf in batch]
    plain: list[int] = []
    pairs: list[tuple[Exchange, bytes]] = []
    for k, leaf in enumerate(batch):
        s = stored[k]
        if isinstance(s, StoredExchange) and leaf.leaf_index not in erasures.by_leaf:
            plain.append(k)
            pairs.append((s.exchange, s.salt))
    fresh: dict[int, tuple[bytes, bytes]] = {}
    if plain:
        try:
            fresh = dict(zip(plain, commit_exchanges(pairs), strict=True))
        except DistillGuardError:
            fresh = {}  # one record cannot be committed: let _check_leaf find which
    out: list[bytes] = []
    for k, leaf in enumerate(batch):
        got = fresh.get(k)
        if got is not None and got[0] == leaf.leaf_hash and got[1] == leaf.content_hash:
            out.append(got[0])
        elif leaf.is_tombstone:
            out.append(_check_tombstone(leaf, erasures, add))
        else:
            out.append(_check_leaf(leaf, stored[k], erasures, add))
    return out


def _check_tombstone(
    leaf: LeafRecord, erasures: _Erasures, add: Callable[[AuditFinding], None]
) -> bytes:
    """The tombstone leaf's hash recomputed from the erasure row that names it."""
    claims = erasures.by_tombstone.get(leaf.leaf_index, [])
    computed: bytes | None = None
    for e in erasures.superseded.get(leaf.leaf_index, []):
        # A content tombstone replaced by a later one: it explains its leaf, excuses nothing.
        erased_hash = erasures.erased_hashes.get(e.leaf_index)
        if erased_hash is None or e.leaf_index >= leaf.leaf_index or e.scope != "content":
            continue
        try:
            h = e.tombstone(erased_hash).tombstone_hash
        except DistillGuardError:
            continue
        if h == leaf.leaf_hash:
            return h
    for e in claims:
        erased_hash = erasures.erased_hashes.get(e.leaf_index)
        if erased_hash is None or e.leaf_index >= leaf.leaf_index:
            continue
        try:
            h = e.tombstone(erased_hash).tombstone_hash
        except DistillGuardError:
            continue
        if h == leaf.leaf_hash:
            erasures.vouched[(e.leaf_index, e.scope)] = (leaf.leaf_index, h)
            return h
        computed = h
    if not claims:
        why = "no erasure row names it"
    else:
        e = claims[0]
        why = (
            f"the erasure row naming it ({e.scope} of leaf {e.leaf_index}) does not match it: "
            "the erasure's leaf, time, reason or actor was changed"
        )
    add(
        AuditFinding(
            "tombstone_mismatch",
            f"leaf {leaf.leaf_index} is a tombstone of {leaf.exchange_id!r} but {why}",
            leaf_index=leaf.leaf_index,
            exchange_id=leaf.exchange_id,
        )
    )
    return computed if computed is not None else _poison(leaf.leaf_hash)


def _check_leaf(
    leaf: LeafRecord,
    stored: _Row | None,
    erasures: _Erasures,
    add: Callable[[AuditFinding], None],
) -> bytes:
    """The leaf hash recomputed from the record (the stored one for an erased record)."""
    index = leaf.leaf_index
    erased = erasures.by_leaf.get(index, [])
    if erased:
        erasures.erased_hashes[index] = leaf.leaf_hash
    scopes = {e.scope for e in erased}
    recomputed = b""
    if isinstance(stored, UndecodableExchange):
        state = f"not a valid record ({stored.describe()})"
        need = "record"
    elif stored is None:
        state, need = "missing", "record"
        recomputed = leaf.leaf_hash
    else:
        try:
            commitment = commit_exchange(stored.exchange, stored.salt)
            if commitment.content_hash == leaf.content_hash:
                recomputed = commitment.leaf_hash
        except DistillGuardError:
            pass
        if recomputed == leaf.leaf_hash:
            state, need = "intact", ""
        elif "content" in scopes:
            meta, _ = split_record(stored.exchange.to_dict())
            try:
                recomputed = leaf_hash(leaf_data(meta_hash(meta, stored.salt), leaf.content_hash))
            except DistillGuardError:
                recomputed = b""
            if recomputed == leaf.leaf_hash:
                state, need = "changed in its content only", "content"
            else:
                state, need = "changed", ""
        else:
            state, need = "changed", ""
        if "content" in scopes and state != "changed":
            _check_content_after(leaf, stored, erased, add)
    for e in erased:
        if e.tombstone_index is None:
            add(
                AuditFinding(
                    "erasure_unlogged",
                    f"leaf {index}: ledger_erasures holds a {_describe(e)} of "
                    f"{e.exchange_id!r} that is not in the log (no tombstone leaf); the record "
                    f"is {state}",
                    leaf_index=index,
                    exchange_id=leaf.exchange_id,
                )
            )
    logged = [e for e in erased if e.scope == need and e.tombstone_index is not None]
    bare = any(e.scope == need and e.tombstone_index is None for e in erased)
    if logged:
        erasures.relied.extend((leaf, e, state) for e in logged)
    elif need and not bare:
        kind: FindingKind = "record_missing" if stored is None else "record_undecodable"
        add(
            AuditFinding(
                kind,
                f"leaf {index}: record {leaf.exchange_id!r} is {state} and no erasure is recorded",
                leaf_index=index,
                exchange_id=leaf.exchange_id,
            )
        )
    elif not need and state == "changed":
        add(
            AuditFinding(
                "record_changed",
                f"leaf {index}: record {leaf.exchange_id!r} no longer matches its leaf",
                leaf_index=index,
                exchange_id=leaf.exchange_id,
            )
        )
    # The tree is rebuilt from what the records say now, so checkpoints show a change.
    return recomputed if len(recomputed) == 32 else _poison(leaf.leaf_hash)


def _check_content_after(
    leaf: LeafRecord,
    stored: StoredExchange,
    erased: Sequence[Erasure],
    add: Callable[[AuditFinding], None],
) -> None:
    """Name a content-erased record whose content is not what its content tombstone left.

    A version 2 content tombstone commits to the content the row held right after the erasure
    (NULL, or the minimised text); content written into the row afterwards (made up by someone
    with database access) no longer matches it. A version 1 tombstone does not say: such a
    row's content is not checked (the record's metadata still is).
    """
    for e in erased:
        if e.scope != "content" or e.tombstone_index is None or e.content_after is None:
            continue
        _, content = split_record(stored.exchange.to_dict())
        try:
            now = content_hash(content, stored.salt)
        except DistillGuardError:
            now = b""
        if now != e.content_after:
            add(
                AuditFinding(
                    "record_changed",
                    f"leaf {leaf.leaf_index}: record {leaf.exchange_id!r} holds content that is "
                    f"not what its {_describe(e)} left (tombstone leaf {e.tombstone_index}): "
                    "the content was written after the erasure",
                    leaf_index=leaf.leaf_index,
                    exchange_id=leaf.exchange_id,
                )
            )


def _check_stored_nodes(
    ledger: Ledger, size: int, add: Callable[[AuditFinding], None], chunk: int = 65_536
) -> None:
    """Compare every stored interior node with one recomputed from the stored leaves."""
    from distillguard.ledger._compact_range import node_level

    tree = CompactRange()
    for batch in ledger.iter_leaves(batch_size=chunk):
        batch = [leaf for leaf in batch if leaf.leaf_index < size]
        if not batch:
            break
        nodes = tree.append(
            [leaf.leaf_hash for leaf in batch], include_leaves=False, min_level=STORED_MIN_LEVEL
        )
        stored = ledger.get_nodes(i for i, _ in nodes)
        for nid, h in nodes:
            if stored.get(nid) != h:
                # Leaves under node id nid: in-order numbering gives level = trailing ones.
                level = node_level(nid)
                first_leaf = (nid >> (level + 1)) << level
                add(
                    AuditFinding(
                        "node_mismatch",
                        f"stored tree node over leaves {first_leaf}.."
                        f"{first_leaf + (1 << level) - 1} is missing or wrong (proofs for these "
                        "leaves would fail)",
                        leaf_index=first_leaf,
                    )
                )
                return
