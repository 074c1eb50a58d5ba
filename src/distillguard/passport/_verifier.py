"""Verifying signed requests: signature, passport, revocation, time window, replay, scope.

:class:`RequestVerifier` checks one request and returns a :class:`VerificationResult`: the
verified :class:`VerifiedIdentity`, or a :class:`Rejection` with a precise
:class:`RejectionReason`. Rejections become RFC 9457 ``application/problem+json`` documents
(:meth:`Rejection.problem`) that name the reason and never echo a secret, and each is counted in a
thread-safe :class:`RejectionCounter`.

Checks, cheapest first, and the reason each failure gives:

1. ``Signature-Input``/``Signature`` present (``missing_signature``) and well formed
   (``malformed_signature``), a signature with ``tag="web-bot-auth"``, ``alg`` absent or
   ``ed25519`` (``unsupported_algorithm``), ``created``/``expires``/``keyid``/``nonce`` present
   (``missing_parameter``);
2. time: not ``future_dated``, not ``expired_signature``, validity not longer than the window
   (``validity_too_long``);
3. coverage of ``@method``, ``@authority``, ``@path``, ``@query`` (when there is a query), the
   passport header and ``content-digest`` (when there is a body) (``insufficient_coverage``);
4. ``@authority`` is one of ours (``wrong_authority``);
5. the passport: present, valid, from a known issuer, not expired, not revoked
   (``missing_passport``, ``invalid_passport``, ``unknown_issuer``, ``expired_passport``,
   ``revoked_passport``; ``revocation_list_unavailable`` when the list cannot be read); not
   signed by a compromised issuer key (``compromised_issuer_key``) nor by a retired one after
   its retirement (``retired_issuer_key``); issued through the registry with these very claims
   (``unregistered_passport``, when the verifier has a registry); ``keyid`` is the passport's
   agent key (``key_mismatch``);
6. the Ed25519 signature (``bad_signature``); the body digest (``missing_digest``,
   ``digest_mismatch``); the scopes (``scope_violation``);
7. last, so that forged requests cannot burn nonces: the nonce is new (``replayed_nonce``).
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, cast

from cryptography.exceptions import InvalidSignature

from distillguard.errors import (
    ConfigurationError,
    PassportError,
    SignatureError,
    StorageError,
    StructuredFieldError,
)
from distillguard.passport._credential import Passport, PassportProblem, PassportValidator
from distillguard.passport._digest import DigestStatus, check_content_digest
from distillguard.passport._fastpath import Shape, digest_matches, parse_canonical
from distillguard.passport._replay import AsyncNonceCache, MemoryNonceCache, NonceCache
from distillguard.passport._signatures import (
    ED25519_ALG,
    HttpRequest,
    ParsedSignature,
    parse_signatures,
    signature_base,
)

__all__ = [
    "PASSPORT_HEADER",
    "WEB_BOT_AUTH_TAG",
    "Problem",
    "RegistrationChecker",
    "Rejection",
    "RejectionCounter",
    "RejectionReason",
    "RequestVerifier",
    "RevocationChecker",
    "VerificationResult",
    "VerifiedIdentity",
    "VerifierPolicy",
    "default_authorities",
]

logger = logging.getLogger(__name__)

#: Whether the "no registry check" warning was logged in this process (it is logged once).
_warned_no_registry = False

PASSPORT_HEADER = "distillguard-passport"
"""The request header that carries the passport token (covered by the signature)."""

WEB_BOT_AUTH_TAG = "web-bot-auth"
"""The ``tag`` of request signatures (Web Bot Auth draft)."""

PROBLEM_BASE = "https://distillguard.dev/problems/"


class RejectionReason(StrEnum):
    """Why a request was rejected; the value is the stable code in problem documents."""

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    MISSING_PARAMETER = "missing_parameter"
    FUTURE_DATED = "future_dated"
    EXPIRED_SIGNATURE = "expired_signature"
    VALIDITY_TOO_LONG = "validity_too_long"
    INSUFFICIENT_COVERAGE = "insufficient_coverage"
    WRONG_AUTHORITY = "wrong_authority"
    MISSING_PASSPORT = "missing_passport"
    INVALID_PASSPORT = "invalid_passport"
    UNKNOWN_ISSUER = "unknown_issuer"
    EXPIRED_PASSPORT = "expired_passport"
    REVOKED_PASSPORT = "revoked_passport"
    KEY_MISMATCH = "key_mismatch"
    BAD_SIGNATURE = "bad_signature"
    MISSING_DIGEST = "missing_digest"
    DIGEST_MISMATCH = "digest_mismatch"
    SCOPE_VIOLATION = "scope_violation"
    REPLAYED_NONCE = "replayed_nonce"
    BODY_TOO_LARGE = "body_too_large"
    REPLAY_CACHE_UNAVAILABLE = "replay_cache_unavailable"
    REVOCATION_LIST_UNAVAILABLE = "revocation_list_unavailable"
    RETIRED_ISSUER_KEY = "retired_issuer_key"
    COMPROMISED_ISSUER_KEY = "compromised_issuer_key"
    UNREGISTERED_PASSPORT = "unregistered_passport"

    @property
    def status(self) -> int:
        """The HTTP status of this rejection."""
        return _STATUS.get(self, 401)

    @property
    def summary(self) -> str:
        """A short human title."""
        return _TITLES[self]


_STATUS = {
    RejectionReason.MALFORMED_SIGNATURE: 400,
    RejectionReason.MISSING_PARAMETER: 400,
    RejectionReason.INSUFFICIENT_COVERAGE: 400,
    RejectionReason.UNSUPPORTED_ALGORITHM: 400,
    RejectionReason.VALIDITY_TOO_LONG: 400,
    RejectionReason.WRONG_AUTHORITY: 421,
    RejectionReason.REVOKED_PASSPORT: 403,
    RejectionReason.SCOPE_VIOLATION: 403,
    RejectionReason.BODY_TOO_LARGE: 413,
    RejectionReason.REPLAY_CACHE_UNAVAILABLE: 503,
    RejectionReason.REVOCATION_LIST_UNAVAILABLE: 503,
}

_TITLES = {
    RejectionReason.MISSING_SIGNATURE: "Request is not signed",
    RejectionReason.MALFORMED_SIGNATURE: "Signature headers are malformed",
    RejectionReason.UNSUPPORTED_ALGORITHM: "Signature algorithm is not Ed25519",
    RejectionReason.MISSING_PARAMETER: "Signature lacks a required parameter",
    RejectionReason.FUTURE_DATED: "Signature is dated in the future",
    RejectionReason.EXPIRED_SIGNATURE: "Signature has expired",
    RejectionReason.VALIDITY_TOO_LONG: "Signature validity is longer than allowed",
    RejectionReason.INSUFFICIENT_COVERAGE: "Signature does not cover the required components",
    RejectionReason.WRONG_AUTHORITY: "Request was signed for another authority",
    RejectionReason.MISSING_PASSPORT: "Request carries no passport",
    RejectionReason.INVALID_PASSPORT: "Passport is invalid",
    RejectionReason.UNKNOWN_ISSUER: "Passport issuer is not trusted",
    RejectionReason.EXPIRED_PASSPORT: "Passport has expired",
    RejectionReason.REVOKED_PASSPORT: "Passport has been revoked",
    RejectionReason.KEY_MISMATCH: "Signing key does not match the passport",
    RejectionReason.BAD_SIGNATURE: "Signature does not verify",
    RejectionReason.MISSING_DIGEST: "Body has no Content-Digest",
    RejectionReason.DIGEST_MISMATCH: "Body does not match its Content-Digest",
    RejectionReason.SCOPE_VIOLATION: "Passport does not allow this request",
    RejectionReason.REPLAYED_NONCE: "Signature nonce was already used",
    RejectionReason.BODY_TOO_LARGE: "Request body is too large",
    RejectionReason.REPLAY_CACHE_UNAVAILABLE: "Replay protection is unavailable",
    RejectionReason.REVOCATION_LIST_UNAVAILABLE: "The revocation list is unavailable",
    RejectionReason.RETIRED_ISSUER_KEY: "Passport was signed by a retired key after retirement",
    RejectionReason.COMPROMISED_ISSUER_KEY: "Passport was signed by a compromised key",
    RejectionReason.UNREGISTERED_PASSPORT: "Passport was not issued by this provider",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    code: str

    def to_dict(self) -> dict[str, Any]:
        """The ``application/problem+json`` body."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }

    def to_json(self) -> bytes:
        """The serialised body."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected request: the reason and a detail safe to show the caller."""

    reason: RejectionReason
    detail: str

    def problem(self) -> Problem:
        """The RFC 9457 problem document for the caller."""
        return Problem(
            type=PROBLEM_BASE + self.reason.value.replace("_", "-"),
            title=self.reason.summary,
            status=self.reason.status,
            detail=self.detail,
            code=self.reason.value,
        )


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who sent an accepted request."""

    passport: Passport
    keyid: str
    label: str
    created: int
    expires: int
    nonce: str

    @property
    def account_id(self) -> str:
        """The passport's account."""
        return self.passport.account_id

    @property
    def org_id(self) -> str:
        """The passport's organisation."""
        return self.passport.org_id

    @property
    def passport_id(self) -> str:
        """The passport id."""
        return self.passport.passport_id


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """The outcome of :meth:`RequestVerifier.verify`: exactly one of the two is set."""

    identity: VerifiedIdentity | None = None
    rejection: Rejection | None = None

    @property
    def ok(self) -> bool:
        """True when the request was accepted."""
        return self.identity is not None


