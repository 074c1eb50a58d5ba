"""Signed checkpoints in the C2SP signed-note checkpoint format.

A checkpoint is the text (C2SP ``tlog-checkpoint``)::

    distillguard.example/ledger          <- origin: names the log
    1000000                              <- tree size, decimal
    6vBNbv2NNEDnXcPTEvhKSFrlbVgNjWgy2OFc0lBDBr0=   <- root hash, standard base64
    time 2026-02-23T14:05:09.123000Z     <- extension line: when it was signed

followed by a blank line and one signature line per signer (C2SP ``signed-note``)::

    — distillguard.example/ledger AbCdEf...base64(key hash || Ed25519 signature)

The key hash is the first four bytes of ``SHA-256(key name || "\\n" || 0x01 || public key)``;
the signature covers the text above the blank line, final newline included. Existing
transparency-log tooling (witnesses, ``note`` verifiers) reads this format; the C2SP verifier key
of a ledger key is given by :func:`verifier_key`.

Verification (:func:`verify_checkpoint`) needs nothing but the note and the public key(s). A key
given as a :class:`~distillguard.keyring.VerifyKey` (the keyring's, or :func:`load_public_keys`
of a ``keys export-public`` file) is time-bound: a retired key verifies only checkpoints whose
``time`` is at or before its ``retired_at``, and a compromised key verifies nothing. A bare
Ed25519 public key (a C2SP verifier key line) has no time bound.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from distillguard._internal.timeutil import format_ts, parse_rfc3339
from distillguard.errors import InputError, ProofError, SignatureError
from distillguard.keyring import KeyPurpose, SigningKey, VerifyKey, jwk_thumbprint
from distillguard.ledger._hashing import HASH_SIZE

__all__ = [
    "ED25519_ALGORITHM",
    "Checkpoint",
    "LedgerKey",
    "NoteSignature",
    "checkpoint_body",
    "key_id",
    "load_public_keys",
    "note_key_hash",
    "parse_checkpoint",
    "public_key_of",
    "sign_checkpoint",
    "trusted_signer",
    "verifier_key",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

#: The signed-note signature type byte of Ed25519.
ED25519_ALGORITHM: Final = 0x01
_DASH: Final = "\u2014 "
_TIME_PREFIX: Final = "time "
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: A key that ledger signatures may carry: a bare Ed25519 public key (no time bound) or a
#: :class:`~distillguard.keyring.VerifyKey` (retired keys bound by ``retired_at``).
LedgerKey: TypeAlias = Ed25519PublicKey | VerifyKey


def public_key_of(key: LedgerKey) -> Ed25519PublicKey:
    """The Ed25519 public key of a :data:`LedgerKey`."""
    return key.public_key if isinstance(key, VerifyKey) else key


def trusted_signer(
    keys: Sequence[LedgerKey],
    signature: bytes,
    data: bytes,
    *,
    signed_at: datetime | None,
    key_hash: Callable[[Ed25519PublicKey], bytes] | None = None,
    wanted_hash: bytes | None = None,
) -> tuple[str | None, str | None]:
    """Which of ``keys`` made ``signature`` over ``data`` and may be trusted for ``signed_at``.

    Returns ``(kid, None)`` for a trusted signer, or ``(None, why)``: ``why`` says that a key
    verified the signature but was retired before ``signed_at`` (or is compromised), or is None
    when no key verified it. With ``key_hash``/``wanted_hash`` only keys of that hash are tried.
    """
    late: str | None = None
    for key in keys:
        raw = public_key_of(key)
        if key_hash is not None and key_hash(raw) != wanted_hash:
            continue
        try:
            raw.verify(signature, data)
        except InvalidSignature:
            continue
        if isinstance(key, VerifyKey):
            if key.compromised:
                late = f"key {key.kid} is marked compromised: nothing it signed is trusted"
                continue
            if not key.trusts(signed_at):
                when = format_ts(signed_at) if signed_at is not None else "an unknown time"
                retired = format_ts(key.retired_at) if key.retired_at else "?"
                late = (
                    f"key {key.kid} was retired at {retired}, before this signature's time "
                    f"({when}): a retired key verifies only what it signed before its retirement"
                )
                continue
            return key.kid, None
        return key_id(raw), None
    return None, late


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def note_key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte signed-note key hash of an Ed25519 key named ``name``."""
    data = name.encode() + b"\n" + bytes([ED25519_ALGORITHM]) + _raw(public_key)
    return hashlib.sha256(data).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The C2SP verifier key string ``name+hex(key hash)+base64(0x01 || key)``."""
    encoded = base64.b64encode(bytes([ED25519_ALGORITHM]) + _raw(public_key)).decode()
    return f"{name}+{note_key_hash(name, public_key).hex()}+{encoded}"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint (the keyring's key id) of an Ed25519 public key."""
    x = base64.urlsafe_b64encode(_raw(public_key)).rstrip(b"=").decode()
    return jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x})


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline."""
        return _DASH + self.name + " " + base64.b64encode(self.key_hash + self.signature).decode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint of the ledger: origin, tree size, root hash, signing time, signatures.

    ``kid`` is the key id of the key that signed (or verified) it, when known. ``note`` is the
    full signed-note text, the form to publish and to hand to third parties.
    """

    origin: str
    size: int
    root_hash: bytes
    timestamp: datetime | None
    signatures: tuple[NoteSignature, ...] = ()
    kid: str | None = None
    extensions: tuple[str, ...] = field(default=())

    @property
    def body(self) -> str:
        """The signed text (origin, size, root, extension lines), ending in a newline."""
        return checkpoint_body(
            origin=self.origin,
            size=self.size,
            root_hash=self.root_hash,
            timestamp=self.timestamp,
            extensions=self.extensions,
        )

    @property
    def note(self) -> str:
        """The signed note: body, blank line, signature lines."""
        return self.body + "\n" + "".join(s.line() + "\n" for s in self.signatures)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the note included)."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "root_hash_hex": self.root_hash.hex(),
            "timestamp": format_ts(self.timestamp) if self.timestamp else None,
            "kid": self.kid,
            "note": self.note,
        }


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise InputError(f"invalid checkpoint origin / key name {name!r}: no spaces or '+'")


