"""The gateway's request pipeline (:class:`GatewayCore`) and what it needs.

Every model endpoint is a handler (:class:`~distillguard.gateway.pipeline.Handler`) run by
:meth:`GatewayCore.serve` through the same stages:

1. **read and verify**: the body, bounded in size (413) and time (408); the passport and the
   RFC 9421 signature (:class:`~distillguard.passport.RequestVerifier`);
2. the handler parses its request (400) and checks the model (404);
3. **admit**: the policy action from the online risk score and the analysts' overrides (block
   and re-verification refuse with 403/401 and are recorded), then the rate limits (GCRA per
   passport, account and aggregate keys; requests and prompt tokens at admission, completion
   tokens charged afterwards; 429 with ``Retry-After``);
4. **call upstream** (the handler's model): a failure is recorded and refused with the
   upstream's own status and body when it answered one (a 400 stays a 400, a 429 keeps its
   ``Retry-After``), 502/504 otherwise;
5. **finish**: watermark and canary;
6. **record**: the exchange (format v1, ``agent_id`` = the agent key thumbprint, declared tools,
   the answer's tool calls) in the store and the ledger, waiting for the commit
   (``durability``), then the answer; a stream's final chunk is sent only after the commit;
7. the access log, the online scorer and the alerter.

Refusals are raised as :class:`~distillguard.gateway.pipeline.Refusal`; :meth:`GatewayCore.serve`
alone turns them into responses, in the handler's error shape, and counts them.

Handlers served here: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models`` (OpenAI,
:mod:`~distillguard.gateway._openai_api`) and ``/v1/messages`` (Anthropic,
:mod:`~distillguard.gateway._anthropic_api`); ``/v1/images/generations``
(:mod:`~distillguard.gateway.images`) is mounted beside them and runs on the same pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from distillguard._internal.net import network_of
from distillguard.errors import StorageError, UpstreamError, UpstreamTimeoutError
from distillguard.gateway._anthropic_api import MessagesEndpoint
from distillguard.gateway._http import (
    BodyError,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_bytes,
)
from distillguard.gateway._openai_api import ModelsEndpoint, TextEndpoint
from distillguard.gateway._openai_wire import OPENAI_SHAPE, recorded_messages, tool_names
from distillguard.gateway.alerts import Alerter
from distillguard.gateway.metrics import GatewayMetrics
from distillguard.gateway.pipeline import (
    Admission,
    ErrorShape,
    Handler,
    Refusal,
    RequestContext,
    UpstreamReply,
)
from distillguard.gateway.policy import (
    Action,
    ActionRow,
    CanaryPlanting,
    NullScorer,
    OnlineScorer,
    Policy,
    new_action_record,
)
from distillguard.gateway.ratelimit import Check, Limit, RateLimiter
from distillguard.gateway.recorder import ExchangeRecorder, RowWriter
from distillguard.gateway.tracing import current_request_id, record_fields
from distillguard.gateway.upstream import (
    CompletionRequest,
    CompletionResult,
    Upstream,
    UpstreamHTTPError,
    count_tokens,
)
from distillguard.passport import HttpRequest, VerificationResult, VerifiedIdentity
from distillguard.records import Account, Exchange
from distillguard.store import Store

__all__ = [
    "AccountDirectory",
    "AggregateLimit",
    "GatewayCore",
    "LimitsConfig",
    "PostHocWatermarker",
    "RequestVerifying",
    "ScoringWorker",
]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("distillguard.gateway.access")


class PostHocWatermarker(Protocol):
    """A post-hoc text watermarker (``distillguard.watermark``'s lexical scheme,
    :class:`~distillguard.gateway.watermarking.CaterPostHoc`).

    ``apply`` returns the watermarked text, or the text unchanged when it cannot carry the mark.
    """

    name: str

    def apply(self, text: str, *, payload: int) -> str:
        """Watermark ``text`` with ``payload``."""
        ...


class RequestVerifying(Protocol):
    """What the pipeline asks of the verifier (:class:`~distillguard.passport.RequestVerifier`)."""

    async def averify(self, request: HttpRequest, body: bytes = b"") -> VerificationResult:
        """Verify one request with its complete body; never raises on bad input."""
        ...


@dataclass(frozen=True, slots=True)
class AggregateLimit:
    """A limit on an aggregate key: ``cluster``, ``payment``, ``subnet24``, ``asn``,
    ``client_fingerprint``."""

    key: str
    requests: Limit
    tokens: Limit


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-account limits (the passport's own tier applies too) and aggregate limits."""

    account_requests: Limit = field(default_factory=lambda: Limit(600, 60, 100))
    account_tokens: Limit = field(default_factory=lambda: Limit(1_000_000, 60, 200_000))
    aggregates: tuple[AggregateLimit, ...] = ()
    throttle_factor: float = 0.1