class RejectionCounter:
    """Thread-safe counts of accepted requests and of rejections per reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._accepted = 0

    def add(self, reason: RejectionReason) -> None:
        """Count one rejection."""
        with self._lock:
            self._counts[reason.value] += 1

    def accept(self) -> None:
        """Count one accepted request."""
        with self._lock:
            self._accepted += 1

    @property
    def accepted(self) -> int:
        """Accepted requests so far."""
        return self._accepted

    def count(self, reason: RejectionReason) -> int:
        """Rejections for one reason so far."""
        with self._lock:
            return self._counts[reason.value]

    def snapshot(self) -> dict[str, int]:
        """Every reason (zeros included) with its count, plus ``accepted``."""
        with self._lock:
            out = {r.value: self._counts[r.value] for r in RejectionReason}
            out["accepted"] = self._accepted
            return out


class RevocationChecker(Protocol):
    """Anything that answers "is this passport revoked?" (a ``PassportRegistry`` does)."""

    def is_revoked(self, passport_id: str) -> bool:
        """True when revoked."""
        ...


class RegistrationChecker(Protocol):
    """Anything that answers "was this passport issued through the registry?"
    (:class:`~distillguard.passport._registry.RegistrationCache` does)."""

    def is_registered(self, passport: Passport) -> bool:
        """True when the registry holds this passport with these claims."""
        ...


@dataclass(frozen=True, slots=True)
class VerifierPolicy:
    """What the verifier accepts.

    Args:
        authorities: the ``@authority`` values this service answers to (``api.example.com``);
            a request signed for another one is refused. Empty accepts any (tests only).
        validity_window_s: longest accepted ``expires - created`` and oldest accepted
            ``created``.
        clock_skew_s: allowance for clocks that disagree.
        tag: required signature ``tag``.
        passport_header: header carrying the passport.
        max_nonce_length: longest accepted nonce.
        max_body_bytes: largest body the ASGI middleware buffers.
    """

    authorities: tuple[str, ...] = ()
    validity_window_s: int = 300
    clock_skew_s: int = 60
    tag: str = WEB_BOT_AUTH_TAG
    passport_header: str = PASSPORT_HEADER
    max_nonce_length: int = 128
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.validity_window_s < 1 or self.clock_skew_s < 0:
            raise ValueError("validity_window_s must be positive and clock_skew_s not negative")


_PASSPORT_REASONS = {
    PassportProblem.UNKNOWN_ISSUER: RejectionReason.UNKNOWN_ISSUER,
    PassportProblem.EXPIRED: RejectionReason.EXPIRED_PASSPORT,
    PassportProblem.RETIRED_KEY: RejectionReason.RETIRED_ISSUER_KEY,
    PassportProblem.COMPROMISED_KEY: RejectionReason.COMPROMISED_ISSUER_KEY,
}


class _RejectError(Exception):
    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _unavailable() -> _RejectError:
    return _RejectError(
        RejectionReason.REPLAY_CACHE_UNAVAILABLE, "replay protection is unavailable"
    )


def _replayed() -> _RejectError:
    return _RejectError(RejectionReason.REPLAYED_NONCE, "this nonce was already used")


def _warn_no_registry() -> None:
    global _warned_no_registry
    if _warned_no_registry:
        return
    _warned_no_registry = True
    logger.warning(
        "RequestVerifier built without a passport registry (registrations=None): passports "
        "are not checked against the list of issued ones, so one minted with a leaked issuer "
        "key is accepted; build it with RequestVerifier.from_settings(settings, keyring) or "
        "pass registrations=RegistrationCache(registry)"
    )


class RequestVerifier:
    """Verifies signed requests against passports; thread-safe.

    Args:
        passports: verifies passport tokens (issuer keys).
        revocations: the revocation list, consulted on every request (None: no revocation).
        registrations: the registry of issued passports: a passport it does not hold (with
            the same claims) is refused with ``unregistered_passport``. None skips the check
            (tests and embeddings without a registry) and logs a warning, once per process:
            a passport minted with a leaked issuer key would then be accepted.
            :meth:`from_settings` always sets it.
        nonce_cache: the replay cache (default: in process); an async one
            (:class:`~distillguard.passport._replay.AsyncRedisNonceCache`) needs :meth:`averify`.
        policy: what is accepted.
        counter: where rejections are counted (default: a new one, see :attr:`counter`).
        clock: time source in UNIX seconds.
        passport_cache_size: verified passports kept by token, so that a passport's own
            signature is checked once, not on every request (expiry and revocation still are).
        fast_path: parse the canonical single-signature shape of the headers with a strict
            regular expression and compiled component extraction (see ``_fastpath``), falling
            back to the full RFC 8941 parser for anything else. Same decisions either way;
            False forces the full parser (tests and comparisons).
    """

    def __init__(
        self,
        *,
        passports: PassportValidator,
        revocations: RevocationChecker | None = None,
        nonce_cache: NonceCache | AsyncNonceCache | None = None,
        registrations: RegistrationChecker | None = None,
        policy: VerifierPolicy | None = None,
        counter: RejectionCounter | None = None,
        clock: Callable[[], float] = time.time,
        passport_cache_size: int = 10_000,
        fast_path: bool = True,
    ) -> None:
        self.passports = passports
        self.revocations = revocations
        self.registrations = registrations
        if registrations is None:
            _warn_no_registry()
        self._registered: set[str] = set()  # tokens already found in the registry
        self.nonce_cache: NonceCache | AsyncNonceCache = nonce_cache or MemoryNonceCache()
        self._acache: AsyncNonceCache | None = None
        self._scache: NonceCache | None = None
        if inspect.iscoroutinefunction(self.nonce_cache.check_and_store):
            self._acache = cast(AsyncNonceCache, self.nonce_cache)
        else:
            self._scache = cast(NonceCache, self.nonce_cache)
        self.policy = policy or VerifierPolicy()
        self.counter = counter or RejectionCounter()
        self._clock = clock
        self._cache: dict[str, Passport] = {}
        self._cache_size = passport_cache_size
        self._authorities = frozenset(a.lower() for a in self.policy.authorities)
        self._required: tuple[str, ...] = (
            "@method",
            "@authority",
            "@path",
            self.policy.passport_header,
        )
        self._fast_path = fast_path

    def __repr__(self) -> str:
        return f"RequestVerifier(policy={self.policy!r})"

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        keyring: Any,
        *,
        wrap_nonce_cache: Callable[[Any], NonceCache | AsyncNonceCache] | None = None,
    ) -> RequestVerifier:
        """The verifier a service runs: keys from the keyring, policy and caches from settings.

        Uses ``settings.passport`` (window, skew, authorities, replay cache) and the passport
        registry (:func:`~distillguard.passport._registry.open_registry`) as the revocation list,
        held in memory by a :class:`~distillguard.passport._registry.RevocationCache`, and as the
        list of issued passports (a :class:`~distillguard.passport._registry.RegistrationCache`).
        The accepted authorities are ``passport.authorities``, else the host of
        ``gateway.public_url``; when neither is set any authority is accepted and a warning is
        logged.
        """
        from distillguard.passport._registry import (
            RegistrationCache,
            RevocationCache,
            open_registry,
        )
        from distillguard.passport._replay import AsyncRedisNonceCache, RedisNonceCache

        cfg = settings.passport
        cache: NonceCache | AsyncNonceCache
        if cfg.replay_cache == "redis":
            cache = RedisNonceCache.from_url(cfg.redis_url, prefix=cfg.redis_prefix)
        elif cfg.replay_cache == "redis-async":
            cache = AsyncRedisNonceCache.from_url(cfg.redis_url, prefix=cfg.redis_prefix)
        else:
            cache = MemoryNonceCache()
        if wrap_nonce_cache is not None:  # the gateway's failure mode open (gateway.failover)
            cache = wrap_nonce_cache(cache)
        registry = open_registry(settings)
        authorities = default_authorities(settings)
        if not authorities:
            logger.warning(
                "passport.authorities is empty and gateway.public_url is not set: requests "
                "signed for any host are accepted; set one of them in production"
            )
        return cls(
            passports=PassportValidator.from_keyring(keyring, issuer=cfg.issuer),
            revocations=RevocationCache(
                registry,
                refresh_s=cfg.revocation_refresh_s,
                max_stale_s=max(cfg.revocation_max_stale_s, cfg.revocation_refresh_s),
            ),
            registrations=RegistrationCache(
                registry, negative_ttl_s=max(cfg.revocation_refresh_s, 0.1)
            ),
            nonce_cache=cache,
            policy=VerifierPolicy(
                authorities=authorities,
                validity_window_s=cfg.validity_window_s,
                clock_skew_s=cfg.clock_skew_s,
            ),
        )

    def verify(
        self, request: HttpRequest, body: bytes = b"", *, now: float | None = None
    ) -> VerificationResult:
        """Verify one request with its (complete) body; never raises on bad input.

        Raises:
            ConfigurationError: the nonce cache is async (use :meth:`averify`).
        """
        cache = self._scache
        if cache is None:
            raise ConfigurationError(
                "this verifier has an async nonce cache: call averify() from the event loop"
            )
        t = self._clock() if now is None else now
        try:
            identity, key, ttl = self._verify(request, body, t)
            try:
                fresh = cache.check_and_store(key, ttl_s=ttl)
            except StorageError:
                raise _unavailable() from None
            if not fresh:
                raise _replayed()
        except _RejectError as r:
            return self._rejected(r)
        self.counter.accept()
        return VerificationResult(identity=identity)

    async def averify(
        self, request: HttpRequest, body: bytes = b"", *, now: float | None = None
    ) -> VerificationResult:
        """:meth:`verify` for event loops: awaits an async nonce cache (``redis.asyncio``).

        Works with either kind of nonce cache; every check but the nonce is the same code as
        :meth:`verify` and runs without awaiting.
        """
        t = self._clock() if now is None else now
        try:
            identity, key, ttl = self._verify(request, body, t)
            try:
                if self._acache is not None:
                    fresh = await self._acache.check_and_store(key, ttl_s=ttl)
                else:
                    assert self._scache is not None
                    fresh = self._scache.check_and_store(key, ttl_s=ttl)
            except StorageError:
                raise _unavailable() from None
            if not fresh:
                raise _replayed()
        except _RejectError as r:
            return self._rejected(r)
        self.counter.accept()
        return VerificationResult(identity=identity)

    def _rejected(self, r: _RejectError) -> VerificationResult:
        self.counter.add(r.reason)
        logger.debug("rejected request: %s", r.reason.value)
        return VerificationResult(rejection=Rejection(r.reason, r.detail))

    def reject(self, reason: RejectionReason, detail: str) -> Rejection:
        """Count and build a rejection decided outside :meth:`verify` (e.g. body too large)."""
        self.counter.add(reason)
        return Rejection(reason, detail)

    def _select(self, request: HttpRequest) -> tuple[ParsedSignature, Shape | None, str]:
        headers = request.headers
        sig_input = headers.get("signature-input")
        sig = headers.get("signature")
        if not sig_input or not sig:
            raise _RejectError(
                RejectionReason.MISSING_SIGNATURE, "Signature-Input and Signature are required"
            )
        if self._fast_path:
            fast = parse_canonical(sig_input, sig)
            if fast is not None:
                if fast[0].tag != self.policy.tag:
                    raise _RejectError(
                        RejectionReason.MISSING_SIGNATURE,
                        f'no signature with tag="{self.policy.tag}"',
                    )
                return fast
        try:
            parsed = parse_signatures(", ".join(sig_input), ", ".join(sig))
        except StructuredFieldError as exc:
            raise _RejectError(RejectionReason.MALFORMED_SIGNATURE, exc.message) from None
        for candidate in parsed.values():
            if candidate.tag == self.policy.tag:
                return candidate, None, ""
        raise _RejectError(
            RejectionReason.MISSING_SIGNATURE, f'no signature with tag="{self.policy.tag}"'
        )

    def _passport(self, request: HttpRequest, t: float) -> Passport:
        lines = request.headers.get(self.policy.passport_header)
        if not lines:
            raise _RejectError(
                RejectionReason.MISSING_PASSPORT,
                f"the {self.policy.passport_header} header is required",
            )
        if len(lines) != 1:
            raise _RejectError(RejectionReason.INVALID_PASSPORT, "more than one passport header")
        token = lines[0].strip()
        passport = self._cache.get(token)
        if passport is None:
            try:
                passport = self.passports.decode(token, now=t, check_time=False)
            except PassportError as exc:
                problem = exc.details.get("reason", PassportProblem.MALFORMED)
                reason = _PASSPORT_REASONS.get(problem, RejectionReason.INVALID_PASSPORT)
                raise _RejectError(reason, exc.message) from None
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[token] = passport
        leeway = self.policy.clock_skew_s
        if t >= passport.expires_at + leeway:
            raise _RejectError(
                RejectionReason.EXPIRED_PASSPORT, f"passport {passport.passport_id} has expired"
            )
        if passport.issued_at > t + leeway:
            raise _RejectError(RejectionReason.INVALID_PASSPORT, "passport is issued in the future")
        return passport

    def _verify(
        self, request: HttpRequest, body: bytes, t: float
    ) -> tuple[VerifiedIdentity, str, int]:
        """Every check but the nonce; returns the identity, the nonce key and its TTL."""
        policy = self.policy
        sig, shape, params_line = self._select(request)
        params = sig.params
        alg = params.get("alg")
        if alg is not None and alg != ED25519_ALG:
            raise _RejectError(
                RejectionReason.UNSUPPORTED_ALGORITHM, "only alg=ed25519 is accepted"
            )
        created, expires, keyid, nonce = sig.created, sig.expires, sig.keyid, sig.nonce
        if created is None or expires is None or keyid is None or nonce is None:
            raise _RejectError(
                RejectionReason.MISSING_PARAMETER, "created, expires, keyid and nonce are required"
            )
        if not nonce or len(nonce) > policy.max_nonce_length:
            raise _RejectError(RejectionReason.MALFORMED_SIGNATURE, "nonce is empty or too long")
        skew = policy.clock_skew_s
        if created > t + skew:
            raise _RejectError(RejectionReason.FUTURE_DATED, "created is in the future")
        if expires < t - skew or created < t - policy.validity_window_s - skew:
            raise _RejectError(RejectionReason.EXPIRED_SIGNATURE, "the signature has expired")
        if expires - created > policy.validity_window_s or expires < created:
            raise _RejectError(
                RejectionReason.VALIDITY_TOO_LONG,
                f"expires - created must be between 0 and {policy.validity_window_s} s",
            )
        covered = (
            shape.covered
            if shape is not None
            else frozenset(
                c.value for c in sig.components if not c.params and isinstance(c.value, str)
            )
        )
        self._check_coverage(covered, request, body)
        if self._authorities and request.authority not in self._authorities:
            raise _RejectError(
                RejectionReason.WRONG_AUTHORITY, "the request was signed for another authority"
            )
        passport = self._passport(request, t)
        if self.revocations is not None:
            try:
                revoked = self.revocations.is_revoked(passport.passport_id)
            except StorageError:
                raise _RejectError(
                    RejectionReason.REVOCATION_LIST_UNAVAILABLE,
                    "the revocation list is unavailable",
                ) from None
            if revoked:
                raise _RejectError(
                    RejectionReason.REVOKED_PASSPORT,
                    f"passport {passport.passport_id} is revoked",
                )
        if self.registrations is not None and passport.token not in self._registered:
            try:
                registered = self.registrations.is_registered(passport)
            except StorageError:
                raise _RejectError(
                    RejectionReason.REVOCATION_LIST_UNAVAILABLE,
                    "the passport registry is unavailable",
                ) from None
            if not registered:
                raise _RejectError(
                    RejectionReason.UNREGISTERED_PASSPORT,
                    f"passport {passport.passport_id} was not issued by this provider",
                )
            if len(self._registered) >= self._cache_size:
                self._registered.clear()
            self._registered.add(passport.token)
        if keyid != passport.agent_kid:
            raise _RejectError(
                RejectionReason.KEY_MISMATCH, "keyid is not the passport's agent key"
            )
        signature = sig.signature
        if len(signature) != 64:
            raise _RejectError(RejectionReason.BAD_SIGNATURE, "the signature does not verify")
        base = shape.base(request, params_line) if shape is not None else None
        if base is None:
            try:
                base = signature_base(request, sig.components, params)
            except SignatureError as exc:
                raise _RejectError(RejectionReason.MALFORMED_SIGNATURE, exc.message) from None
        try:
            passport.agent_key.verify(signature, base)
        except InvalidSignature:
            raise _RejectError(
                RejectionReason.BAD_SIGNATURE, "the signature does not verify"
            ) from None
        if body and not (self._fast_path and digest_matches(request.headers, body)):
            digest = request.header("content-digest")
            if digest is None:
                raise _RejectError(RejectionReason.MISSING_DIGEST, "a body needs a Content-Digest")
            check = check_content_digest(digest, body)
            if check.status is not DigestStatus.OK:
                reason = (
                    RejectionReason.DIGEST_MISMATCH
                    if check.status is DigestStatus.MISMATCH
                    else RejectionReason.MISSING_DIGEST
                )
                raise _RejectError(reason, check.reason)
        self._check_scope(passport, request, body)
        identity = VerifiedIdentity(
            passport=passport,
            keyid=keyid,
            label=sig.label,
            created=created,
            expires=expires,
            nonce=nonce,
        )
        return identity, f"{keyid}:{nonce}", int(expires - t) + skew + 1

    def _check_coverage(self, covered: frozenset[str], request: HttpRequest, body: bytes) -> None:
        required: tuple[str, ...] = self._required
        if request.query is not None:
            required = (*required, "@query")
        if body or request.headers.get("content-digest"):
            required = (*required, "content-digest")
        missing = [name for name in required if name not in covered]
        if missing:
            raise _RejectError(
                RejectionReason.INSUFFICIENT_COVERAGE,
                "the signature must cover " + ", ".join(missing),
            )

    def _check_scope(self, passport: Passport, request: HttpRequest, body: bytes) -> None:
        scopes = passport.scopes
        if not scopes.allows_endpoint(request.path):
            raise _RejectError(
                RejectionReason.SCOPE_VIOLATION, "this endpoint is not in the passport's scope"
            )
        if scopes.all_models or not body:
            return
        model = _model_of(body)
        if model is not None and not scopes.allows_model(model):
            raise _RejectError(
                RejectionReason.SCOPE_VIOLATION, "this model is not in the passport's scope"
            )


def default_authorities(settings: Any) -> tuple[str, ...]:
    """The ``@authority`` values a service accepts: ``passport.authorities`` when set, else the
    host (with its port, when not the scheme's default) of ``gateway.public_url``, else none
    (any authority is accepted)."""
    from urllib.parse import urlsplit

    configured = tuple(settings.passport.authorities)
    if configured:
        return configured
    url = getattr(settings.gateway, "public_url", None)
    if not url:
        return ()
    parts = urlsplit(str(url))
    host = (parts.hostname or "").lower()
    if not host:
        return ()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return ()
    return (host if port in (None, default_port) else f"{host}:{port}",)


def _model_of(body: bytes) -> str | None:
    """The ``model`` of a JSON body, or None when there is none to read.

    Parsed with orjson, the parser of the gateway's endpoints, so that both read the same model
    from the same bytes; orjson refuses nesting deeper than 1024 (no ``RecursionError``), and a
    body it refuses is refused by the endpoint too (400).
    """
    import orjson

    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    if isinstance(data, Mapping):
        model = data.get("model")
        return model if isinstance(model, str) else None
    return None
