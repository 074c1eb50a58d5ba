"""The ledger audit: recompute every leaf and the whole tree from the stored records.

:func:`audit_ledger` walks the leaves in order and, for each, reads its record and salt from the
store, recomputes the leaf commitment (:mod:`distillguard.ledger.leaf`), rebuilds the tree
incrementally, compares every interior node with the stored one, and checks every signed
checkpoint (the store's and any given from outside, e.g. saved by a witness): its signature, and
that its root is the recomputed root at its size. It reports:

* the first leaf whose record no longer matches (changed, missing, reordered), by index;
* the first checkpoint that fails (forged signature, root not in the recomputed tree, or a tree
  size beyond the current tree: the tree was truncated or rolled back);
* erased leaves as *erased*, with when, why and by whom, never as tampering;
* records in the store that are not in the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from distillguard.errors import DistillGuardError
from distillguard.ledger.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from distillguard.ledger.compact_range import CompactRange
from distillguard.ledger.hashing import EMPTY_ROOT, leaf_hash
from distillguard.ledger.leaf import (
    commit_exchange,
    commit_exchanges,
    leaf_data,
    meta_hash,
    split_record,
)
from distillguard.ledger.log import STORED_MIN_LEVEL, Erasure, LeafRecord, Ledger
from distillguard.store import StoredExchange

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
            "erased": [e.to_dict() for e in self.erased],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class _Expected:
    label: str
    checkpoint: Checkpoint


class _Records:
    """Stored records by exchange id, read in insertion order with a bounded look-ahead."""

    def __init__(self, ledger: Ledger) -> None:
        self._store = ledger.store
        self._iter: Iterator[list[StoredExchange]] = ledger.store.iter_exchanges()
        self._pending: dict[str, StoredExchange] = {}
        self._fetched_directly: set[str] = set()
        self._done = False

    def get(self, exchange_id: str) -> StoredExchange | None:
        pending = self._pending
        while exchange_id not in pending and not self._done and len(pending) < _WINDOW:
            batch = next(self._iter, None)
            if batch is None:
                self._done = True
                break
            for s in batch:
                if s.exchange.exchange_id in self._fetched_directly:
                    self._fetched_directly.discard(s.exchange.exchange_id)
                else:
                    pending[s.exchange.exchange_id] = s
        found = pending.pop(exchange_id, None)
        if found is None and not self._done:
            found = self._store.get_exchange(exchange_id)
            if found is not None:
                self._fetched_directly.add(exchange_id)
        return found

    def leftovers(self) -> Iterator[str]:
        yield from self._pending
        for batch in self._iter:
            for s in batch:
                if s.exchange.exchange_id not in self._fetched_directly:
                    yield s.exchange.exchange_id


def _load_checkpoints(
    ledger: Ledger,
    report: AuditReport,
    public_keys: Sequence[Ed25519PublicKey],
    external: Sequence[tuple[str, str]],
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
            report.findings.append(
                AuditFinding(
                    "checkpoint_signature",
                    f"{label} (size {parsed.size}): {exc.message}",
                    checkpoint=label,
                )
            )
            continue
        by_size.setdefault(cp.size, []).append(_Expected(label, cp))
    return by_size


def audit_ledger(
    ledger: Ledger,
    *,
    public_keys: Sequence[Ed25519PublicKey],
    external_checkpoints: Sequence[tuple[str, str]] = (),
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit a ledger against its store and its checkpoints.

    Args:
        ledger: the ledger to audit.
        public_keys: the ledger's public keys (active and retired) that checkpoints may carry.
        external_checkpoints: ``(label, note)`` checkpoints kept outside the store (a witness's,
            a file handed to a third party); a rollback of the whole store shows against these.
        batch_size: leaves read per query.
        progress: called with the number of leaves checked after each batch.
    """
    head = ledger.head()
    report = AuditReport(origin=ledger.origin, tree_size=head.size, root_hash=head.root_hash)
    expected = _load_checkpoints(ledger, report, public_keys, external_checkpoints)
    erasures = ledger.erasures()
    records = _Records(ledger)
    tree = CompactRange()
    findings = report.findings

    def add(finding: AuditFinding) -> None:
        if len(findings) < _MAX_FINDINGS:
            findings.append(finding)

    def check_checkpoints(size: int, root: bytes) -> None:
        for exp in expected.pop(size, []):
            if exp.checkpoint.root_hash != root:
                add(
                    AuditFinding(
                        "checkpoint_root",
                        f"{exp.label} (size {size}) signs a root that is not the root of the "
                        "recomputed tree: the records or the tree changed after it was signed",
                        checkpoint=exp.label,
                    )
                )

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
        hashes = _check_leaves(good, records, erasures, report, add)
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
    if tree.size == head.size and tree.root() != head.root_hash:
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


