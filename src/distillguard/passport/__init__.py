"""Agent passports and signed requests: every call to the model has a verifiable identity.

* :mod:`~distillguard.passport.credential`: passports (JWT, EdDSA) binding an agent key to an
  account, issued with the keyring's passport key.
* :mod:`~distillguard.passport.signatures`: RFC 9421 HTTP Message Signatures with Ed25519, on
  the RFC 8941 parser of :mod:`~distillguard.passport.sfv`; :mod:`~distillguard.passport.digest`
  for RFC 9530 ``Content-Digest``.
* :mod:`~distillguard.passport.verifier`: the request verifier (window, skew, replay, revocation,
  scope) with rejection reasons and RFC 9457 problem documents.
* :mod:`~distillguard.passport.asgi`: the ASGI middleware and the key directory.
* :mod:`~distillguard.passport.client`: :class:`Auth`, the ``httpx`` client side.

See ``docs/passports.md``.
"""

from __future__ import annotations

from distillguard.passport.asgi import (
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    IDENTITY_SCOPE_KEY,
    KeyDirectory,
    PassportMiddleware,
)
from distillguard.passport.client import Auth, RequestSigner, httpx2_auth, load_agent_key
from distillguard.passport.credential import (
    Passport,
    PassportIssuer,
    PassportValidator,
    RateTier,
    Scopes,
    agent_jwk,
    agent_kid,
)
from distillguard.passport.registry import (
    PassportRecord,
    PassportRegistry,
    RegistrationCache,
    Revocation,
    RevocationCache,
    SQLitePassportRegistry,
    StorePassportRegistry,
    open_registry,
)
from distillguard.passport.replay import (
    AsyncNonceCache,
    AsyncRedisNonceCache,
    MemoryNonceCache,
    NonceCache,
    RedisNonceCache,
)
from distillguard.passport.signatures import HttpRequest, HttpResponse
from distillguard.passport.verifier import (
    PASSPORT_HEADER,
    Problem,
    Rejection,
    RejectionCounter,
    RejectionReason,
    RequestVerifier,
    VerificationResult,
    VerifiedIdentity,
    VerifierPolicy,
)

__all__ = [
    "DIRECTORY_MEDIA_TYPE",
    "DIRECTORY_PATH",
    "IDENTITY_SCOPE_KEY",
    "PASSPORT_HEADER",
    "AsyncNonceCache",
    "AsyncRedisNonceCache",
    "Auth",
    "HttpRequest",
    "HttpResponse",
    "KeyDirectory",
    "MemoryNonceCache",
    "NonceCache",
    "Passport",
    "PassportIssuer",
    "PassportMiddleware",
    "PassportRecord",
    "PassportRegistry",
    "PassportValidator",
    "Problem",
    "RateTier",
    "RedisNonceCache",
    "RegistrationCache",
    "Rejection",
    "RejectionCounter",
    "RejectionReason",
    "RequestSigner",
    "RequestVerifier",
    "Revocation",
    "RevocationCache",
    "SQLitePassportRegistry",
    "Scopes",
    "StorePassportRegistry",
    "VerificationResult",
    "VerifiedIdentity",
    "VerifierPolicy",
    "agent_jwk",
    "agent_kid",
    "httpx2_auth",
    "load_agent_key",
    "open_registry",
]