def checkpoint_body(
    *,
    origin: str,
    size: int,
    root_hash: bytes,
    timestamp: datetime | None,
    extensions: Iterable[str] = (),
) -> str:
    """The checkpoint text that is signed."""
    _check_name(origin)
    if size < 0:
        raise InputError("a tree size cannot be negative")
    if len(root_hash) != HASH_SIZE:
        raise InputError("a root hash is 32 bytes")
    lines = [origin, str(size), base64.b64encode(root_hash).decode()]
    if timestamp is not None:
        lines.append(_TIME_PREFIX + format_ts(timestamp))
    lines.extend(extensions)
    return "\n".join(lines) + "\n"


def sign_checkpoint(
    *,
    origin: str,
    size: int,
    root_hash: bytes,
    key: SigningKey,
    timestamp: datetime | None = None,
) -> Checkpoint:
    """Sign a checkpoint with an Ed25519 key; the key name is the origin (C2SP convention)."""
    when = (timestamp or datetime.now(UTC)).astimezone(UTC)
    body = checkpoint_body(origin=origin, size=size, root_hash=root_hash, timestamp=when)
    signature = key.sign(body.encode())
    sig = NoteSignature(
        name=origin, key_hash=note_key_hash(origin, key.public_key()), signature=signature
    )
    return Checkpoint(
        origin=origin,
        size=size,
        root_hash=root_hash,
        timestamp=when,
        signatures=(sig,),
        kid=key.kid,
    )


def _malformed(why: str) -> ProofError:
    return ProofError(f"malformed checkpoint: {why}")


