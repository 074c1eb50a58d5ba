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
verified, the content is not. It then also carries the erasure's tombstone (member
``tombstones``: the tombstone's fields, its leaf index and its own inclusion proof to the same
checkpoint, and its ``signature`` by the ledger key), which the verifier checks and reports:
erased, when, why, by whom. A tombstone without a valid signature by one of the given ledger
keys (a retired key only for a tombstone erased before its retirement) fails verification: the
checkpoint signer signs whatever tree it finds, the tombstone signature says the key holder
erased it.

An exchange erased as a whole has no record to show; ``Ledger.prove_erasure`` gives an *erasure
bundle* (``format: distillguard/erasure-bundle/v1``): the exchange id, the erased leaf's index,
hash and inclusion proof, and its tombstones with their inclusion proofs. A verifier that does
not know this format rejects it (its ``format`` is not the inclusion bundle's), so an erased
exchange is never taken for a proven record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from distillguard.errors import InputError, ProofError
from distillguard.ledger._checkpoint import LedgerKey, verify_checkpoint
from distillguard.ledger._hashing import leaf_hash as rfc_leaf_hash
from distillguard.ledger._leaf import (
    CONTENT_FIELDS,
    content_hash,
    leaf_data,
    meta_hash,
    split_record,
)
from distillguard.ledger._tombstone import (
    Tombstone,
    TombstoneSignature,
    verify_tombstone_signature,
)
from distillguard.ledger._verify import verify_inclusion

__all__ = [
    "BUNDLE_FORMAT",
    "ERASURE_BUNDLE_FORMAT",
    "BundleVerification",
    "ErasureBundle",
    "InclusionBundle",
    "TombstoneProof",
    "verify_bundle",
]

#: The ``format`` member of an inclusion bundle.
BUNDLE_FORMAT: Final = "distillguard/inclusion-bundle/v1"
#: The ``format`` member of an erasure bundle (an exchange erased as a whole).
ERASURE_BUNDLE_FORMAT: Final = "distillguard/erasure-bundle/v1"


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
class TombstoneProof:
    """A tombstone, the index of its leaf, its inclusion proof and its signature."""

    tombstone: Tombstone
    index: int
    proof: tuple[bytes, ...]
    signature: TombstoneSignature | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``signature`` only when signed)."""
        out: dict[str, Any] = {
            "tombstone": self.tombstone.to_dict(),
            "tombstone_index": self.index,
            "proof": [_b64(p) for p in self.proof],
        }
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TombstoneProof:
        """Read the JSON form.

        Raises:
            InputError: a member is missing or has the wrong type; the message names it.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"bundle member {where!r} must be an object")
        index = data.get("tombstone_index")
        if type(index) is not int or index < 0:
            raise InputError(f"{where}.tombstone_index must be a non-negative integer")
        proof = data.get("proof")
        if not isinstance(proof, list):
            raise InputError(f"{where}.proof must be a list")
        try:
            tombstone = Tombstone.from_dict(data.get("tombstone"))  # type: ignore[arg-type]
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}") from None
        signed = data.get("signature")
        return cls(
            tombstone=tombstone,
            index=index,
            proof=tuple(_unb64(p, f"{where}.proof[{i}]") for i, p in enumerate(proof)),
            signature=None
            if signed is None
            else TombstoneSignature.from_dict(signed, f"{where}.signature"),
        )

    def verify(
        self,
        *,
        leaf_index: int,
        leaf_hash: bytes,
        exchange_id: str | None,
        size: int,
        root: bytes,
        origin: str,
        public_keys: Sequence[LedgerKey],
    ) -> str:
        """Check that the tombstone names this leaf, is in the tree of ``size`` / ``root`` and
        is signed by one of ``public_keys`` for the log ``origin``; returns the signer's key id.

        Raises:
            ProofError: it names another leaf, or its proof does not lead to the root.
            SignatureError: it has no valid signature by a trusted key.
        """
        t = self.tombstone
        if t.leaf_index != leaf_index or t.leaf_hash != leaf_hash:
            raise ProofError(f"the tombstone at leaf {self.index} is for another leaf")
        if exchange_id is not None and t.exchange_id != exchange_id:
            raise ProofError(f"the tombstone at leaf {self.index} is for another exchange")
        if self.index <= leaf_index:
            raise ProofError(f"the tombstone at leaf {self.index} precedes the leaf it erases")
        verify_inclusion(
            leaf_hash=t.tombstone_hash, index=self.index, size=size, proof=self.proof, root=root
        )
        return verify_tombstone_signature(origin, t, self.signature, public_keys)


def _tombstones_from(data: Mapping[str, Any]) -> tuple[TombstoneProof, ...]:
    items = data.get("tombstones", [])
    if not isinstance(items, list):
        raise InputError("bundle member 'tombstones' must be a list")
    return tuple(TombstoneProof.from_dict(t, f"tombstones[{i}]") for i, t in enumerate(items))


