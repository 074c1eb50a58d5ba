"""The keyring: every secret DistillGuard uses, in one owner-only file.

The keyring holds three kinds of key, each with a key id (``kid``), a creation time and, once
rotated out, a retirement time:

* ``ledger``: an Ed25519 key that signs the checkpoints of the Merkle ledger;
* ``passport``: an Ed25519 key that signs the agent passports the provider issues;
* ``watermark``: a 256-bit secret that keys the watermark schemes.

Ed25519 key ids are RFC 7638 thumbprints of the public JWK, so anyone holding the exported public
key can recompute them. A watermark key id is ``wm-`` followed by 128 bits of an HMAC of a fixed
label under the secret: it names the secret without revealing anything about it.

For each purpose exactly one key is *active* (used for new signatures and watermarks); rotation
retires it, keeps it for verification and detection, and makes a new active key. A retired key
verifies only what it signed before its retirement (:meth:`VerifyKey.trusts` compares the signing
time with ``retired_at``). A key believed leaked is marked *compromised*
(:meth:`Keyring.mark_compromised`): nothing it signed verifies any more, at any time, and the
public-key export says so, so that offline verifiers distrust it too. The file is
written atomically (a temporary file with mode 0600 in the same folder, fsync, rename) and
:meth:`Keyring.load` refuses a file that users other than its owner can read or write.

Secrets never appear in ``repr``, ``str`` or logs. Example::

    from distillguard.keyring import Keyring, KeyPurpose

    ring = Keyring.create(Path("keyring.json"))
    key = ring.signing_key(KeyPurpose.LEDGER)
    sig = key.sign(b"checkpoint")
    ring.verify_key(key.kid).verify(sig, b"checkpoint")   # raises SignatureError if bad

The file format is described in ``docs/keys.md``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import stat
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from distillguard._internal.files import atomic_write_private
from distillguard._internal.timeutil import format_ts, parse_rfc3339
from distillguard.errors import (
    KeyNotFoundError,
    KeyringError,
    KeyringPermissionError,
    SignatureError,
)

if TYPE_CHECKING:
    from distillguard.config import Settings

__all__ = [
    "KEYRING_FORMAT",
    "KeyInfo",
    "KeyPurpose",
    "Keyring",
    "SigningKey",
    "VerifyKey",
    "WatermarkKey",
    "git_ignores",
    "git_work_tree",
    "jwk_thumbprint",
    "open_keyring",
]

logger = logging.getLogger(__name__)

#: The ``format`` member of a keyring file this version reads and writes.
KEYRING_FORMAT = "distillguard-keyring/v1"

_WATERMARK_SECRET_BYTES = 32
_WATERMARK_KID_LABEL = b"distillguard watermark key id v1"
_INIT_HINT = "create one with `distillguard keys init`"

#: Required members of a JWK per key type, RFC 7638 section 3.2 (and RFC 8037 for OKP).
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "oct": ("k", "kty"),
}


class KeyPurpose(StrEnum):
    """What a key is for; each purpose has one active key at a time."""

    LEDGER = "ledger"
    PASSPORT = "passport"
    WATERMARK = "watermark"


_SIGNING_PURPOSES = (KeyPurpose.LEDGER, KeyPurpose.PASSPORT)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or any(c in text for c in "=+/ \n"):
        raise ValueError("not unpadded base64url")
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 thumbprint of a JWK: base64url (unpadded) SHA-256 of its required members.

    Only the members RFC 7638 requires for the key type take part (``crv``, ``kty``, ``x`` for
    an Ed25519 ``OKP`` key), serialised as JSON with sorted keys and no whitespace, so extra
    members such as ``kid`` or ``alg`` do not change the result.

    Raises:
        KeyringError: the JWK has no or an unsupported ``kty``, or lacks a required member.
    """
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise KeyringError(f"cannot compute a JWK thumbprint: unsupported key type {kty!r}")
    missing = [m for m in members if not isinstance(jwk.get(m), str)]
    if missing:
        raise KeyringError(
            f"cannot compute a JWK thumbprint: {kty} key lacks member(s) {', '.join(missing)}"
        )
    canonical = json.dumps(
        {m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _ed25519_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(_public_raw(public_key))}


def _public_jwk_with_kid(public_key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    jwk = _ed25519_jwk(public_key)
    jwk.update({"kid": kid, "alg": "EdDSA", "use": "sig"})
    return jwk


def _watermark_kid(secret: bytes) -> str:
    digest = hmac.new(secret, _WATERMARK_KID_LABEL, hashlib.sha256).digest()
    return "wm-" + _b64url(digest[:16])


@dataclass(frozen=True)
class SigningKey:
    """The active Ed25519 private key of a purpose, with its metadata.

    ``repr`` and ``str`` show the key id and purpose, never the private key.
    """

    kid: str
    purpose: KeyPurpose
    created_at: datetime
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``crv``, ``x``, ``kid``, ``alg``, ``use``)."""
        return _public_jwk_with_kid(self.public_key(), self.kid)

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature (64 bytes) over ``data``."""
        return self.private_key.sign(data)


@dataclass(frozen=True)
class VerifyKey:
    """An Ed25519 public key of a purpose, active (``retired_at`` is None) or retired.

    A compromised key (``compromised_at`` set) verifies nothing; a retired one verifies only
    what was signed at or before ``retired_at`` (see :meth:`trusts`).
    """

    kid: str
    purpose: KeyPurpose
    created_at: datetime
    retired_at: datetime | None
    public_key: Ed25519PublicKey = field(repr=False, compare=False)
    compromised_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True for the key currently used to sign, False for a retired one."""
        return self.retired_at is None

    @property
    def compromised(self) -> bool:
        """True when the key was marked compromised: nothing it signed is trusted."""
        return self.compromised_at is not None

    def trusts(self, signed_at: datetime | float | None) -> bool:
        """Whether a signature made at ``signed_at`` (a datetime or UNIX seconds) is trusted.

        False for a compromised key; for a retired key, False when ``signed_at`` is after
        ``retired_at`` or unknown (None); True otherwise.
        """
        if self.compromised_at is not None:
            return False
        if self.retired_at is None:
            return True
        if signed_at is None:
            return False
        seconds = signed_at if isinstance(signed_at, int | float) else signed_at.timestamp()
        return seconds <= self.retired_at.timestamp()

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``crv``, ``x``, ``kid``, ``alg``, ``use``)."""
        return _public_jwk_with_kid(self.public_key, self.kid)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check an Ed25519 signature over ``data``.

        The signing time is not known here: callers that know it also check :meth:`trusts`.

        Raises:
            SignatureError: the key is compromised, or the signature does not verify under it.
        """
        if self.compromised_at is not None:
            raise SignatureError(
                f"{self.purpose} key {self.kid} is marked compromised: nothing it signed is "
                "trusted",
                hint="re-sign with the active key (see the key-compromise runbook, docs/keys.md)",
                details={"kid": self.kid, "purpose": str(self.purpose), "reason": "compromised"},
            )
        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify under {self.purpose} key {self.kid}",
                hint="the data was changed, or it was signed by another key",
                details={"kid": self.kid, "purpose": str(self.purpose)},
            ) from None


@dataclass(frozen=True)
class WatermarkKey:
    """A 256-bit watermark secret with its key id; ``repr`` and ``str`` hide the secret."""

    kid: str
    created_at: datetime
    secret: bytes = field(repr=False, compare=False)
    retired_at: datetime | None = None
    compromised_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True for the key used for new watermarks, False for a retired one."""
        return self.retired_at is None


@dataclass(frozen=True)
class KeyInfo:
    """Public description of one key of the keyring (what ``distillguard keys list`` shows)."""

    kid: str
    purpose: KeyPurpose
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    compromised_at: datetime | None = None
    compromise_reason: str | None = None

    @property
    def status(self) -> str:
        """``compromised``, ``active`` or ``retired``."""
        if self.compromised_at is not None:
            return "compromised"
        return "active" if self.retired_at is None else "retired"

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready form (no secrets)."""
        return {
            "kid": self.kid,
            "purpose": str(self.purpose),
            "algorithm": self.algorithm,
            "created_at": format_ts(self.created_at),
            "retired_at": format_ts(self.retired_at) if self.retired_at else None,
            "compromised_at": format_ts(self.compromised_at) if self.compromised_at else None,
            "compromise_reason": self.compromise_reason,
            "status": self.status,
        }


@dataclass(frozen=True)
class _Entry:
    """One key as held in memory: either an Ed25519 private key or a watermark secret."""

    kid: str
    purpose: KeyPurpose
    created_at: datetime
    retired_at: datetime | None
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False, compare=False)
    secret: bytes | None = field(default=None, repr=False, compare=False)
    compromised_at: datetime | None = None
    compromise_reason: str | None = None

    @property
    def algorithm(self) -> str:
        return "Ed25519" if self.private_key is not None else "HMAC-SHA256-secret"

    def retire(self, when: datetime) -> _Entry:
        return replace(self, retired_at=when)

    def compromise(self, when: datetime, reason: str) -> _Entry:
        return replace(self, compromised_at=when, compromise_reason=reason)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid,
            "purpose": str(self.purpose),
            "created_at": format_ts(self.created_at),
            "retired_at": format_ts(self.retired_at) if self.retired_at else None,
        }
        if self.compromised_at is not None:
            out["compromised_at"] = format_ts(self.compromised_at)
            out["compromise_reason"] = self.compromise_reason or ""
        if self.private_key is not None:
            jwk: dict[str, str] = _ed25519_jwk(self.private_key.public_key())
            jwk["d"] = _b64url(self.private_key.private_bytes_raw())
            out["jwk"] = jwk
        else:
            assert self.secret is not None
            out["secret"] = _b64url(self.secret)
        return out


def _new_entry(purpose: KeyPurpose, now: datetime) -> _Entry:
    if purpose is KeyPurpose.WATERMARK:
        secret = secrets.token_bytes(_WATERMARK_SECRET_BYTES)
        return _Entry(
            kid=_watermark_kid(secret),
            purpose=purpose,
            created_at=now,
            retired_at=None,
            secret=secret,
        )
    private = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(_ed25519_jwk(private.public_key()))
    return _Entry(kid=kid, purpose=purpose, created_at=now, retired_at=None, private_key=private)


def _now() -> datetime:
    return datetime.now(UTC)


class Keyring:
    """The keys of one keyring file. Build it with :meth:`create`, :meth:`load` or
    :func:`open_keyring`; :meth:`rotate` saves the file again.

    ``repr`` shows the path and key ids, never key material.
    """

    def __init__(self, path: Path, entries: list[_Entry]) -> None:
        self._path = path
        self._entries = list(entries)
        _check_invariants(path, self._entries)

    def __repr__(self) -> str:
        kids = ", ".join(f"{e.purpose}:{e.kid}" for e in self._entries)
        return f"Keyring(path={str(self._path)!r}, keys=[{kids}])"

    __str__ = __repr__

    @property
    def path(self) -> Path:
        """The keyring file."""
        return self._path

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, *, overwrite: bool = False, allow_git_work_tree: bool = False
    ) -> Keyring:
        """Make a new keyring with one fresh key per purpose and write it to ``path`` (mode 0600).

        The parent folder is created (mode 0700) if it does not exist. A ``path`` inside a git
        work tree is refused unless git ignores it or ``allow_git_work_tree`` is True: a
        ``git add .`` there would commit the secret keys (see :func:`git_work_tree`).

        Raises:
            KeyringError: ``path`` exists and ``overwrite`` is False, it lies in a git work tree
                that does not ignore it, or it cannot be written.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise KeyringError(
                f"keyring {path} already exists",
                hint="keep it, or replace it (destroying its keys) with `distillguard keys init "
                "--force`",
                details={"path": str(path)},
            )
        if not allow_git_work_tree:
            _refuse_git_work_tree(path)
        now = _now()
        ring = cls(path, [_new_entry(purpose, now) for purpose in KeyPurpose])
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyringError(f"cannot create the folder of keyring {path}: {exc}") from None
        ring._save()
        logger.info("created keyring %s with keys %s", path, [e.kid for e in ring._entries])
        return ring

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read and check a keyring file.

        Raises:
            KeyringError: the file is missing, unreadable or malformed (the message says where).
            KeyringPermissionError: users other than the owner can read or write the file.
        """
        path = Path(path)
        text = _read_private_file(path)
        return cls(path, _parse(path, text))

    # -- access ---------------------------------------------------------------------------------

    def signing_key(self, purpose: KeyPurpose) -> SigningKey:
        """The active Ed25519 key of ``purpose`` (``ledger`` or ``passport``).

        Raises:
            KeyNotFoundError: ``purpose`` is ``watermark`` (use :meth:`watermark_key`).
        """
        purpose = _signing_purpose(purpose)
        entry = self._active(purpose)
        assert entry.private_key is not None
        return SigningKey(
            kid=entry.kid,
            purpose=purpose,
            created_at=entry.created_at,
            private_key=entry.private_key,
        )

    def verify_keys(
        self, purpose: KeyPurpose, *, include_compromised: bool = False
    ) -> list[VerifyKey]:
        """The trusted Ed25519 public keys of ``purpose``: active first, then retired ones newest
        first. Compromised keys are left out unless ``include_compromised``.

        A retired key is trusted only for what was signed before its ``retired_at``: callers
        that know the signing time check :meth:`VerifyKey.trusts`.

        Raises:
            KeyNotFoundError: ``purpose`` is ``watermark`` (it has no public keys).
        """
        purpose = _signing_purpose(purpose)
        found = [
            _verify_key(e)
            for e in self._entries
            if e.purpose is purpose and (include_compromised or e.compromised_at is None)
        ]
        return sorted(found, key=_newest_active_first)

    def verify_key(self, kid: str) -> VerifyKey:
        """The Ed25519 public key with id ``kid``, active or retired.

        Raises:
            KeyNotFoundError: no Ed25519 key has this id.
        """
        entry = self._by_kid(kid)
        if entry.private_key is None:
            raise KeyNotFoundError(
                f"key {kid} is a watermark secret, not a signing key",
                details={"kid": kid},
            )
        return _verify_key(entry)

    def watermark_key(self, kid: str | None = None) -> WatermarkKey:
        """The watermark secret with id ``kid``, or the active one when ``kid`` is None.

        Raises:
            KeyNotFoundError: no watermark key has this id.
        """
        if kid is None:
            entry = self._active(KeyPurpose.WATERMARK)
        else:
            entry = self._by_kid(kid)
            if entry.secret is None:
                raise KeyNotFoundError(
                    f"key {kid} is a {entry.purpose} signing key, not a watermark secret",
                    details={"kid": kid},
                )
        assert entry.secret is not None
        return WatermarkKey(
            kid=entry.kid,
            created_at=entry.created_at,
            secret=entry.secret,
            retired_at=entry.retired_at,
            compromised_at=entry.compromised_at,
        )

    def watermark_keys(self) -> list[WatermarkKey]:
        """Every watermark secret, active first, then retired ones newest first."""
        found = [
            self.watermark_key(e.kid) for e in self._entries if e.purpose is KeyPurpose.WATERMARK
        ]
        return sorted(found, key=_newest_active_first)

    def describe(self) -> list[KeyInfo]:
        """Public description of every key: by purpose, active first, then newest first."""
        order = {p: i for i, p in enumerate(KeyPurpose)}
        infos = [
            KeyInfo(
                kid=e.kid,
                purpose=e.purpose,
                algorithm=e.algorithm,
                created_at=e.created_at,
                retired_at=e.retired_at,
                compromised_at=e.compromised_at,
                compromise_reason=e.compromise_reason,
            )
            for e in self._entries
        ]
        return sorted(infos, key=lambda i: (order[i.purpose], *_newest_active_first(i)))

    def public_jwks(self) -> dict[str, Any]:
        """A JWK Set of every Ed25519 public key, active and retired.

        Each JWK carries ``kid``, ``alg`` (``EdDSA``), ``use`` (``sig``) and DistillGuard
        members: ``purpose``, ``created_at``, ``retired_at`` (null while active: a retired key
        verifies only what was signed at or before it), ``status`` (``active``, ``retired`` or
        ``compromised``) and ``compromised_at`` (null unless compromised: such a key verifies
        nothing). Compromised keys stay in the set so that offline verifiers learn to distrust
        them; verifiers that do not read ``status`` must drop them (see docs/keys.md).
        """
        keys: list[dict[str, Any]] = []
        for purpose in _SIGNING_PURPOSES:
            for vk in self.verify_keys(purpose, include_compromised=True):
                jwk: dict[str, Any] = dict(vk.public_jwk())
                jwk["purpose"] = str(purpose)
                jwk["created_at"] = format_ts(vk.created_at)
                jwk["retired_at"] = format_ts(vk.retired_at) if vk.retired_at else None
                jwk["status"] = (
                    "compromised" if vk.compromised else ("active" if vk.active else "retired")
                )
                jwk["compromised_at"] = format_ts(vk.compromised_at) if vk.compromised_at else None
                keys.append(jwk)
        return {"keys": keys}

    # -- rotation -------------------------------------------------------------------------------

    def rotate(self, purpose: KeyPurpose) -> str:
        """Retire the active key of ``purpose``, make a new one, save the file; returns its kid.

        The retired key stays in the keyring to verify old signatures (or detect old
        watermarks). The file is re-read under a lock first, so that two concurrent rotations
        do not lose each other's keys.

        Raises:
            KeyringError: the file cannot be read or written.
        """
        purpose = KeyPurpose(purpose)
        with _locked(self._path):
            current = _parse(self._path, _read_private_file(self._path))
            now = _now()
            new = _new_entry(purpose, now)
            entries = [
                e.retire(now) if e.purpose is purpose and e.retired_at is None else e
                for e in current
            ]
            entries.append(new)
            _check_invariants(self._path, entries)
            self._entries = entries
            self._save()
        logger.info("rotated %s key of keyring %s: new kid %s", purpose, self._path, new.kid)
        return new.kid

    def mark_compromised(self, kid: str, *, reason: str) -> tuple[KeyInfo, str | None]:
        """Mark key ``kid`` compromised (nothing it signed is trusted any more) and save.

        The mark is permanent. If ``kid`` is the active key of its purpose, it is retired and
        a new active key made in the same write (a compromised key must not sign again); the
        second member of the result is then the new key's id, else None. Marking a key that
        is already compromised changes nothing (the first time and reason are kept).

        Raises:
            KeyNotFoundError: no key has this id.
            KeyringError: the file cannot be read or written.
        """
        with _locked(self._path):
            current = _parse(self._path, _read_private_file(self._path))
            self._entries = current
            target = self._by_kid(kid)
            new_kid: str | None = None
            if target.compromised_at is None:
                now = _now()
                entries: list[_Entry] = []
                for e in current:
                    if e.kid == kid:
                        e = e.compromise(now, reason)
                        if e.retired_at is None:
                            e = e.retire(now)
                    entries.append(e)
                if target.retired_at is None:
                    new = _new_entry(target.purpose, now)
                    entries.append(new)
                    new_kid = new.kid
                _check_invariants(self._path, entries)
                self._entries = entries
                self._save()
                logger.warning(
                    "marked %s key %s of keyring %s compromised%s",
                    target.purpose,
                    kid,
                    self._path,
                    f"; new active key {new_kid}" if new_kid else "",
                )
        info = next(i for i in self.describe() if i.kid == kid)
        return info, new_kid

    # -- internals ------------------------------------------------------------------------------

    def _active(self, purpose: KeyPurpose) -> _Entry:
        for entry in self._entries:
            if entry.purpose is purpose and entry.retired_at is None:
                return entry
        raise KeyNotFoundError(  # unreachable after _check_invariants, kept for safety
            f"keyring {self._path} has no active {purpose} key",
            hint=f"run `distillguard keys rotate {purpose}`",
        )

    def _by_kid(self, kid: str) -> _Entry:
        for entry in self._entries:
            if entry.kid == kid:
                return entry
        raise KeyNotFoundError(
            f"no key with id {kid!r} in keyring {self._path}",
            hint="list the keys with `distillguard keys list`",
            details={"kid": kid, "path": str(self._path)},
        )

    def _save(self) -> None:
        document = {
            "format": KEYRING_FORMAT,
            "keys": [e.to_json() for e in self._entries],
        }
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        _atomic_write_private(self._path, data)


def _newest_active_first(key: VerifyKey | WatermarkKey | KeyInfo) -> tuple[int, float]:
    return (0 if key.retired_at is None else 1, -key.created_at.timestamp())


def _signing_purpose(purpose: KeyPurpose) -> KeyPurpose:
    purpose = KeyPurpose(purpose)
    if purpose not in _SIGNING_PURPOSES:
        raise KeyNotFoundError(
            "the watermark key is a secret, not a signing key",
            hint="use Keyring.watermark_key() for watermark secrets",
        )
    return purpose


def _verify_key(entry: _Entry) -> VerifyKey:
    assert entry.private_key is not None
    return VerifyKey(
        kid=entry.kid,
        purpose=entry.purpose,
        created_at=entry.created_at,
        retired_at=entry.retired_at,
        public_key=entry.private_key.public_key(),
        compromised_at=entry.compromised_at,
    )


# -- file access ---------------------------------------------------------------------------------


def _read_private_file(path: Path) -> str:
    """Read the keyring, refusing it when group or others have any permission on it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyringError(
            f"keyring {path} does not exist",
            hint=_INIT_HINT + " (or set keyring.path / DISTILLGUARD_KEYRING__PATH)",
            details={"path": str(path)},
        ) from None
    except IsADirectoryError:
        raise KeyringError(f"keyring {path} is a folder, not a file") from None
    except OSError as exc:
        raise KeyringError(f"cannot open keyring {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"keyring {path} is not a regular file")
        loose = stat.S_IMODE(st.st_mode) & 0o077
        if loose:
            raise KeyringPermissionError(
                f"keyring {path} has mode {stat.S_IMODE(st.st_mode):04o}: users other than its "
                "owner can access its secret keys, so it was not loaded",
                hint=f"chmod 600 {path}",
                details={"path": str(path), "mode": f"{stat.S_IMODE(st.st_mode):04o}"},
            )
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            raw = fh.read()
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyringError(
            f"keyring {path} is malformed: not UTF-8 text (byte {exc.start})",
            hint="restore it from a backup, or create a new one with `distillguard keys init "
            "--force`",
        ) from None


def _atomic_write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a 0600 temporary file in the same folder, fsync, rename."""
    try:
        atomic_write_private(path, data)
    except OSError as exc:
        raise KeyringError(f"cannot write keyring {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``PATH.lock`` (created with mode 0600)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyringError(f"cannot lock keyring {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- parsing -------------------------------------------------------------------------------------


class _MalformedError(Exception):
    """One key entry breaks the keyring format (wrapped into a KeyringError)."""


def _parse(path: Path, text: str) -> list[_Entry]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _malformed(
            path, f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(document, dict):
        raise _malformed(path, "the top level is not a JSON object")
    fmt = document.get("format")
    if fmt != KEYRING_FORMAT:
        raise KeyringError(
            f"keyring {path} has format {fmt!r}; this version of DistillGuard reads "
            f"{KEYRING_FORMAT!r}",
            hint="use the DistillGuard version that wrote it, or create a new keyring",
            details={"path": str(path), "format": fmt},
        )
    extra = set(document) - {"format", "keys"}
    if extra:
        raise _malformed(path, f"unknown member(s) {', '.join(sorted(extra))}")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise _malformed(path, "'keys' is missing or not a list")
    entries: list[_Entry] = []
    unstamped: set[str] = set()  # keys written without a 'retired_at' member at all
    for index, item in enumerate(keys):
        try:
            entries.append(_parse_entry(item))
        except (_MalformedError, ValueError, TypeError) as exc:
            raise _malformed(path, f"keys[{index}]: {exc}") from None
        if isinstance(item, dict) and "retired_at" not in item:
            unstamped.add(entries[-1].kid)
    return _migrate_retired_at(path, entries, unstamped)


def _migrate_retired_at(path: Path, entries: list[_Entry], unstamped: set[str]) -> list[_Entry]:
    """Give a retirement time to keys of an old keyring that has no ``retired_at`` member.

    Such a key counts as active while it is the newest of its purpose; an older one is taken
    as retired when the next key of its purpose was created (the latest moment it can have
    been the active key), so that it verifies only what it signed before then. The file is
    not rewritten here: the next save (rotation, compromise) stores the times.
    """
    if not unstamped:
        return entries
    out = list(entries)
    for purpose in KeyPurpose:
        ordered = sorted(
            (i for i, e in enumerate(out) if e.purpose is purpose), key=lambda i: out[i].created_at
        )
        for older, newer in itertools.pairwise(ordered):
            entry = out[older]
            if entry.kid in unstamped and entry.retired_at is None:
                out[older] = entry.retire(out[newer].created_at)
                logger.warning(
                    "keyring %s: key %s has no retired_at; taken as retired at %s, when its "
                    "successor was created",
                    path,
                    entry.kid,
                    format_ts(out[newer].created_at),
                )
    return out


def _malformed(path: Path, why: str) -> KeyringError:
    return KeyringError(
        f"keyring {path} is malformed: {why}",
        hint="restore it from a backup, or create a new one with `distillguard keys init --force`",
        details={"path": str(path)},
    )


def _str_member(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise _MalformedError(f"'{name}' is missing or not a string")
    return value


def _parse_entry(item: object) -> _Entry:
    if not isinstance(item, dict):
        raise _MalformedError("not a JSON object")
    kid = _str_member(item, "kid")
    try:
        purpose = KeyPurpose(_str_member(item, "purpose"))
    except ValueError:
        raise _MalformedError(f"unknown purpose {item.get('purpose')!r}") from None
    created_at = parse_rfc3339(_str_member(item, "created_at"))
    retired_raw = item.get("retired_at")
    if retired_raw is not None and not isinstance(retired_raw, str):
        raise _MalformedError("'retired_at' is neither null nor a timestamp")
    retired_at = parse_rfc3339(retired_raw) if retired_raw is not None else None
    compromised_raw = item.get("compromised_at")
    if compromised_raw is not None and not isinstance(compromised_raw, str):
        raise _MalformedError("'compromised_at' is neither null nor a timestamp")
    compromised_at = parse_rfc3339(compromised_raw) if compromised_raw is not None else None
    reason = item.get("compromise_reason")
    if reason is not None and not isinstance(reason, str):
        raise _MalformedError("'compromise_reason' is not a string")
    if compromised_at is not None and retired_at is None:
        raise _MalformedError("a compromised key must be retired ('retired_at' is null)")
    marks = {"compromised_at", "compromise_reason"}
    mark_args: dict[str, Any] = {"compromised_at": compromised_at, "compromise_reason": reason}
    if purpose is KeyPurpose.WATERMARK:
        allowed = {"kid", "purpose", "created_at", "retired_at", "secret", *marks}
        _no_extra(item, allowed)
        secret = _b64url_decode(_str_member(item, "secret"))
        if len(secret) != _WATERMARK_SECRET_BYTES:
            raise _MalformedError(f"watermark secret is {len(secret)} bytes, expected 32")
        if _watermark_kid(secret) != kid:
            raise _MalformedError(f"kid {kid!r} does not match its watermark secret")
        return _Entry(kid, purpose, created_at, retired_at, secret=secret, **mark_args)
    _no_extra(item, {"kid", "purpose", "created_at", "retired_at", "jwk", *marks})
    jwk = item.get("jwk")
    if not isinstance(jwk, dict):
        raise _MalformedError("'jwk' is missing or not an object")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise _MalformedError("'jwk' is not an Ed25519 (kty OKP, crv Ed25519) key")
    d = _b64url_decode(_str_member(jwk, "d"))
    if len(d) != 32:
        raise _MalformedError(f"Ed25519 private key is {len(d)} bytes, expected 32")
    private = Ed25519PrivateKey.from_private_bytes(d)
    public_jwk = _ed25519_jwk(private.public_key())
    if jwk.get("x") != public_jwk["x"]:
        raise _MalformedError(f"public key 'x' of {kid!r} does not match its private key")
    if jwk_thumbprint(public_jwk) != kid:
        raise _MalformedError(f"kid {kid!r} is not the RFC 7638 thumbprint of its public key")
    return _Entry(kid, purpose, created_at, retired_at, private_key=private, **mark_args)


def _no_extra(item: Mapping[str, Any], allowed: set[str]) -> None:
    extra = set(item) - allowed
    if extra:
        raise _MalformedError(f"unknown member(s) {', '.join(sorted(extra))}")


def _check_invariants(path: Path, entries: list[_Entry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.kid in seen:
            raise _malformed(path, f"key id {entry.kid!r} appears twice")
        seen.add(entry.kid)
    for purpose in KeyPurpose:
        active = [e for e in entries if e.purpose is purpose and e.retired_at is None]
        if len(active) != 1:
            raise _malformed(
                path, f"expected exactly one active {purpose} key, found {len(active)}"
            )


def git_work_tree(path: Path) -> Path | None:
    """The top folder of the git work tree that ``path`` (existing or not) lies in, or None.

    Found by looking for ``.git`` (a folder, or the file of a linked work tree or submodule) in
    the folders above ``path``. Misfires: a work tree whose git directory is named only by
    ``GIT_DIR``/``GIT_WORK_TREE`` is not seen.
    """
    here = Path(path).resolve()  # where the file lands, through symbolic links
    for folder in here.parents:
        if (folder / ".git").exists():
            return folder
    return None


def git_ignores(root: Path, path: Path) -> bool:
    """Whether the git work tree at ``root`` ignores ``path`` (``git check-ignore``), so that
    ``git add .`` leaves it out. False when git cannot be run (not installed, timeout)."""
    rel = os.path.relpath(Path(path).resolve(), Path(root).resolve())
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "-q", "--", rel],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("git check-ignore failed in %s: %s", root, exc)
        return False
    return done.returncode == 0


def _refuse_git_work_tree(path: Path) -> None:
    root = git_work_tree(path)
    if root is None or git_ignores(root, path):
        return
    raise KeyringError(
        f"refusing to create keyring {path} inside the git work tree {root}: it holds secret "
        "keys, and `git add .` there would commit them",
        hint="use the default home (unset DISTILLGUARD_HOME and keyring.path), or point "
        "DISTILLGUARD_HOME / keyring.path outside the checkout, or have git ignore it "
        "(.gitignore); `distillguard keys init --allow-git-work-tree` creates it anyway",
        details={"path": str(path), "work_tree": str(root)},
    )


def open_keyring(settings: Settings) -> Keyring:
    """Load the keyring named by the configuration (``keyring.path``, default HOME/keyring.json).

    Raises:
        KeyringError: see :meth:`Keyring.load`.
    """
    return Keyring.load(settings.keyring_path)