def _check_leaves(
    batch: Sequence[LeafRecord],
    records: _Records,
    erasures: dict[int, list[Erasure]],
    report: AuditReport,
    add: Callable[[AuditFinding], None],
) -> list[bytes]:
    """The recomputed leaf hashes of a batch of consecutive leaves.

    Records with no erasure are recommitted in one :func:`commit_exchanges` call (the append
    path's own loop); leaves that differ, are missing or were erased go through
    :func:`_check_leaf`, which names them.
    """
    stored = [records.get(leaf.exchange_id) for leaf in batch]
    plain = [
        k
        for k, leaf in enumerate(batch)
        if stored[k] is not None and leaf.leaf_index not in erasures
    ]
    fresh: dict[int, tuple[bytes, bytes]] = {}
    if plain:
        try:
            commits = commit_exchanges(
                [(s.exchange, s.salt) for k in plain if (s := stored[k]) is not None]
            )
            fresh = dict(zip(plain, commits, strict=True))
        except DistillGuardError:
            fresh = {}  # one record cannot be committed: let _check_leaf find which
    out: list[bytes] = []
    for k, leaf in enumerate(batch):
        got = fresh.get(k)
        if got is not None and got[0] == leaf.leaf_hash and got[1] == leaf.content_hash:
            out.append(got[0])
        else:
            out.append(_check_leaf(leaf, stored[k], erasures, report, add))
    return out


def _check_leaf(
    leaf: LeafRecord,
    stored: StoredExchange | None,
    erasures: dict[int, list[Erasure]],
    report: AuditReport,
    add: Callable[[AuditFinding], None],
) -> bytes:
    """The leaf hash recomputed from the record (the stored one for an erased record)."""
    erased = erasures.get(leaf.leaf_index, [])
    scopes = {e.scope for e in erased}
    report.erased.extend(erased)
    if "record" in scopes:
        return leaf.leaf_hash
    if stored is None:
        add(
            AuditFinding(
                "record_missing",
                f"leaf {leaf.leaf_index}: record {leaf.exchange_id!r} is missing from the store "
                "and no erasure is recorded",
                leaf_index=leaf.leaf_index,
                exchange_id=leaf.exchange_id,
            )
        )
        return leaf.leaf_hash
    if "content" in scopes:
        meta, _ = split_record(stored.exchange.to_dict())
        try:
            recomputed = leaf_hash(leaf_data(meta_hash(meta, stored.salt), leaf.content_hash))
        except DistillGuardError:
            recomputed = b""
    else:
        try:
            commitment = commit_exchange(stored.exchange, stored.salt)
            recomputed = commitment.leaf_hash
            if commitment.content_hash != leaf.content_hash:
                recomputed = b""
        except DistillGuardError:
            recomputed = b""
    if recomputed != leaf.leaf_hash:
        add(
            AuditFinding(
                "record_changed",
                f"leaf {leaf.leaf_index}: record {leaf.exchange_id!r} no longer matches its leaf",
                leaf_index=leaf.leaf_index,
                exchange_id=leaf.exchange_id,
            )
        )
        # The tree is rebuilt from what the records say now, so checkpoints show the change.
        return recomputed if len(recomputed) == 32 else leaf_hash(b"\xff" + leaf.leaf_hash)
    return recomputed


def _check_stored_nodes(
    ledger: Ledger, size: int, add: Callable[[AuditFinding], None], chunk: int = 65_536
) -> None:
    """Compare every stored interior node with one recomputed from the stored leaves."""
    from distillguard.ledger.compact_range import node_level

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