def parse_checkpoint(note: str) -> Checkpoint:
    """Parse a signed checkpoint note without verifying its signatures.

    Raises:
        ProofError: the text is not a signed-note checkpoint; the message says why.
    """
    if not isinstance(note, str) or "\n\n" not in note:
        raise _malformed("no blank line between the text and the signatures")
    body, _, sig_text = note.rpartition("\n\n")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise _malformed("fewer than three lines (origin, size, root hash)")
    origin, size_text, root_text, *extensions = lines
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise _malformed(f"invalid origin {origin!r}")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise _malformed(f"invalid tree size {size_text!r}")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("root hash is not base64") from None
    if len(root_hash) != HASH_SIZE or base64.b64encode(root_hash).decode() != root_text:
        raise _malformed("root hash is not a canonical base64 32-byte hash")
    timestamp = None
    rest: list[str] = []
    for line in extensions:
        if not line:
            raise _malformed("empty extension line")
        if line.startswith(_TIME_PREFIX) and timestamp is None:
            try:
                timestamp = parse_rfc3339(line[len(_TIME_PREFIX) :])
            except ValueError as exc:
                raise _malformed(str(exc)) from None
            if format_ts(timestamp) != line[len(_TIME_PREFIX) :]:
                raise _malformed("time is not in canonical form")
        else:
            rest.append(line)
    if not sig_text.endswith("\n"):
        raise _malformed("signature block does not end with a newline")
    signatures: list[NoteSignature] = []
    for line in sig_text[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise _malformed(f"bad signature line {line[:40]!r}")
        name, _, encoded = line[len(_DASH) :].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("signature is not base64") from None
        if not name or len(blob) < 5:
            raise _malformed("signature line too short")
        signatures.append(NoteSignature(name=name, key_hash=blob[:4], signature=blob[4:]))
    if not signatures:
        raise _malformed("no signature")
    cp = Checkpoint(
        origin=origin,
        size=int(size_text),
        root_hash=root_hash,
        timestamp=timestamp,
        signatures=tuple(signatures),
        extensions=tuple(rest),
    )
    if cp.body != body:  # only canonical encodings are accepted
        raise _malformed("text is not in canonical form")
    return cp


def verify_checkpoint(
    note: str | Checkpoint,
    *,
    public_keys: Sequence[LedgerKey],
    origin: str | None = None,
) -> Checkpoint:
    """Parse a checkpoint and check that one of ``public_keys`` signed it (as its origin).

    A :class:`~distillguard.keyring.VerifyKey` that is retired counts only for a checkpoint
    whose ``time`` is at or before its ``retired_at`` (a checkpoint without a time is not
    trusted to a retired key); a compromised one counts for nothing.

    Returns the checkpoint with ``kid`` set to the id of the key that verified.

    Raises:
        ProofError: the note is malformed or is for another origin.
        SignatureError: no signature by one of the keys verifies, or only one by a key retired
            before the checkpoint's time (or compromised).
    """
    cp = parse_checkpoint(note) if isinstance(note, str) else note
    if origin is not None and cp.origin != origin:
        raise ProofError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    body = cp.body.encode()
    why: str | None = None
    for sig in cp.signatures:
        if sig.name != cp.origin:
            continue
        kid, late = trusted_signer(
            public_keys,
            sig.signature,
            body,
            signed_at=cp.timestamp,
            key_hash=lambda k: note_key_hash(cp.origin, k),
            wanted_hash=sig.key_hash,
        )
        if kid is not None:
            return Checkpoint(
                origin=cp.origin,
                size=cp.size,
                root_hash=cp.root_hash,
                timestamp=cp.timestamp,
                signatures=cp.signatures,
                kid=kid,
                extensions=cp.extensions,
            )
        why = why or late
    if why is not None:
        raise SignatureError(
            f"checkpoint of {cp.origin!r} at size {cp.size} is not trusted: {why}",
            hint="a retired or compromised key's later signatures are refused (docs/keys.md)",
            details={"origin": cp.origin, "size": cp.size, "reason": "untrusted_key"},
        )
    raise SignatureError(
        f"checkpoint of {cp.origin!r} at size {cp.size} has no valid signature by a known key",
        hint="it was altered, or signed by a key that is not in the public key file",
        details={"origin": cp.origin, "size": cp.size},
    )


def _key_from_raw(raw: bytes, where: str) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise InputError(f"{where}: an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _jwk_time(jwk: dict[str, Any], name: str, path: Path) -> datetime | None:
    value = jwk.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{path}: JWK {jwk.get('kid')!r} member {name!r} is not a timestamp")
    try:
        return parse_rfc3339(value)
    except (ValueError, OverflowError):
        raise InputError(
            f"{path}: JWK {jwk.get('kid')!r} member {name!r} is not an RFC 3339 time"
        ) from None


def load_public_keys(path: Path, *, include_compromised: bool = False) -> list[VerifyKey]:
    """Ed25519 ledger public keys from a file: a JWK Set (``keys export-public``), one JWK, or
    C2SP verifier key lines.

    Only keys whose ``purpose`` is ``ledger`` (or that carry no purpose) are taken from a JWKS,
    and none marked compromised (``status: compromised``, ``distillguard keys compromised``).
    A JWK's ``retired_at`` is kept: such a key verifies only checkpoints and tombstones signed
    at or before it. A JWK whose ``status`` is ``retired`` without a ``retired_at`` is skipped
    (its time bound is unknown). Verifier key lines carry no time: they are taken as active.
    With ``include_compromised`` compromised keys are kept, marked so (they verify nothing;
    the audit uses them to tell a checkpoint of the leaked key from a forgery by another).

    Raises:
        InputError: the file is missing, unreadable or holds no usable key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read public key file {path}: {exc.strerror}") from None
    keys: list[VerifyKey] = []
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg})") from None
        entries = data.get("keys", [data]) if isinstance(data, dict) else []
        for jwk in entries:
            if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue
            if jwk.get("purpose") not in (None, "ledger"):
                continue
            compromised = jwk.get("status") == "compromised" or bool(jwk.get("compromised_at"))
            if compromised and not include_compromised:
                continue  # `keys compromised`: nothing this key signed is trusted
            x = jwk.get("x")
            if not isinstance(x, str):
                continue
            try:
                raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            except (binascii.Error, ValueError):
                raise InputError(f"{path}: JWK member 'x' is not base64url") from None
            key = _key_from_raw(raw, str(path))
            retired_at = _jwk_time(jwk, "retired_at", path)
            compromised_at = None
            if compromised:
                compromised_at = _jwk_time(jwk, "compromised_at", path) or _EPOCH
            if retired_at is None and jwk.get("status") == "retired" and not compromised:
                logger.warning(
                    "%s: key %s is retired but has no retired_at: skipped", path, key_id(key)
                )
                continue
            keys.append(
                VerifyKey(
                    kid=key_id(key),
                    purpose=KeyPurpose.LEDGER,
                    created_at=_jwk_time(jwk, "created_at", path) or _EPOCH,
                    retired_at=retired_at,
                    public_key=key,
                    compromised_at=compromised_at,
                )
            )
    else:
        for number, line in enumerate(stripped.splitlines(), start=1):
            parts = line.strip().split("+")
            if len(parts) != 3:
                raise InputError(f"{path}:{number}: not a verifier key 'name+hash+key'")
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"{path}:{number}: key is not base64") from None
            if not blob or blob[0] != ED25519_ALGORITHM:
                raise InputError(f"{path}:{number}: not an Ed25519 verifier key")
            key = _key_from_raw(blob[1:], f"{path}:{number}")
            if note_key_hash(parts[0], key).hex() != parts[1]:
                raise InputError(f"{path}:{number}: key hash does not match the key")
            keys.append(
                VerifyKey(
                    kid=key_id(key),
                    purpose=KeyPurpose.LEDGER,
                    created_at=_EPOCH,
                    retired_at=None,
                    public_key=key,
                )
            )
    if not keys:
        raise InputError(
            f"{path} holds no Ed25519 ledger public key",
            hint="export one with `distillguard keys export-public --out FILE`",
        )
    return keys
