"""The ledger: a tamper-evident RFC 9162 Merkle log of every stored exchange.

* :class:`Ledger` keeps the tree in the store and appends to it in the same transaction as the
  exchange rows (:meth:`Ledger.attach`); it publishes signed checkpoints, makes inclusion and
  consistency proofs and records erasures.
* :mod:`~distillguard.ledger._leaf`: what a leaf commits to (salted metadata and content hashes).
* :class:`Checkpoint`, :func:`sign_checkpoint`, :func:`verify_checkpoint`: C2SP signed-note
  checkpoints.
* :mod:`~distillguard.ledger._tombstone`: erasures as leaves of the log.
* :mod:`~distillguard.ledger._verify` and :func:`verify_bundle`: verification that needs nothing
  but the proof, the checkpoint and the public key.
* :func:`audit_ledger`: recompute everything from the stored records and report what differs.

See ``docs/ledger.md``.
"""

from __future__ import annotations

from distillguard.ledger._audit import AuditFinding, AuditReport, audit_ledger
from distillguard.ledger._bundle import (
    BundleVerification,
    ErasureBundle,
    InclusionBundle,
    TombstoneProof,
    verify_bundle,
)
from distillguard.ledger._checkpoint import (
    Checkpoint,
    LedgerKey,
    key_id,
    load_public_keys,
    parse_checkpoint,
    public_key_of,
    sign_checkpoint,
    verify_checkpoint,
)
from distillguard.ledger._leaf import (
    LeafCommitment,
    commit_exchange,
    commit_parts,
    commit_record,
    split_record,
)
from distillguard.ledger._log import (
    DEFAULT_ORIGIN,
    Erasure,
    LeafRecord,
    Ledger,
    StoredCheckpoint,
    TreeHead,
)
from distillguard.ledger._tombstone import Tombstone
from distillguard.ledger._verify import verify_consistency, verify_inclusion

__all__ = [
    "DEFAULT_ORIGIN",
    "AuditFinding",
    "AuditReport",
    "BundleVerification",
    "Checkpoint",
    "Erasure",
    "ErasureBundle",
    "InclusionBundle",
    "LeafCommitment",
    "LeafRecord",
    "Ledger",
    "LedgerKey",
    "StoredCheckpoint",
    "Tombstone",
    "TombstoneProof",
    "TreeHead",
    "audit_ledger",
    "commit_exchange",
    "commit_parts",
    "commit_record",
    "key_id",
    "load_public_keys",
    "parse_checkpoint",
    "public_key_of",
    "sign_checkpoint",
    "split_record",
    "verify_bundle",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