def _new_request_id() -> str:
    return f"gx_{time.time_ns():016x}{os.urandom(6).hex()}"


_ASN_MAX = 4_294_967_295  # AS numbers are 32-bit (RFC 6793)
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])  # str.translate: drop control characters


def _ip_or_none(value: str) -> str | None:
    """``value`` as a normalised IP address, or None if it is not one (a zone id included)."""
    if not value or len(value) > 45 or "%" in value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _forwarded_ip(raw: bytes) -> str | None:
    """The client address of an ``X-Forwarded-For`` value (its first element), or None."""
    return _ip_or_none(raw.split(b",", 1)[0].strip().decode("latin-1"))


def _asn(raw: bytes) -> int | None:
    """An ``X-Client-ASN`` value (``13335`` or ``AS13335``), or None if it is not an AS number."""
    value = raw.strip()
    if value[:2].lower() == b"as":
        value = value[2:]
    if not value.isdigit() or len(value) > 10:
        return None
    asn = int(value)
    return asn if asn <= _ASN_MAX else None


def _header_text(raw: bytes, limit: int) -> str | None:
    """A header value as text: at most ``limit`` characters, control characters dropped."""
    text = raw[:limit].decode("latin-1").translate(_CONTROL)
    return text or None


def _upstream_error(exc: Exception) -> UpstreamError:
    """``exc`` as an upstream failure: an :class:`UpstreamError` as is, anything else a 502."""
    if isinstance(exc, UpstreamError):
        return exc
    logger.error("the upstream failed unexpectedly", exc_info=exc)
    return UpstreamError(f"the upstream failed: {type(exc).__name__}")


# An upstream status that is the gateway's own problem, not the client's (its upstream key or
# network), answered as a 502 rather than passed on.
_NOT_PASSED_ON = frozenset({401, 403, 407})


def _upstream_refusal(failure: UpstreamError) -> Refusal:
    """The refusal of a failed upstream call (see the module documentation)."""
    if isinstance(failure, UpstreamHTTPError) and failure.status not in _NOT_PASSED_ON:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if failure.retry_after is not None:
            retry = str(max(1, math.ceil(failure.retry_after))).encode()
            headers = ((b"retry-after", retry),)
        code = (
            "upstream_rate_limited"
            if failure.status == 429
            else "upstream_error"
            if failure.status >= 500
            else "upstream_refused"
        )
        return Refusal(
            failure.status,
            code,
            "Upstream refused the request",
            failure.message,
            headers=headers,
            upstream=UpstreamReply(
                failure.status, failure.body, failure.content_type.encode("latin-1", "replace")
            ),
        )
    if isinstance(failure, UpstreamTimeoutError):
        return Refusal(504, "upstream_timeout", "Upstream timeout", failure.message)
    return Refusal(502, "upstream_error", "Upstream error", failure.message)


_STORAGE_DOWN = ("storage_unavailable", "Storage unavailable")


