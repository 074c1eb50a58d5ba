"""Agent passports and signed requests: every call to the model has a verifiable identity.

* passports (JWT, EdDSA) binding an agent key to an account, issued with the keyring's passport
  key: :class:`PassportIssuer`, :class:`PassportValidator`, :class:`Passport`;
* RFC 9421 HTTP Message Signatures with Ed25519 (on an RFC 8941 structured-field parser) and
  RFC 9530 ``Content-Digest``: :func:`sign_message`, :func:`verify_signature`,
  :func:`make_content_digest`, :func:`check_content_digest`;
* the request verifier (window, skew, replay, revocation, scope) with rejection reasons and
  RFC 9457 problem documents: :class:`RequestVerifier`, :class:`VerifierPolicy`;
* the registry of issued passports and revocations: :func:`open_registry`;
* the ASGI middleware and the key directory: :class:`PassportMiddleware`, :class:`KeyDirectory`;
* the client side: :class:`Auth` (``httpx``), :func:`httpx2_auth`, :class:`RequestSigner`.

See ``docs/passports.md``.
"""

from __future__ import annotations

from distillguard.passport._asgi import (
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    IDENTITY_SCOPE_KEY,
    KeyDirectory,
    PassportMiddleware,
)
from distillguard.passport._client import Auth, RequestSigner, httpx2_auth, load_agent_key
from distillguard.passport._credential import (
    Passport,
    PassportIssuer,
    PassportValidator,
    RateTier,
    Scopes,
    agent_jwk,
    agent_kid,
)
from distillguard.passport._digest import check_content_digest, make_content_digest
from distillguard.passport._registry import (
    PassportRecord,
    PassportRegistry,
    RegistrationCache,
    Revocation,
    RevocationCache,
    SQLitePassportRegistry,
    StorePassportRegistry,
    open_registry,
)
from distillguard.passport._replay import (
    AsyncNonceCache,
    AsyncRedisNonceCache,
    MemoryNonceCache,
    NonceCache,
    RedisNonceCache,
)
from distillguard.passport._signatures import (
    HttpRequest,
    HttpResponse,
    sign_message,
    verify_signature,
)
from distillguard.passport._verifier import (
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
    "check_content_digest",
    "httpx2_auth",
    "load_agent_key",
    "make_content_digest",
    "open_registry",
    "sign_message",
    "verify_signature",
]
