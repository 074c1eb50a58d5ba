"""Agent passports: signed credentials (JWT, EdDSA) that bind an agent key to an account.

A passport is a JWS compact token signed by the provider's *passport issuer key* (keyring purpose
``passport``). Its header carries ``alg: EdDSA``, ``typ: dg-passport+jwt`` and ``kid`` (the
issuer key id). Its claims:

=========  ===========================================================================
``jti``    passport id (random, URL-safe)
``iss``    issuer name (default ``distillguard``)
``sub``    account id
``org``    organisation id
``cnf``    ``{"jwk": <agent Ed25519 public JWK>, "jkt": <its RFC 7638 thumbprint>}``
``scope``  ``{"models": [...], "endpoints": [...]}`` (``*`` matches all; ``/v1/*`` a prefix)
``rate``   ``{"rpm": requests per minute, "tpd": tokens per day}``
``iat``    issue time, ``exp`` expiry time (UNIX seconds)
=========  ===========================================================================

Decoding is strict: only ``EdDSA``/``Ed25519`` are accepted (``none`` and HMAC algorithms are
refused before any cryptography runs, so an attacker cannot make a public key act as an HMAC
secret), the ``kid`` must be a known issuer key, and every claim is type-checked.

Key compromise: a passport signed by a *retired* issuer key is accepted only when its ``iat`` is
at or before the key's retirement (``retired_issuer_key`` otherwise), and one signed by a key
marked *compromised* is never accepted (``compromised_issuer_key``). A leaked retired key can
still mint a passport with a back-dated ``iat``; the gateway's verifier closes that by accepting
only passports recorded in the registry (see :mod:`~distillguard.passport._verifier`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from distillguard.errors import PassportError

__all__ = [
    "PASSPORT_TYP",
    "IssuerKey",
    "Passport",
    "PassportIssuer",
    "PassportProblem",
    "PassportValidator",
    "RateTier",
    "Scopes",
    "agent_jwk",
    "agent_kid",
]

PASSPORT_TYP = "dg-passport+jwt"
"""The JWT ``typ`` header of a passport."""

_ACCEPTED_ALGS = frozenset({"EdDSA", "Ed25519"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def agent_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK (``kty``, ``crv``, ``x``) of an Ed25519 agent key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}


def agent_kid(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 thumbprint of an Ed25519 JWK (its key id in signatures and passports).

    Raises:
        PassportError: the JWK is not an Ed25519 public key.
    """
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise PassportError("agent key is not an Ed25519 public JWK (kty OKP, crv Ed25519)")
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _public_key_of(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    agent_kid(jwk)  # validates the shape
    try:
        raw = _b64url_decode(jwk["x"])
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise PassportError("agent key 'x' is not a 32-byte base64url Ed25519 key") from None


class PassportProblem:
    """Stable reason names carried in ``PassportError.details['reason']``."""

    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    RETIRED_KEY = "retired_issuer_key"
    COMPROMISED_KEY = "compromised_issuer_key"


def _fail(reason: str, message: str) -> PassportError:
    return PassportError(message, details={"reason": reason})


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a passport may call: model names and endpoint paths.

    A pattern is ``*`` (anything), a literal, or a prefix ending in ``*`` (``/v1/*``).
    """

    models: tuple[str, ...] = ("*",)
    endpoints: tuple[str, ...] = ("*",)

    @staticmethod
    def _match(patterns: tuple[str, ...], value: str) -> bool:
        for p in patterns:
            if p == "*" or p == value or (p.endswith("*") and value.startswith(p[:-1])):
                return True
        return False

    def allows_model(self, model: str) -> bool:
        """True when ``model`` is in scope."""
        return self._match(self.models, model)

    def allows_endpoint(self, path: str) -> bool:
        """True when the request path ``path`` is in scope."""
        return self._match(self.endpoints, path)

    @property
    def all_models(self) -> bool:
        """True when every model is allowed (the verifier then skips reading the body)."""
        return "*" in self.models


@dataclass(frozen=True, slots=True)
class RateTier:
    """The rate limits a passport grants (enforced by the gateway)."""

    requests_per_minute: int = 60
    tokens_per_day: int = 1_000_000

    def __post_init__(self) -> None:
        if self.requests_per_minute < 1 or self.tokens_per_day < 1:
            raise ValueError("rate tier values must be positive")


@dataclass(frozen=True, slots=True)
class Passport:
    """A decoded, verified passport (or a freshly issued one).

    ``token`` is the compact JWS; it is a bearer-less credential (useless without the agent's
    private key) but is still left out of ``repr``.
    """

    passport_id: str
    issuer: str
    issuer_kid: str
    account_id: str
    org_id: str
    agent_jwk: Mapping[str, str]
    agent_kid: str
    scopes: Scopes
    rate: RateTier
    issued_at: int
    expires_at: int
    token: str = field(repr=False)
    agent_key: Ed25519PublicKey = field(repr=False, compare=False)

    def is_expired(self, now: float) -> bool:
        """True when ``now`` (UNIX seconds) is at or after the expiry time."""
        return now >= self.expires_at

    def claims(self) -> dict[str, Any]:
        """The JWT claims of this passport."""
        return {
            "jti": self.passport_id,
            "iss": self.issuer,
            "sub": self.account_id,
            "org": self.org_id,
            "cnf": {"jwk": dict(self.agent_jwk), "jkt": self.agent_kid},
            "scope": {"models": list(self.scopes.models), "endpoints": list(self.scopes.endpoints)},
            "rate": {"rpm": self.rate.requests_per_minute, "tpd": self.rate.tokens_per_day},
            "iat": self.issued_at,
            "exp": self.expires_at,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (claims plus the issuer key id; no token)."""
        return {**self.claims(), "issuer_kid": self.issuer_kid}


class IssuerKey(Protocol):
    """What issuing needs of a key: ``distillguard.keyring.SigningKey`` fits."""

    @property
    def kid(self) -> str:
        """The issuer key id."""
        ...

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The Ed25519 private key."""
        ...


class PassportIssuer:
    """Issues passports with the provider's passport key.

    Args:
        key: the active passport signing key (``keyring.signing_key(KeyPurpose.PASSPORT)``).
        issuer: the ``iss`` claim.
    """

    def __init__(self, *, key: IssuerKey, issuer: str = "distillguard") -> None:
        self._kid = key.kid
        self._jose_key = OKPKey.import_key(key.private_key)
        self.issuer = issuer

    def __repr__(self) -> str:
        return f"PassportIssuer(issuer={self.issuer!r}, kid={self._kid!r})"

    def issue(
        self,
        *,
        account_id: str,
        org_id: str,
        agent_public_jwk: Mapping[str, str],
        scopes: Scopes | None = None,
        rate: RateTier | None = None,
        ttl_s: int = 30 * 86400,
        now: int | None = None,
        passport_id: str | None = None,
    ) -> Passport:
        """Issue a passport for an agent key.

        Raises:
            PassportError: the agent JWK is not an Ed25519 public key.
            ValueError: ``ttl_s`` is not positive or an id is empty.
        """
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if not account_id or not org_id:
            raise ValueError("account_id and org_id must not be empty")
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": str(agent_public_jwk.get("x", ""))}
        public_key = _public_key_of(jwk)
        issued = int(time.time()) if now is None else int(now)
        passport = Passport(
            passport_id=passport_id or "pp_" + secrets.token_urlsafe(16),
            issuer=self.issuer,
            issuer_kid=self._kid,
            account_id=account_id,
            org_id=org_id,
            agent_jwk=jwk,
            agent_kid=agent_kid(jwk),
            scopes=scopes or Scopes(),
            rate=rate or RateTier(),
            issued_at=issued,
            expires_at=issued + int(ttl_s),
            token="",
            agent_key=public_key,
        )
        header = {"alg": "EdDSA", "typ": PASSPORT_TYP, "kid": self._kid}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864
            token = jwt.encode(header, passport.claims(), self._jose_key, algorithms=["EdDSA"])
        return _with_token(passport, token)


def _with_token(p: Passport, token: str) -> Passport:
    return Passport(
        passport_id=p.passport_id,
        issuer=p.issuer,
        issuer_kid=p.issuer_kid,
        account_id=p.account_id,
        org_id=p.org_id,
        agent_jwk=p.agent_jwk,
        agent_kid=p.agent_kid,
        scopes=p.scopes,
        rate=p.rate,
        issued_at=p.issued_at,
        expires_at=p.expires_at,
        token=token,
        agent_key=p.agent_key,
    )


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    v = claims.get(name)
    if not isinstance(v, str) or not v or len(v) > 256:
        raise _fail(
            PassportProblem.MALFORMED, f"passport claim {name!r} is missing or not a string"
        )
    return v


def _int_claim(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(PassportProblem.MALFORMED, f"passport claim {name!r} is not a whole number")
    return value


def _str_list(value: Any, name: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > 256
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise _fail(PassportProblem.MALFORMED, f"passport claim {name!r} is not a list of strings")
    return tuple(value)


class PassportValidator:
    """Decodes and verifies passports against the provider's passport public keys.

    Args:
        issuer_keys: public keys by issuer kid (active and retired passport keys).
        issuer: the expected ``iss``.
        leeway_s: clock-skew allowance for ``iat``/``exp``.
        max_token_bytes: longer tokens are refused unread.
        retired_at: for retired issuer keys, the retirement time (UNIX seconds): a passport
            they signed is refused (``retired_issuer_key``) when its ``iat`` is later.
        compromised: issuer key ids marked compromised: every passport they signed is refused
            (``compromised_issuer_key``), whatever its ``iat``.

    Use :meth:`from_keyring` in a service.
    """

    def __init__(
        self,
        *,
        issuer_keys: Mapping[str, Ed25519PublicKey],
        issuer: str = "distillguard",
        leeway_s: int = 60,
        max_token_bytes: int = 8192,
        retired_at: Mapping[str, float] | None = None,
        compromised: Collection[str] = (),
    ) -> None:
        self._keys = {kid: OKPKey.import_key(pk) for kid, pk in issuer_keys.items()}
        self._retired_at = {kid: int(t) for kid, t in (retired_at or {}).items()}
        self._compromised = frozenset(compromised)
        self.issuer = issuer
        self.leeway_s = leeway_s
        self.max_token_bytes = max_token_bytes

    @classmethod
    def from_keyring(cls, keyring: Any, *, issuer: str = "distillguard") -> PassportValidator:
        """A validator for the passport keys of a ``Keyring``: the active key, retired keys for
        passports issued before their retirement, and none of the compromised keys."""
        from distillguard.keyring import KeyPurpose

        every = keyring.verify_keys(KeyPurpose.PASSPORT, include_compromised=True)
        trusted = [vk for vk in every if not vk.compromised]
        return cls(
            issuer_keys={vk.kid: vk.public_key for vk in trusted},
            issuer=issuer,
            retired_at={
                vk.kid: vk.retired_at.timestamp() for vk in trusted if vk.retired_at is not None
            },
            compromised=[vk.kid for vk in every if vk.compromised],
        )

    @property
    def issuer_kids(self) -> tuple[str, ...]:
        """The trusted issuer key ids."""
        return tuple(self._keys)

    def decode(self, token: str, *, now: float | None = None, check_time: bool = True) -> Passport:
        """Verify ``token`` and return its :class:`Passport`.

        Args:
            token: the compact JWS.
            now: the current time (UNIX seconds); defaults to the clock.
            check_time: False to accept an expired passport (for ``passport inspect``).

        Raises:
            PassportError: with ``details['reason']`` one of :class:`PassportProblem`.
        """
        if not isinstance(token, str) or len(token) > self.max_token_bytes:
            raise _fail(PassportProblem.MALFORMED, "passport token is not text or is too long")
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise _fail(PassportProblem.MALFORMED, "passport is not a compact JWS (3 parts)")
        try:
            header = json.loads(_b64url_decode(parts[0]))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _fail(
                PassportProblem.MALFORMED, "passport header is not base64url JSON"
            ) from None
        if not isinstance(header, dict):
            raise _fail(PassportProblem.MALFORMED, "passport header is not a JSON object")
        alg = header.get("alg")
        if alg not in _ACCEPTED_ALGS:
            raise _fail(
                PassportProblem.ALGORITHM,
                f"passport algorithm {str(alg)[:20]!r} is refused (only EdDSA is accepted)",
            )
        if set(header) - {"alg", "kid", "typ"}:
            raise _fail(PassportProblem.MALFORMED, "passport header has unexpected members")
        if header.get("typ") not in (PASSPORT_TYP, None):
            raise _fail(PassportProblem.MALFORMED, "passport header typ is not dg-passport+jwt")
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._compromised:
            raise _fail(
                PassportProblem.COMPROMISED_KEY,
                "passport is signed by an issuer key marked compromised",
            )
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _fail(
                PassportProblem.UNKNOWN_ISSUER, "passport is signed by an unknown issuer key"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decoded = jwt.decode(token, key, algorithms=sorted(_ACCEPTED_ALGS))
        except JoseError:
            raise _fail(
                PassportProblem.BAD_SIGNATURE, "passport signature does not verify"
            ) from None
        except (ValueError, TypeError):
            raise _fail(
                PassportProblem.MALFORMED, "passport payload is not a JSON object"
            ) from None
        claims = decoded.claims
        if not isinstance(claims, dict):
            raise _fail(PassportProblem.MALFORMED, "passport payload is not a JSON object")
        passport = self._from_claims(claims, kid=str(kid), token=token)
        retired = self._retired_at.get(str(kid))
        if retired is not None and passport.issued_at > retired:
            raise _fail(
                PassportProblem.RETIRED_KEY,
                f"passport {passport.passport_id} was issued after its issuer key was retired",
            )
        if check_time:
            t = time.time() if now is None else now
            if t >= passport.expires_at + self.leeway_s:
                raise _fail(PassportProblem.EXPIRED, f"passport {passport.passport_id} has expired")
            if passport.issued_at > t + self.leeway_s:
                raise _fail(
                    PassportProblem.NOT_YET_VALID,
                    f"passport {passport.passport_id} is issued in the future",
                )
        return passport

    def _from_claims(self, claims: Mapping[str, Any], *, kid: str, token: str) -> Passport:
        if claims.get("iss") != self.issuer:
            raise _fail(PassportProblem.UNKNOWN_ISSUER, "passport iss is not the expected issuer")
        cnf = claims.get("cnf")
        jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
        if not isinstance(jwk, dict) or not all(isinstance(v, str) for v in jwk.values()):
            raise _fail(PassportProblem.MALFORMED, "passport has no cnf.jwk agent key")
        try:
            public_key = _public_key_of(jwk)
        except PassportError as exc:
            raise _fail(PassportProblem.MALFORMED, exc.message) from None
        kid_of_key = agent_kid(jwk)
        if isinstance(cnf, dict) and cnf.get("jkt") not in (None, kid_of_key):
            raise _fail(PassportProblem.MALFORMED, "passport cnf.jkt does not match cnf.jwk")
        scope = claims.get("scope")
        rate = claims.get("rate")
        if not isinstance(scope, dict) or not isinstance(rate, dict):
            raise _fail(PassportProblem.MALFORMED, "passport scope or rate is missing")
        try:
            tier = RateTier(
                _int_claim(rate.get("rpm"), "rate.rpm"), _int_claim(rate.get("tpd"), "rate.tpd")
            )
        except ValueError:
            raise _fail(
                PassportProblem.MALFORMED, "passport rate values must be positive"
            ) from None
        return Passport(
            passport_id=_str_claim(claims, "jti"),
            issuer=self.issuer,
            issuer_kid=kid,
            account_id=_str_claim(claims, "sub"),
            org_id=_str_claim(claims, "org"),
            agent_jwk={"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]},
            agent_kid=kid_of_key,
            scopes=Scopes(
                models=_str_list(scope.get("models"), "scope.models"),
                endpoints=_str_list(scope.get("endpoints"), "scope.endpoints"),
            ),
            rate=tier,
            issued_at=_int_claim(claims.get("iat"), "iat"),
            expires_at=_int_claim(claims.get("exp"), "exp"),
            token=token,
            agent_key=public_key,
        )
