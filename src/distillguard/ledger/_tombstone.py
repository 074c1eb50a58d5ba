"""Tombstones: erasures written into the Merkle log as leaves of their own.

An erasure (a record's content, or the whole record) appends a *tombstone leaf* that commits to
the erased leaf (its index and hash), the exchange id, the scope, when, why and by whom::

    tombstone data = JCS({"type": "tombstone", "v": 1, "leaf_index": 17,
                          "leaf_hash": hex(hash of leaf 17), "exchange_id": "ex-17",
                          "scope": "record" | "content", "erased_at": "2026-...Z",
                          "reason": "...", "actor": "..."})
    tombstone leaf hash = SHA-256(0x00 || tombstone data)          (RFC 9162)

A record leaf's data is always the three-member object ``{"content", "meta", "v"}``; a tombstone's
has a ``type`` member, so neither can be taken for the other, and a verifier that only knows
record leaves cannot be shown a tombstone as a record (it would have to find a record and salt
whose commitment hashes to the tombstone's leaf hash). Because the tombstone is a leaf, a signed
checkpoint that covers it signs the erasure itself: ``ledger audit`` accepts a missing or
changed record only where such a tombstone says so (see :mod:`distillguard.ledger._audit`).

**Signed at erasure time.** The checkpoint signer signs whatever tree it finds, so a tombstone
leaf alone proves only that *someone* who could write the database appended it. Each tombstone
therefore also carries an Ed25519 signature by the ledger key (the keyring's) over::

    "distillguard/tombstone-signature/v1\n" || origin || "\n" || tombstone data

made by the process that erases (:func:`sign_tombstone`). The audit and the bundle verifier
accept an erasure only with a signature by a trusted ledger key (a retired key only for a
tombstone whose ``erased_at`` is at or before its retirement; a compromised one never). The
signature is kept beside the leaf (``ledger_erasures.signature``/``signed_by``), not in the leaf
data, so that a tombstone made without a keyring can be signed later, after review
(``ledger seal-erasures``), without a second leaf.

In ``ledger_leaves`` a tombstone is the row of the tombstone's index with the erased exchange's
id and an empty ``content_hash`` (a record leaf's is 32 bytes); its fields are the
``ledger_erasures`` row that names it (column ``tombstone_leaf``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from distillguard._internal.timeutil import format_ts, from_micros, parse_rfc3339, to_micros
from distillguard.errors import InputError, RecordError, SignatureError
from distillguard.keyring import SigningKey
from distillguard.ledger._canonical import canonical_json
from distillguard.ledger._checkpoint import LedgerKey, trusted_signer
from distillguard.ledger._hashing import HASH_SIZE, leaf_hash

__all__ = [
    "ERASED_CONTENT",
    "TOMBSTONE_CONTENT_HASH",
    "TOMBSTONE_SIGNATURE_CONTEXT",
    "TOMBSTONE_TYPE",
    "ErasureScope",
    "Tombstone",
    "TombstoneSignature",
    "check_text",
    "normalise_time",
    "sign_tombstone",
    "tombstone_message",
    "verify_tombstone_signature",
]

ErasureScope = Literal["content", "record"]
#: The ``type`` member of a tombstone's leaf data.
TOMBSTONE_TYPE: Final = "tombstone"
#: What ``ledger_leaves.content_hash`` holds for a tombstone leaf (a record leaf's is 32 bytes).
TOMBSTONE_CONTENT_HASH: Final = b""
#: What a tombstone signature's message starts with (domain separation from checkpoints).
TOMBSTONE_SIGNATURE_CONTEXT: Final = b"distillguard/tombstone-signature/v1\n"
_SIGNATURE_SIZE: Final = 64
_MEMBERS: Final = frozenset(
    {"type", "v", "leaf_index", "leaf_hash", "exchange_id", "scope", "erased_at", "reason", "actor"}
)
#: Version 2 content tombstones also commit to the content the row holds after the erasure.
_MEMBERS_V2: Final = _MEMBERS | {"content_after"}
#: The record's ``content`` part after its content columns are set to NULL (as the store reads
#: such a row back: an empty message list, no response, no reasoning).
ERASED_CONTENT: Final[Mapping[str, Any]] = {"messages": []}


def normalise_time(when: datetime) -> datetime:
    """``when`` in UTC at microsecond precision (what the store keeps)."""
    return from_micros(to_micros(when.astimezone(UTC)))


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What an erasure commits to: the erased leaf, the scope, when, why and by whom."""

    leaf_index: int
    leaf_hash: bytes
    exchange_id: str
    scope: ErasureScope
    erased_at: datetime
    reason: str
    actor: str
    #: Version 2 content tombstones: the salted commitment to the record's content after the
    #: erasure (:func:`~distillguard.ledger._leaf.content_hash` of the content fields the row
    #: holds then: NULL, or the minimised text). None: a version 1 tombstone (record scope, or
    #: a content erasure made before version 2), which does not say what the row holds.
    content_after: bytes | None = None

    @property
    def version(self) -> int:
        """2 for a tombstone that commits to the content after the erasure, else 1."""
        return 1 if self.content_after is None else 2

    def to_dict(self) -> dict[str, Any]:
        """The tombstone's JSON form (its leaf data is the RFC 8785 form of this)."""
        out = self._fields()
        if self.content_after is not None:
            out["content_after"] = self.content_after.hex()
        return out

    def _fields(self) -> dict[str, Any]:
        return {
            "type": TOMBSTONE_TYPE,
            "v": self.version,
            "leaf_index": self.leaf_index,
            "leaf_hash": self.leaf_hash.hex(),
            "exchange_id": self.exchange_id,
            "scope": self.scope,
            "erased_at": format_ts(self.erased_at),
            "reason": self.reason,
            "actor": self.actor,
        }

    @property
    def leaf_data(self) -> bytes:
        """The tombstone leaf's data: ``JCS(to_dict())``.

        Raises:
            RecordError: a text field has no canonical JSON form (a lone surrogate).
        """
        return canonical_json(self.to_dict())

    @property
    def tombstone_hash(self) -> bytes:
        """The RFC 9162 leaf hash of the tombstone leaf."""
        return leaf_hash(self.leaf_data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tombstone:
        """Read the JSON form (as carried in proof bundles), strictly.

        Raises:
            InputError: not a tombstone, or a member is missing or of the wrong type.
        """
        if not isinstance(data, Mapping) or data.get("type") != TOMBSTONE_TYPE:
            raise InputError("not a tombstone (member 'type' must be 'tombstone')")
        version = data.get("v")
        if version not in (1, 2) or type(version) is not int:
            raise InputError("unsupported tombstone version (member 'v' must be 1 or 2)")
        extra = set(data) - (_MEMBERS if version == 1 else _MEMBERS_V2)
        if extra:
            raise InputError(f"tombstone has unknown member(s) {sorted(extra)}")
        after: bytes | None = None
        if version == 2:
            after = _hex_hash(data.get("content_after"), "content_after")
            if data.get("scope") != "content":
                raise InputError("a version 2 tombstone must have scope 'content'")
        index = data.get("leaf_index")
        if type(index) is not int or index < 0:
            raise InputError("tombstone member 'leaf_index' must be a non-negative integer")
        hashed = _hex_hash(data.get("leaf_hash"), "leaf_hash")
        scope = data.get("scope")
        if scope not in ("content", "record"):
            raise InputError("tombstone member 'scope' must be 'content' or 'record'")
        texts = {}
        for name in ("exchange_id", "reason", "actor", "erased_at"):
            value = data.get(name)
            if not isinstance(value, str):
                raise InputError(f"tombstone member {name!r} must be a string")
            texts[name] = value
        try:
            when = parse_rfc3339(texts["erased_at"])
        except (ValueError, OverflowError):
            raise InputError("tombstone member 'erased_at' is not an RFC 3339 time") from None
        if format_ts(when) != texts["erased_at"]:
            raise InputError("tombstone member 'erased_at' is not in canonical form")
        return cls(
            leaf_index=index,
            leaf_hash=hashed,
            exchange_id=texts["exchange_id"],
            scope="record" if scope == "record" else "content",
            erased_at=when,
            reason=texts["reason"],
            actor=texts["actor"],
            content_after=after,
        )


def _hex_hash(value: Any, name: str) -> bytes:
    try:
        hashed = bytes.fromhex(str(value))
    except ValueError:
        hashed = b""
    if len(hashed) != HASH_SIZE or hashed.hex() != value:
        raise InputError(f"tombstone member {name!r} must be 64 lower-case hex digits")
    return hashed


def check_text(value: str, what: str) -> None:
    """Refuse an erasure field that a tombstone could not commit to.

    Raises:
        InputError: ``value`` has no canonical JSON form (a lone surrogate).
    """
    try:
        canonical_json(value)
    except RecordError:
        raise InputError(f"the erasure's {what} is not valid Unicode text") from None


@dataclass(frozen=True, slots=True)
class TombstoneSignature:
    """An Ed25519 signature of a tombstone by a ledger key (``kid``: the key's id)."""

    kid: str
    signature: bytes

    def to_dict(self) -> dict[str, str]:
        """The JSON form: ``{"kid": ..., "sig": base64}``."""
        return {"kid": self.kid, "sig": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "signature") -> TombstoneSignature:
        """Read the JSON form strictly.

        Raises:
            InputError: not an object with a string ``kid`` and a base64 64-byte ``sig``.
        """
        if not isinstance(data, Mapping) or set(data) != {"kid", "sig"}:
            raise InputError(f"{where} must be an object with members 'kid' and 'sig'")
        kid, sig = data.get("kid"), data.get("sig")
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise InputError(f"{where}: 'kid' and 'sig' must be strings")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}.sig is not base64") from None
        if len(raw) != _SIGNATURE_SIZE:
            raise InputError(f"{where}.sig is not a 64-byte Ed25519 signature")
        return cls(kid=kid, signature=raw)


