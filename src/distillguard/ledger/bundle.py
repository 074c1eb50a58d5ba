"""Inclusion bundles: a record with everything a third party needs to check it is in the ledger.

A bundle (JSON, ``format: distillguard/inclusion-bundle/v1``) holds the record (its format v1
JSON form), its salt, its leaf index and hash, its content hash, the RFC 9162 inclusion proof
and the signed checkpoint the proof leads to. :func:`verify_bundle` checks it offline with
nothing but the ledger's public key:

1. recompute the metadata and content commitments from the record and the salt, and the leaf;
2. check the checkpoint's signature with the public key;
3. check the inclusion proof from the leaf to the checkpoint's root at its tree size.

Where the record's content was erased before the bundle was made, the bundle carries the
metadata only (``content_included`` false) and the stored content hash: the metadata is still
verified, the content is not.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from distillguard.errors import InputError, ProofError
from distillguard.ledger.checkpoint import verify_checkpoint
from distillguard.ledger.hashing import leaf_hash as rfc_leaf_hash
from distillguard.ledger.leaf import (
    CONTENT_FIELDS,
    content_hash,
    leaf_data,
    meta_hash,
    split_record,
)
from distillguard.ledger.verify import verify_inclusion

__all__ = ["BUNDLE_FORMAT", "BundleVerification", "InclusionBundle", "verify_bundle"]

#: The ``format`` member of an inclusion bundle.
BUNDLE_FORMAT: Final = "distillguard/inclusion-bundle/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"bundle member {name!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"bundle member {name!r} is not base64") from None


@dataclass(frozen=True, slots=True)
class InclusionBundle:
    """A record, its salt, its leaf and inclusion proof, and the signed checkpoint."""

    record: Mapping[str, Any]
    salt: bytes
    leaf_index: int
    leaf_hash: bytes
    content_hash: bytes
    content_included: bool
    proof: tuple[bytes, ...]
    checkpoint: str

    def __repr__(self) -> str:
        return f"InclusionBundle(leaf_index={self.leaf_index}, proof={len(self.proof)} hashes)"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": BUNDLE_FORMAT,
            "record": dict(self.record),
            "salt": _b64(self.salt),
            "leaf_index": self.leaf_index,
            "leaf_hash": _b64(self.leaf_hash),
            "content_hash": _b64(self.content_hash),
            "content_included": self.content_included,
            "proof": [_b64(p) for p in self.proof],
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InclusionBundle:
        """Read the JSON form.

        Raises:
            InputError: a member is missing or has the wrong type; the message names it.
        """
        if not isinstance(data, Mapping) or data.get("format") != BUNDLE_FORMAT:
            raise InputError(f"not an inclusion bundle (expected format {BUNDLE_FORMAT!r})")
        record = data.get("record")
        if not isinstance(record, Mapping):
            raise InputError("bundle member 'record' must be an object")
        index = data.get("leaf_index")
        if type(index) is not int or index < 0:
            raise InputError("bundle member 'leaf_index' must be a non-negative integer")
        proof = data.get("proof")
        if not isinstance(proof, list):
            raise InputError("bundle member 'proof' must be a list")
        checkpoint = data.get("checkpoint")
        if not isinstance(checkpoint, str):
            raise InputError("bundle member 'checkpoint' must be the signed checkpoint text")
        included = data.get("content_included")
        if not isinstance(included, bool):
            raise InputError("bundle member 'content_included' must be true or false")
        return cls(
            record=dict(record),
            salt=_unb64(data.get("salt"), "salt"),
            leaf_index=index,
            leaf_hash=_unb64(data.get("leaf_hash"), "leaf_hash"),
            content_hash=_unb64(data.get("content_hash"), "content_hash"),
            content_included=included,
            proof=tuple(_unb64(p, f"proof[{i}]") for i, p in enumerate(proof)),
            checkpoint=checkpoint,
        )


@dataclass(frozen=True, slots=True)
class BundleVerification:
    """What a verified bundle proves."""

    exchange_id: str | None
    leaf_index: int
    tree_size: int
    origin: str
    kid: str | None
    content_verified: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "ok": True,
            "exchange_id": self.exchange_id,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "origin": self.origin,
            "kid": self.kid,
            "content_verified": self.content_verified,
        }


def verify_bundle(
    bundle: InclusionBundle | Mapping[str, Any],
    *,
    public_keys: Sequence[Ed25519PublicKey],
    origin: str | None = None,
) -> BundleVerification:
    """Verify an inclusion bundle offline.

    Raises:
        InputError: the bundle is malformed.
        ProofError: the record does not match its leaf, or the proof does not lead to the
            checkpoint's root.
        SignatureError: the checkpoint is not signed by one of ``public_keys``.
    """
    b = bundle if isinstance(bundle, InclusionBundle) else InclusionBundle.from_dict(bundle)
    meta, content = split_record(b.record)
    mh = meta_hash(meta, b.salt)
    if b.content_included:
        ch = content_hash(content, b.salt)
        if ch != b.content_hash:
            raise ProofError("the record's content does not match its content commitment")
    else:
        if any(name in b.record for name in CONTENT_FIELDS):
            raise InputError("a bundle without content must not carry content fields")
        ch = b.content_hash
    if rfc_leaf_hash(leaf_data(mh, ch)) != b.leaf_hash:
        raise ProofError(f"the record does not match leaf {b.leaf_index}")
    cp = verify_checkpoint(b.checkpoint, public_keys=public_keys, origin=origin)
    verify_inclusion(
        leaf_hash=b.leaf_hash, index=b.leaf_index, size=cp.size, proof=b.proof, root=cp.root_hash
    )
    exchange_id = b.record.get("exchange_id")
    return BundleVerification(
        exchange_id=exchange_id if isinstance(exchange_id, str) else None,
        leaf_index=b.leaf_index,
        tree_size=cp.size,
        origin=cp.origin,
        kid=cp.kid,
        content_verified=b.content_included,
    )