def _leaf_proof_checkpoint(data: Mapping[str, Any]) -> tuple[int, list[Any], str]:
    """A bundle's ``leaf_index``, ``proof`` (not yet decoded) and ``checkpoint`` members.

    Raises:
        InputError: one of them is missing or has the wrong type; the message names it.
    """
    index = data.get("leaf_index")
    if type(index) is not int or index < 0:
        raise InputError("bundle member 'leaf_index' must be a non-negative integer")
    proof = data.get("proof")
    if not isinstance(proof, list):
        raise InputError("bundle member 'proof' must be a list")
    checkpoint = data.get("checkpoint")
    if not isinstance(checkpoint, str):
        raise InputError("bundle member 'checkpoint' must be the signed checkpoint text")
    return index, proof, checkpoint


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
    tombstones: tuple[TombstoneProof, ...] = ()

    def __repr__(self) -> str:
        return f"InclusionBundle(leaf_index={self.leaf_index}, proof={len(self.proof)} hashes)"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``tombstones`` only where the content was erased through the log)."""
        out: dict[str, Any] = {
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
        if self.tombstones:
            out["tombstones"] = [t.to_dict() for t in self.tombstones]
        return out

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
        index, proof, checkpoint = _leaf_proof_checkpoint(data)
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
            tombstones=_tombstones_from(data),
        )


@dataclass(frozen=True, slots=True)
class ErasureBundle:
    """An exchange erased as a whole: its leaf, the leaf's inclusion proof, its tombstones."""

    exchange_id: str
    leaf_index: int
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    tombstones: tuple[TombstoneProof, ...]
    checkpoint: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": ERASURE_BUNDLE_FORMAT,
            "exchange_id": self.exchange_id,
            "leaf_index": self.leaf_index,
            "leaf_hash": _b64(self.leaf_hash),
            "proof": [_b64(p) for p in self.proof],
            "tombstones": [t.to_dict() for t in self.tombstones],
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErasureBundle:
        """Read the JSON form.

        Raises:
            InputError: a member is missing or has the wrong type; the message names it.
        """
        if not isinstance(data, Mapping) or data.get("format") != ERASURE_BUNDLE_FORMAT:
            raise InputError(f"not an erasure bundle (expected format {ERASURE_BUNDLE_FORMAT!r})")
        exchange_id = data.get("exchange_id")
        if not isinstance(exchange_id, str):
            raise InputError("bundle member 'exchange_id' must be a string")
        index, proof, checkpoint = _leaf_proof_checkpoint(data)
        return cls(
            exchange_id=exchange_id,
            leaf_index=index,
            leaf_hash=_unb64(data.get("leaf_hash"), "leaf_hash"),
            proof=tuple(_unb64(p, f"proof[{i}]") for i, p in enumerate(proof)),
            tombstones=_tombstones_from(data),
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
    erasures: tuple[Tombstone, ...] = ()
    record_erased: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``erasures``: the verified tombstones of the leaf)."""
        return {
            "ok": True,
            "exchange_id": self.exchange_id,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "origin": self.origin,
            "kid": self.kid,
            "content_verified": self.content_verified,
            "record_erased": self.record_erased,
            "erasures": [t.to_dict() for t in self.erasures],
        }


def _verify_erasure(
    b: ErasureBundle, public_keys: Sequence[LedgerKey], origin: str | None
) -> BundleVerification:
    if not any(t.tombstone.scope == "record" for t in b.tombstones):
        raise ProofError("an erasure bundle must carry the tombstone of a record erasure")
    cp = verify_checkpoint(b.checkpoint, public_keys=public_keys, origin=origin)
    verify_inclusion(
        leaf_hash=b.leaf_hash, index=b.leaf_index, size=cp.size, proof=b.proof, root=cp.root_hash
    )
    for t in b.tombstones:
        t.verify(
            leaf_index=b.leaf_index,
            leaf_hash=b.leaf_hash,
            exchange_id=b.exchange_id,
            size=cp.size,
            root=cp.root_hash,
            origin=cp.origin,
            public_keys=public_keys,
        )
    return BundleVerification(
        exchange_id=b.exchange_id,
        leaf_index=b.leaf_index,
        tree_size=cp.size,
        origin=cp.origin,
        kid=cp.kid,
        content_verified=False,
        erasures=tuple(t.tombstone for t in b.tombstones),
        record_erased=True,
    )


def verify_bundle(
    bundle: InclusionBundle | ErasureBundle | Mapping[str, Any],
    *,
    public_keys: Sequence[LedgerKey],
    origin: str | None = None,
) -> BundleVerification:
    """Verify an inclusion bundle (or an erasure bundle) offline.

    For an inclusion bundle: the record against its leaf, the checkpoint's signature, the
    inclusion proof, and each tombstone it carries (it must name this leaf and be in the same
    tree, and be signed by a trusted ledger key). For an erasure bundle: the checkpoint, the erased
    leaf's inclusion and each tombstone's inclusion and signature; the result then says
    ``record_erased`` and lists the verified tombstones. Keys given as
    :class:`~distillguard.keyring.VerifyKey` are time-bound (see :func:`verify_checkpoint`).

    Raises:
        InputError: the bundle is malformed.
        ProofError: the record does not match its leaf, a proof does not lead to the
            checkpoint's root, or a tombstone names another leaf.
        SignatureError: the checkpoint or a tombstone is not signed by a trusted key.
    """
    if isinstance(bundle, ErasureBundle):
        return _verify_erasure(bundle, public_keys, origin)
    if isinstance(bundle, Mapping) and bundle.get("format") == ERASURE_BUNDLE_FORMAT:
        return _verify_erasure(ErasureBundle.from_dict(bundle), public_keys, origin)
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
    eid = exchange_id if isinstance(exchange_id, str) else None
    for t in b.tombstones:
        if t.tombstone.scope != "content" or b.content_included:
            raise ProofError(
                f"the tombstone at leaf {t.index} erases this record's "
                f"{t.tombstone.scope}, but the bundle shows it"
            )
        t.verify(
            leaf_index=b.leaf_index,
            leaf_hash=b.leaf_hash,
            exchange_id=eid,
            size=cp.size,
            root=cp.root_hash,
            origin=cp.origin,
            public_keys=public_keys,
        )
    return BundleVerification(
        exchange_id=eid,
        leaf_index=b.leaf_index,
        tree_size=cp.size,
        origin=cp.origin,
        kid=cp.kid,
        content_verified=b.content_included,
        erasures=tuple(t.tombstone for t in b.tombstones),
    )