def tombstone_message(origin: str, tombstone: Tombstone) -> bytes:
    """The bytes a tombstone signature covers: context, the log's origin, the tombstone data."""
    return TOMBSTONE_SIGNATURE_CONTEXT + origin.encode() + b"\n" + tombstone.leaf_data


def sign_tombstone(origin: str, tombstone: Tombstone, key: SigningKey) -> TombstoneSignature:
    """Sign a tombstone of the log ``origin`` with the ledger key."""
    return TombstoneSignature(kid=key.kid, signature=key.sign(tombstone_message(origin, tombstone)))


def verify_tombstone_signature(
    origin: str,
    tombstone: Tombstone,
    signature: TombstoneSignature | None,
    public_keys: Sequence[LedgerKey],
    *,
    not_before: datetime | None = None,
) -> str:
    """Check a tombstone's signature; returns the id of the key that verified it.

    The signing time taken for a retired key's bound is the tombstone's ``erased_at``, or
    ``not_before`` when later (the time of a signed checkpoint that did not hold the tombstone
    yet: the signature cannot be older than the leaf).

    Raises:
        SignatureError: no signature, or none by a trusted key (unknown, compromised, or
            retired before the signing time); the message says which.
    """
    where = f"the {tombstone.scope} tombstone of leaf {tombstone.leaf_index}"
    if signature is None:
        raise SignatureError(
            f"{where} is not signed by a ledger key",
            hint="made without a keyring or by hand: review it, then `distillguard ledger "
            "seal-erasures --yes` signs it",
            details={"leaf_index": tombstone.leaf_index, "reason": "unsigned"},
        )
    signed_at = tombstone.erased_at
    if not_before is not None and not_before > signed_at:
        signed_at = not_before
    try:
        message = tombstone_message(origin, tombstone)
    except RecordError:
        message = b""
    kid, why = trusted_signer(public_keys, signature.signature, message, signed_at=signed_at)
    if kid is None:
        raise SignatureError(
            f"{where} has no valid signature by a trusted ledger key" + (f": {why}" if why else ""),
            hint="the tombstone was forged or altered, or signed by a key not in the key file",
            details={"leaf_index": tombstone.leaf_index, "reason": "bad_signature"},
        )
    return kid
