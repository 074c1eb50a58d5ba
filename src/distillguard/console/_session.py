"""Console sessions: signed cookies, CSRF tokens and the key they are derived from.

The session key is HKDF-SHA256 of the keyring's watermark secret, salted with a hash of the admin
token: rotating either invalidates every session. A session cookie is
``base64url(json payload) "." base64url(HMAC-SHA256)``; the payload names the analyst, the expiry
and a random nonce from which the session's CSRF token is derived (``HMAC(key, "csrf" | nonce)``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Session", "SessionSigner", "derive_session_key"]

_INFO = b"distillguard console session v1"


def derive_session_key(*, secret: bytes, admin_token: str) -> bytes:
    """The 32-byte HMAC key of console sessions (keyring secret + admin token)."""
    salt = hashlib.sha256(b"distillguard admin token|" + admin_token.encode()).digest()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return hkdf.derive(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A logged-in analyst: who, until when, and the session's CSRF token."""

    analyst: str
    expires_at: int
    nonce: str
    csrf: str


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with one key."""

    def __init__(self, *, key: bytes, ttl_s: int) -> None:
        if len(key) < 32:
            raise ValueError("the session key must have at least 32 bytes")
        self._key = key
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"SessionSigner(ttl_s={self.ttl_s})"

    def _mac(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"|" + data, hashlib.sha256).digest()

    def csrf_for(self, nonce: str) -> str:
        """The CSRF token bound to a session (or pre-login) nonce."""
        return _b64(self._mac(b"csrf", nonce.encode()))

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        """Whether ``token`` is the CSRF token of ``nonce`` (constant time)."""
        if not token:
            return False
        return hmac.compare_digest(self.csrf_for(nonce).encode(), token.encode())

    def issue(self, analyst: str, *, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``analyst``: the cookie value and the session."""
        t = int(time.time() if now is None else now)
        nonce = secrets.token_urlsafe(18)
        payload = orjson.dumps({"a": analyst, "e": t + self.ttl_s, "n": nonce})
        body = _b64(payload)
        cookie = body + "." + _b64(self._mac(b"session", body.encode()))
        return cookie, Session(analyst, t + self.ttl_s, nonce, self.csrf_for(nonce))

    def verify(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session of a cookie, or ``None`` if it is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        body, mac = cookie.split(".")
        try:
            expected = self._mac(b"session", body.encode())
            if not hmac.compare_digest(expected, _unb64(mac)):
                return None
            data = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        analyst, expires, nonce = data.get("a"), data.get("e"), data.get("n")
        if not (isinstance(analyst, str) and isinstance(expires, int) and isinstance(nonce, str)):
            return None
        if (time.time() if now is None else now) >= expires:
            return None
        return Session(analyst, expires, nonce, self.csrf_for(nonce))