class AccountDirectory:
    """Account attributes the limits need (payment fingerprint), read from the store, cached."""

    def __init__(self, store: Store | None, *, ttl_s: float = 300.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()  # the store serves one thread at a time

    async def payment(self, account_id: str) -> str | None:
        """The account's payment fingerprint (None if unknown)."""
        hit = self._cache.get(account_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        if self._store is None:
            return None
        store = self._store

        def lookup() -> Account | None:
            with self._lock:
                return store.get_account(account_id)

        try:
            account = await asyncio.to_thread(lookup)
        except Exception:
            logger.warning("account lookup failed", exc_info=False)
            return None
        value = account.payment_fingerprint if account is not None else None
        if len(self._cache) > 1_000_000:
            self._cache.clear()
        self._cache[account_id] = (now, value)
        return value


class ScoringWorker:
    """Feeds exchanges to the online scorer in one background thread, off the event loop.

    The scorer's work (classifying and hashing sampled prompts, periodic re-scores) never delays
    an answer. When its risk for an account or cluster reaches the alert level, the alert is
    handed back to the event loop. The queue is bounded; exchanges that find it full are not
    scored (counted in :attr:`dropped` and logged) rather than slowing the gateway down.
    """

    def __init__(
        self,
        scorer: OnlineScorer,
        *,
        alerter: Alerter | None = None,
        max_queue: int = 100_000,
    ) -> None:
        self.scorer = scorer
        self.alerter = alerter
        self.dropped = 0
        self.failures = 0
        self._queue: queue.Queue[tuple[Exchange, asyncio.AbstractEventLoop] | None] = queue.Queue(
            maxsize=max_queue
        )
        self._thread = threading.Thread(target=self._run, name="dg-scorer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"ScoringWorker(scorer={self.scorer!r})"

    def submit(self, exchange: Exchange, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``exchange`` for scoring."""
        try:
            self._queue.put_nowait((exchange, loop))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("the online scorer lags: %d exchanges not scored", self.dropped)

    def join(self) -> None:
        """Wait until every queued exchange was scored (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        """Score what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                exchange, loop = item
                self._score(exchange, loop)
            finally:
                self._queue.task_done()

    def _score(self, exchange: Exchange, loop: asyncio.AbstractEventLoop) -> None:
        try:
            score = self.scorer.observe(exchange)
        except Exception:
            self.failures += 1
            logger.exception("the online scorer failed")
            return
        alerter = self.alerter
        if alerter is None or score.risk < alerter.level:
            return

        async def alert() -> None:
            await alerter.observe(
                f"account:{exchange.account_id}", score.account_risk, score.reasons
            )
            if score.cluster_id:
                await alerter.observe(
                    f"campaign:{score.cluster_id}", score.cluster_risk, score.reasons
                )

        try:
            asyncio.run_coroutine_threadsafe(alert(), loop)
        except RuntimeError:  # the loop is closed
            logger.warning("an alert could not be raised: the event loop is closed")


class _NotFound:
    """The handler of a path the pipeline does not serve."""

    method = "POST"
    shape: ErrorShape = OPENAI_SHAPE

    def __init__(self, path: str) -> None:
        self.path = path

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        raise AssertionError("never reached: the path check refuses first")


class GatewayCore:
    """The request pipeline of the model endpoints, as a plain ASGI app (see the module
    documentation). Its stages are the public API handlers use
    (:class:`~distillguard.gateway.pipeline.Pipeline`).

    Args:
        verifier: verifies passports and signatures.
        upstream: the model.
        recorder: stores exchanges and their ledger leaves.
        limiter: the rate limiter backend.
        limits: the limits applied.
        policy: decides actions.
        scorer: the online scorer.
        metrics: Prometheus metrics.
        accounts: account attributes (payment fingerprints).
        alerter: webhook alerts (None: off).
        watermarker: post-hoc watermark for upstreams that do not watermark while generating
            (None: only generation-time).
        canaries: the canary planter.
        max_body_bytes, body_timeout_s: bounds on request bodies.
        trust_forwarded: take the client IP, ASN and fingerprint from the front proxy's
            ``X-Forwarded-For``, ``X-Client-ASN`` and ``X-Client-Fingerprint`` headers.
        unavailable_retry_after_s: the ``Retry-After`` of a 503 that a down store or rate
            limiter causes (failure mode closed).
    """

    def __init__(
        self,
        *,
        verifier: RequestVerifying,
        upstream: Upstream,
        recorder: ExchangeRecorder,
        limiter: RateLimiter,
        limits: LimitsConfig,
        policy: Policy,
        scorer: OnlineScorer,
        metrics: GatewayMetrics,
        accounts: AccountDirectory,
        alerter: Alerter | None = None,
        watermarker: PostHocWatermarker | None = None,
        canaries: CanaryPlanting | None = None,
        max_body_bytes: int = 1 << 20,
        body_timeout_s: float = 30.0,
        trust_forwarded: bool = False,
        unavailable_retry_after_s: int = 5,
    ) -> None:
        self.verifier = verifier
        self.upstream = upstream
        self.recorder = recorder
        self.limiter = limiter
        self.limits = limits
        self.policy = policy
        self.scorer = scorer
        self.metrics = metrics
        self.accounts = accounts
        self.alerter = alerter
        self.watermarker = watermarker
        self.canaries = canaries
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.trust_forwarded = trust_forwarded
        self.unavailable_headers = ((b"retry-after", str(unavailable_retry_after_s).encode()),)
        self._charges: set[asyncio.Task[None]] = set()
        self.models = frozenset(upstream.models())
        self._limit_cache: dict[tuple[int, int, float], tuple[Limit, Limit, Limit, Limit]] = {}
        self.scoring: ScoringWorker | None = (
            None if isinstance(scorer, NullScorer) else ScoringWorker(scorer, alerter=alerter)
        )
        handlers: list[Handler] = [
            TextEndpoint(self, upstream, kind="chat", models=self.models),
            TextEndpoint(self, upstream, kind="completion", models=self.models),
            ModelsEndpoint(self.models),
            MessagesEndpoint(self, upstream, models=self.models),
        ]
        self.handlers: dict[str, Handler] = {h.path: h for h in handlers}

    def __repr__(self) -> str:
        return f"GatewayCore(upstream={self.upstream!r})"

    @property
    def paths(self) -> frozenset[str]:
        """The paths served by :meth:`__call__`."""
        return frozenset(self.handlers)

    def add_handler(self, handler: Handler) -> None:
        """Serve ``handler`` at its path from :meth:`__call__` (replacing one already there)."""
        self.handlers[handler.path] = handler

    # -- entry --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request to a handler's path."""
        path = scope["path"]
        await self.serve(scope, receive, send, self.handlers.get(path) or _NotFound(path))

    async def serve(self, scope: Scope, receive: Receive, send: Send, handler: Handler) -> None:
        """Run ``handler`` for one request: path and method, read and verify, the request's
        context, then the handler; every :class:`Refusal` it raises becomes the response here
        (or the stream's last event when the response has started), counted in the metrics."""
        started = time.perf_counter()
        status = 500
        response_started = False
        endpoint = handler.path

        async def tracking_send(message: Any) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            try:
                if scope["path"] != handler.path:
                    raise Refusal(
                        404, "not_found", "Not found", f"{scope['path']} is not served here"
                    )
                if scope.get("method", "GET") != handler.method:
                    raise Refusal(
                        405,
                        "method_not_allowed",
                        "Method not allowed",
                        handler.method,
                        headers=((b"allow", handler.method.encode()),),
                    )
                body, identity = await self.read_verified(scope, receive)
                ctx = self.context(scope, handler.path, identity, started)
                await handler.handle(ctx, body, tracking_send)
            except Refusal as refusal:
                self.metrics.rejections.labels(refusal.code).inc()
                if refusal.silent:
                    status = 499
                elif response_started:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": handler.shape.stream_event(refusal),
                            "more_body": False,
                        }
                    )
                else:
                    await self._respond(tracking_send, handler.shape, refusal)
        except Exception:
            logger.exception("unhandled error on %s", scope.get("path"))
            if not response_started:
                await self._respond(
                    tracking_send,
                    handler.shape,
                    Refusal(500, "internal_error", "Internal error", "see the gateway log"),
                )
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    @staticmethod
    async def _respond(send: Send, shape: ErrorShape, refusal: Refusal) -> None:
        content_type, body = shape.render(refusal)
        await send_bytes(
            send,
            refusal.upstream.status if refusal.upstream is not None else refusal.status,
            body,
            content_type=content_type,
            headers=[(b"cache-control", b"no-store"), *refusal.headers],
        )

    # -- read and verify ----------------------------------------------------------------------

    async def read_verified(self, scope: Scope, receive: Receive) -> tuple[bytes, VerifiedIdentity]:
        """The bounded body and the verified identity of the request.

        Raises:
            Refusal: the body was refused (413, 408, 400), the client went away (silent), the
                signature or passport was refused, or ``X-Forwarded-For`` is not an address.
        """
        try:
            body = await read_body(
                receive, scope, limit=self.max_body_bytes, timeout_s=self.body_timeout_s
            )
        except BodyError as exc:
            raise Refusal(
                exc.status,
                exc.code,
                "Request body refused",
                exc.detail,
                silent=exc.code == "client_disconnected",
            ) from None
        result = await self.verifier.averify(HttpRequest.from_asgi(scope), body)
        if result.rejection is not None:
            problem = result.rejection.problem()
            raise Refusal(
                problem.status,
                problem.code,
                problem.title,
                problem.detail,
                headers=((b"www-authenticate", b'Signature realm="distillguard"'),)
                if problem.status == 401
                else self.unavailable_headers  # the replay cache or revocation list is down
                if problem.status == 503
                else (),
            )
        identity = result.identity
        assert identity is not None
        if self.trust_forwarded:
            fwd = header(scope, b"x-forwarded-for")
            if fwd and _forwarded_ip(fwd) is None:
                raise Refusal(
                    400,
                    "invalid_forwarded_for",
                    "Invalid X-Forwarded-For",
                    "the first X-Forwarded-For element must be an IPv4 or IPv6 address",
                )
        return body, identity

    def context(
        self, scope: Scope, path: str, identity: VerifiedIdentity, started: float
    ) -> RequestContext:
        """What is known of the verified request: client address, ASN, user agent and client
        fingerprint (the front proxy's headers when ``trust_forwarded``)."""
        client = scope.get("client")
        ip = (_ip_or_none(str(client[0])) if client else None) or "0.0.0.0"
        asn: int | None = None
        fingerprint: str | None = None
        raw_headers = scope.get("headers", ())
        hdrs: dict[bytes, bytes] = {}
        for k, v in raw_headers:
            hdrs.setdefault(bytes(k), bytes(v))
        ua_raw = hdrs.get(b"user-agent")
        ua = _header_text(ua_raw, 512) if ua_raw else None
        if self.trust_forwarded:
            # a bad X-Forwarded-For was refused (400); a bad ASN is dropped, not stored
            fwd = hdrs.get(b"x-forwarded-for")
            if fwd:
                ip = _forwarded_ip(fwd) or ip
            asn_raw = hdrs.get(b"x-client-asn")
            if asn_raw:
                asn = _asn(asn_raw)
                if asn is None:
                    logger.debug("X-Client-ASN is not an AS number; ignored")
            fp = hdrs.get(b"x-client-fingerprint")
            if fp:
                fingerprint = _header_text(fp, 128)
        if fingerprint is None:
            # what the client's HTTP stack looks like: user agent, encodings, header names
            names = b",".join(k for k in hdrs if not k.startswith(b"sig"))
            h = hashlib.blake2b(digest_size=8)
            h.update(ua_raw or b"")
            h.update(b"|")
            h.update(hdrs.get(b"accept-encoding") or b"")
            h.update(b"|")
            h.update(names)
            fingerprint = "h:" + h.hexdigest()
        return RequestContext(
            endpoint=path,
            started=started,
            ts=datetime.now(UTC),
            identity=identity,
            request_id=current_request_id() or _new_request_id(),  # X-Request-Id
            ip=ip,
            asn=asn,
            user_agent=ua,
            client_fingerprint=fingerprint,
        )

    # -- admit --------------------------------------------------------------------------------

    async def admit(
        self, ctx: RequestContext, request: CompletionRequest, *, prompt_text: str
    ) -> Admission:
        """The policy decision and the rate limits (``prompt_text`` is what admission charges).

        Raises:
            Refusal: blocked (403) or re-verification required (401), both recorded; rate
                limited (429 with ``Retry-After``); the store or the limiter is down (503).
        """
        account_id = ctx.identity.account_id
        decision = self.policy.decide(account_id, self.scorer.score(account_id))
        ctx.decision = decision
        if decision.blocks:
            blocked = decision.action == Action.BLOCK
            exchange = self.exchange(
                ctx, request, status=403 if blocked else 401, result=None, text=None
            )
            await self.record(ctx, exchange)
            if blocked:
                raise Refusal(403, "account_blocked", "Account blocked", "this account is blocked")
            raise Refusal(
                401,
                "reverification_required",
                "Re-verification required",
                "renew the passport (re-verify the account) to continue",
            )
        if any(a.key == "payment" for a in self.limits.aggregates):
            ctx.payment = await self.accounts.payment(account_id)
        reqs, toks = self._checks(ctx, count_tokens(prompt_text))
        try:
            verdict = await self.limiter.aacquire([*reqs, *toks])
        except StorageError:
            raise Refusal(
                503,
                "rate_limiter_unavailable",
                "Rate limiter unavailable",
                "rate limits cannot be checked; retry later",
                headers=self.unavailable_headers,
            ) from None
        if not verdict.allowed:
            retry = max(1, math.ceil(verdict.retry_after_s))
            raise Refusal(
                429,
                "rate_limited",
                "Too many requests",
                f"limited by {verdict.limited_by}; retry after {retry} s",
                headers=((b"retry-after", str(retry).encode()),),
            )
        return Admission(token_checks=tuple(toks), payload=decision.payload)

    def _limits_for(self, rpm: int, tpd: int, factor: float) -> tuple[Limit, Limit, Limit, Limit]:
        """Passport and account limits for a rate tier and throttle factor (cached)."""
        key = (rpm, tpd, factor)
        hit = self._limit_cache.get(key)
        if hit is None:
            hit = (
                Limit(rpm, 60.0, max(1.0, math.ceil(rpm / 6))).scaled(factor),
                Limit(tpd, 86_400.0, max(1.0, tpd / 24)).scaled(factor),
                self.limits.account_requests.scaled(factor),
                self.limits.account_tokens.scaled(factor),
            )
            if len(self._limit_cache) > 10_000:
                self._limit_cache.clear()
            self._limit_cache[key] = hit
        return hit

    @staticmethod
    def _aggregate_value(key: str, ctx: RequestContext) -> str | None:
        """The request's value of an aggregate key (computed only for configured keys)."""
        if key == "cluster":
            return ctx.decision.risk.cluster_id if ctx.decision else None
        if key == "payment":
            return ctx.payment
        if key == "subnet24":  # the /24 or /48 (ctx.ip is always an address)
            return network_of(ctx.ip)
        if key == "asn":
            return str(ctx.asn) if ctx.asn is not None else None
        if key == "client_fingerprint":
            return ctx.client_fingerprint
        return None

    def _checks(self, ctx: RequestContext, prompt_tokens: int) -> tuple[list[Check], list[Check]]:
        """Request checks (admission) and token checks (admission cost = prompt tokens)."""
        p = ctx.identity.passport
        acct = p.account_id
        factor = 1.0
        if ctx.decision is not None and ctx.decision.action == Action.THROTTLE:
            factor = self.limits.throttle_factor
        pp_req, pp_tok, ac_req, ac_tok = self._limits_for(
            p.rate.requests_per_minute, p.rate.tokens_per_day, factor
        )
        reqs = [
            Check("passport", f"pp:{p.passport_id}:r", pp_req),
            Check("account", f"ac:{acct}:r", ac_req),
        ]
        toks = [
            Check("passport_tokens", f"pp:{p.passport_id}:t", pp_tok),
            Check("account_tokens", f"ac:{acct}:t", ac_tok),
        ]
        for agg in self.limits.aggregates:
            value = self._aggregate_value(agg.key, ctx)
            if value:
                reqs.append(Check(agg.key, f"ag:{agg.key}:{value}:r", agg.requests))
                toks.append(Check(agg.key + "_tokens", f"ag:{agg.key}:{value}:t", agg.tokens))
        toks = [Check(c.name, c.key, c.limit, float(prompt_tokens)) for c in toks]
        return reqs, toks

    def charge(self, admission: Admission, completion_tokens: int) -> None:
        """Charge ``completion_tokens`` to the admitted request's token limits (a limiter that
        is down is logged: the answer is already paid for)."""
        if completion_tokens <= 0 or not admission.token_checks:
            return
        checks = [
            Check(c.name, c.key, c.limit, float(completion_tokens)) for c in admission.token_checks
        ]
        task = asyncio.get_running_loop().create_task(self._acharge(checks))
        self._charges.add(task)  # a reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._charges.discard)

    async def _acharge(self, checks: list[Check]) -> None:
        try:
            await self.limiter.acharge(checks)
        except StorageError:
            logger.warning("could not charge completion tokens: rate limiter unavailable")

    # -- upstream -----------------------------------------------------------------------------

    def observe_upstream(self, seconds: float) -> None:
        """Count one upstream call's duration."""
        self.metrics.upstream.observe(seconds)

    async def upstream_failed(
        self, ctx: RequestContext, request: CompletionRequest, exc: Exception, *, sent: str = ""
    ) -> Refusal:
        """Record the failed exchange (``sent``: the text already streamed) with the status the
        client gets, and return the refusal to raise (see the module documentation)."""
        failure = _upstream_error(exc)
        refusal = _upstream_refusal(failure)
        ctx.extra["dg_error"] = failure.message
        exchange = self.exchange(
            ctx, request, status=refusal.status, result=None, text=sent or None
        )
        try:
            await self.record(ctx, exchange)
        except Refusal:
            logger.error("could not record a failed exchange")
        return refusal

    # -- finish -------------------------------------------------------------------------------

    def rewrites(self, ctx: RequestContext, *, generation_watermark: bool) -> bool:
        """Whether :meth:`finish_text` may change the answer: a canary is planted, or a payload
        is due from an upstream that does not watermark while generating."""
        decision = ctx.decision
        if decision is None:
            return False
        if decision.plants_canary and self.canaries is not None:
            return True
        return (
            decision.payload is not None
            and not generation_watermark
            and self.watermarker is not None
        )

    def finish_text(
        self, ctx: RequestContext, text: str, *, watermarked: bool, canary: bool = True
    ) -> str:
        """``text`` as sent: the account's payload watermarked in when the policy asks and the
        upstream did not (``watermarked``), and with ``canary`` a canary planted when the policy
        asks; what was done is noted in the exchange's ``extra``."""
        decision = ctx.decision
        if decision is not None and decision.payload is not None:
            applied = watermarked
            scheme = "generation" if applied else None
            if not applied and self.watermarker is not None and text:
                text = self.watermarker.apply(text, payload=decision.payload)
                applied = True
                scheme = self.watermarker.name
            if canary:  # choice 0 speaks for the exchange
                ctx.extra["dg_watermark"] = {
                    "payload": decision.payload,
                    "applied": applied,
                    "scheme": scheme,
                }
        if canary and decision is not None and decision.plants_canary and self.canaries:
            text, canary_id = self.canaries.plant(text, ctx.identity.account_id)
            if canary_id is not None:
                ctx.extra["dg_canary"] = canary_id
        return text

    # -- record -------------------------------------------------------------------------------

    def exchange(
        self,
        ctx: RequestContext,
        request: CompletionRequest,
        *,
        status: int,
        result: CompletionResult | None,
        text: str | None,
    ) -> Exchange:
        """The exchange record of this request (its id is the request's id)."""
        identity = ctx.identity
        extra = dict(ctx.extra)
        extra.update(record_fields())  # dg_trace_id, dg_client_request_id
        if result is not None and result.tool_calls:
            extra["tool_calls"] = [dict(c) for c in result.tool_calls]
        if ctx.decision is not None and ctx.decision.action != Action.ALLOW:
            extra["dg_action"] = ctx.decision.action.value
            extra["dg_action_reason"] = ctx.decision.reason
        return Exchange(
            exchange_id=ctx.request_id,
            ts=ctx.ts,
            account_id=identity.account_id,
            api_key_id=identity.passport_id,
            agent_id=identity.keyid,
            ip=ctx.ip,
            asn=ctx.asn,
            user_agent=ctx.user_agent,
            client_fingerprint=ctx.client_fingerprint,
            model=request.model,
            endpoint=ctx.endpoint,
            messages=recorded_messages(request),
            response=text,
            reasoning=result.reasoning if result else None,
            tools=tool_names(request),
            prompt_tokens=result.prompt_tokens if result else count_tokens(request.prompt_text),
            completion_tokens=result.completion_tokens if result else 0,
            status=status,
            latency_ms=ctx.elapsed_ms,
            extra=MappingProxyType(extra),
        )

    def _rows(self, ctx: RequestContext, exchange_id: str) -> Sequence[RowWriter]:
        decision = ctx.decision
        if decision is None or (decision.action == Action.ALLOW and decision.source == "policy"):
            return ()
        record = new_action_record(
            account_id=ctx.identity.account_id, exchange_id=exchange_id, decision=decision
        )
        self.metrics.actions.labels(decision.action.value, decision.source).inc()
        return (ActionRow(record),)

    async def record(self, ctx: RequestContext, exchange: Exchange) -> None:
        """Store ``exchange``, its account and its policy action, and its ledger leaf; returns
        once committed as ``durability`` says.

        Raises:
            Refusal: the store is down (503).
        """
        p = ctx.identity.passport
        account = Account(account_id=p.account_id, created_at=ctx.ts, org_id=p.org_id)
        try:
            await self.recorder.record(
                exchange, account=account, rows=self._rows(ctx, exchange.exchange_id)
            )
        except StorageError:
            raise Refusal(
                503,
                *_STORAGE_DOWN,
                "the exchange could not be recorded; retry later",
                headers=self.unavailable_headers,
            ) from None

    def done(self, ctx: RequestContext, exchange: Exchange) -> None:
        """After the answer: the access log, and the exchange to the scorer (in the scoring
        thread, detached from the response)."""
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                "exchange",
                extra={
                    "event": "exchange",
                    "exchange_id": exchange.exchange_id,
                    "account_id": exchange.account_id,
                    "endpoint": exchange.endpoint,
                    "status": exchange.status,
                    "latency_ms": exchange.latency_ms,
                    "action": ctx.decision.action.value if ctx.decision else None,
                },
            )
        if self.scoring is not None:
            self.scoring.submit(exchange, asyncio.get_running_loop())
