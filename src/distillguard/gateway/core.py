"""The request path of the OpenAI-compatible endpoints.

For ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``:

1. read the body, bounded in size (413) and time (408);
2. verify the passport and the RFC 9421 signature (:class:`~distillguard.passport.RequestVerifier`;
   refusals are its problem documents);
3. validate the OpenAI request (400) and the model (404);
4. decide the policy action from the online risk score and the analysts' overrides (block and
   re-verification refuse with 403/401 and are recorded);
5. apply the rate limits (GCRA per passport, account and aggregate keys; requests and prompt
   tokens at admission, completion tokens charged afterwards; 429 with ``Retry-After``);
6. call the upstream (502/504 on failure, recorded with the failure), watermark, plant canaries;
7. record the exchange (format v1, ``agent_id`` = the agent key thumbprint) in the store and the
   ledger and wait for the commit (``durability``), then answer; a stream's final chunk and
   ``[DONE]`` are sent only after the commit;
8. feed the online scorer and the alerter.
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
from typing import Any

import orjson

from distillguard.errors import StorageError, UpstreamError, UpstreamTimeoutError
from distillguard.gateway._http import (
    BodyError,
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_problem,
)
from distillguard.gateway.alerts import Alerter
from distillguard.gateway.metrics import GatewayMetrics
from distillguard.gateway.policy import (
    Action,
    ActionDecision,
    CanaryPlanting,
    NullScorer,
    OnlineScorer,
    Policy,
    insert_action,
    new_action_record,
)
from distillguard.gateway.ratelimit import Check, Limit, RateLimiter
from distillguard.gateway.recorder import ExchangeRecorder, RowWriter
from distillguard.gateway.upstream import (
    CompletionRequest,
    CompletionResult,
    Upstream,
    check_result,
    check_text,
    count_tokens,
)
from distillguard.passport import HttpRequest, RequestVerifier, VerifiedIdentity
from distillguard.records.model import Account, Exchange, Message
from distillguard.store import Store
from distillguard.store.base import Cursor

__all__ = [
    "AccountDirectory",
    "AggregateLimit",
    "GatewayCore",
    "LimitsConfig",
    "PostHocWatermarker",
    "ScoringWorker",
]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("distillguard.gateway.access")

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


class PostHocWatermarker:
    """Interface of a post-hoc text watermarker (``distillguard.watermark``'s lexical scheme).

    ``apply`` returns the watermarked text, or the text unchanged when it cannot carry the mark.
    """

    name = "none"

    def apply(self, text: str, *, payload: int) -> str:
        """Watermark ``text`` with ``payload``."""
        raise NotImplementedError


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


@dataclass(slots=True)
class _Ctx:
    """Everything known about one request."""

    endpoint: str
    started: float
    ts: datetime
    identity: VerifiedIdentity
    ip: str
    asn: int | None
    user_agent: str | None
    client_fingerprint: str | None
    payment: str | None = None
    decision: ActionDecision | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _new_exchange_id() -> str:
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


def _subnet24(ip: str) -> str | None:
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(parts[:3]) + ".0/24"
    if ":" in ip:  # IPv6: the /48
        groups = ip.split(":")
        return ":".join(groups[:3]) + "::/48"
    return None


def _first_header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if bytes(k) == name:
            return bytes(v)
    return None


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


class GatewayCore:
    """The OpenAI-compatible endpoints as a plain ASGI app (see the module documentation).

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
        watermarker: post-hoc watermark for closed upstreams (None: only generation-time).
        canaries: the canary planter.
        max_body_bytes, body_timeout_s: bounds on request bodies.
        trust_forwarded: take the client IP, ASN and fingerprint from the front proxy's
            ``X-Forwarded-For``, ``X-Client-ASN`` and ``X-Client-Fingerprint`` headers.
    """

    def __init__(
        self,
        *,
        verifier: RequestVerifier,
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
        self._models = frozenset(upstream.models())
        self._limit_cache: dict[tuple[int, int, float], tuple[Limit, Limit, Limit, Limit]] = {}
        self.scoring: ScoringWorker | None = (
            None if isinstance(scorer, NullScorer) else ScoringWorker(scorer, alerter=alerter)
        )

    def __repr__(self) -> str:
        return f"GatewayCore(upstream={self.upstream!r})"

    # -- entry --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request to an OpenAI endpoint."""
        path = scope["path"]
        started = time.perf_counter()
        status = 500
        endpoint = path
        sent = False

        async def tracking_send(message: Any) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                sent = True
            await send(message)

        try:
            await self._serve(scope, receive, tracking_send, path, started)
        except Exception:
            logger.exception("unhandled error on %s", path)
            if not sent:
                await send_problem(
                    tracking_send, 500, "internal_error", "Internal error", "see the gateway log"
                )
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)

    async def _reject(
        self,
        send: Send,
        status: int,
        code: str,
        title: str,
        detail: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.metrics.rejections.labels(code).inc()
        await send_problem(send, status, code, title, detail, headers=headers)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, path: str, started: float
    ) -> None:
        method = scope.get("method", "GET")
        if path == "/v1/models":
            if method != "GET":
                await self._reject(send, 405, "method_not_allowed", "Method not allowed", "GET")
                return
        elif method != "POST":
            await self._reject(send, 405, "method_not_allowed", "Method not allowed", "POST")
            return
        verified = await self._read_verified(scope, receive, send)
        if verified is None:
            return
        body, identity = verified
        if path == "/v1/models":
            await self._models_response(send)
            return
        kind = "chat" if path == "/v1/chat/completions" else "completion"
        try:
            request, stream, include_usage = self._parse(body, kind)
        except ValueError as exc:
            await self._reject(send, 400, "invalid_request", "Invalid request", str(exc))
            return
        if request.model not in self._models:
            await self._reject(
                send,
                404,
                "model_not_found",
                "Model not found",
                f"the model {request.model!r} is not served here",
            )
            return
        ctx = self._context(scope, path, identity, started)
        await self._complete(ctx, request, stream, include_usage, send)

    # -- parsing ------------------------------------------------------------------------------

    @staticmethod
    def _parse(body: bytes, kind: str) -> tuple[CompletionRequest, bool, bool]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ValueError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("'model' must be a non-empty string")
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens", 256))
        if max_tokens is None:
            max_tokens = 256
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not (1 <= max_tokens <= 1_000_000)
        ):
            raise ValueError("'max_tokens' must be an integer between 1 and 1000000")
        temperature = data.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (0 <= temperature <= 2)
        ):
            raise ValueError("'temperature' must be a number between 0 and 2")
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise ValueError("'stream' must be a boolean")
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if kind == "chat":
            messages = data.get("messages")
            if not isinstance(messages, list) or not messages or len(messages) > 4096:
                raise ValueError("'messages' must be a non-empty list")
            pairs: list[tuple[str, str]] = []
            for m in messages:
                if not isinstance(m, dict):
                    raise ValueError("each message must be an object")
                role, content = m.get("role"), m.get("content")
                if not isinstance(role, str) or role not in _ROLES:
                    raise ValueError(f"unknown message role {str(role)[:40]!r}")
                if isinstance(content, list):  # content parts: keep the text parts
                    content = "".join(
                        p.get("text", "")
                        for p in content
                        if isinstance(p, dict) and isinstance(p.get("text", ""), str)
                    )
                if content is None:
                    content = ""
                if not isinstance(content, str):
                    raise ValueError("message content must be a string or a list of parts")
                pairs.append((str(role), content))
            req = CompletionRequest(
                kind="chat",
                model=model,
                messages=tuple(pairs),
                max_tokens=max_tokens,
                temperature=float(temperature),
                raw=data,
            )
        else:
            prompt = data.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise ValueError("'prompt' must be a string")
            req = CompletionRequest(
                kind="completion",
                model=model,
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=float(temperature),
                raw=data,
            )
        return req, stream, include_usage

    async def _read_verified(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[bytes, VerifiedIdentity] | None:
        """Read the bounded body and verify the request's signature and passport.

        Returns the body and the verified identity, or None when the request was answered here
        (body refused, client gone, or a problem+json rejection). Every endpoint starts so.
        """
        try:
            body = await read_body(
                receive, scope, limit=self.max_body_bytes, timeout_s=self.body_timeout_s
            )
        except BodyError as exc:
            if exc.code == "client_disconnected":
                self.metrics.rejections.labels(exc.code).inc()
                return None
            await self._reject(send, exc.status, exc.code, "Request body refused", exc.detail)
            return None
        averify = getattr(self.verifier, "averify", None)
        if averify is not None:
            result = await averify(HttpRequest.from_asgi(scope), body)
        else:
            result = self.verifier.verify(HttpRequest.from_asgi(scope), body)
        if result.rejection is not None:
            problem = result.rejection.problem()
            headers = (
                [(b"www-authenticate", b'Signature realm="distillguard"')]
                if problem.status == 401
                else None
            )
            self.metrics.rejections.labels(problem.code).inc()
            await send_bytes(
                send,
                problem.status,
                problem.to_json(),
                content_type=b"application/problem+json",
                headers=[(b"cache-control", b"no-store"), *(headers or [])],
            )
            return None
        identity = result.identity
        assert identity is not None
        if self.trust_forwarded:
            fwd = _first_header(scope, b"x-forwarded-for")
            if fwd and _forwarded_ip(fwd) is None:
                await self._reject(
                    send,
                    400,
                    "invalid_forwarded_for",
                    "Invalid X-Forwarded-For",
                    "the first X-Forwarded-For element must be an IPv4 or IPv6 address",
                )
                return None
        return body, identity

    def _context(self, scope: Scope, path: str, identity: VerifiedIdentity, started: float) -> _Ctx:
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
        return _Ctx(
            endpoint=path,
            started=started,
            ts=datetime.now(UTC),
            identity=identity,
            ip=ip,
            asn=asn,
            user_agent=ua,
            client_fingerprint=fingerprint,
        )

    async def _models_response(self, send: Send) -> None:
        now = int(time.time())
        body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": now, "owned_by": "distillguard"}
                    for m in sorted(self._models)
                ],
            }
        )
        await send_bytes(send, 200, body)

    # -- limits -------------------------------------------------------------------------------

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
    def _aggregate_value(key: str, ctx: _Ctx) -> str | None:
        """The request's value of an aggregate key (computed only for configured keys)."""
        if key == "cluster":
            return ctx.decision.risk.cluster_id if ctx.decision else None
        if key == "payment":
            return ctx.payment
        if key == "subnet24":
            return _subnet24(ctx.ip)
        if key == "asn":
            return str(ctx.asn) if ctx.asn is not None else None
        if key == "client_fingerprint":
            return ctx.client_fingerprint
        return None

    def _checks(self, ctx: _Ctx, prompt_tokens: int) -> tuple[list[Check], list[Check]]:
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

    # -- the exchange -------------------------------------------------------------------------

    def _exchange(
        self,
        ctx: _Ctx,
        request: CompletionRequest,
        *,
        status: int,
        result: CompletionResult | None,
        text: str | None,
    ) -> Exchange:
        identity = ctx.identity
        if request.kind == "chat":
            messages = tuple(Message(role=r, content=c) for r, c in request.messages)
        else:
            messages = (Message(role="user", content=request.prompt),)
        extra = dict(ctx.extra)
        if ctx.decision is not None and ctx.decision.action != Action.ALLOW:
            extra["dg_action"] = ctx.decision.action.value
            extra["dg_action_reason"] = ctx.decision.reason
        from types import MappingProxyType

        return Exchange(
            exchange_id=_new_exchange_id(),
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
            messages=messages,
            response=text,
            reasoning=result.reasoning if result else None,
            prompt_tokens=result.prompt_tokens if result else count_tokens(request.prompt_text),
            completion_tokens=result.completion_tokens if result else 0,
            status=status,
            latency_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
            extra=MappingProxyType(extra),
        )

    def _rows(self, ctx: _Ctx, exchange_id: str) -> Sequence[RowWriter]:
        decision = ctx.decision
        if decision is None or (decision.action == Action.ALLOW and decision.source == "policy"):
            return ()
        record = new_action_record(
            account_id=ctx.identity.account_id, exchange_id=exchange_id, decision=decision
        )
        self.metrics.actions.labels(decision.action.value, decision.source).inc()

        def write(store: Store, cur: Cursor) -> None:
            insert_action(store, cur, record)

        return (write,)

    async def _record(self, ctx: _Ctx, exchange: Exchange) -> None:
        p = ctx.identity.passport
        account = Account(account_id=p.account_id, created_at=ctx.ts, org_id=p.org_id)
        await self.recorder.record(
            exchange, account=account, rows=self._rows(ctx, exchange.exchange_id)
        )

    def _after(self, ctx: _Ctx, exchange: Exchange) -> None:
        """Feed the scorer and the alerter (in the scoring thread, detached from the response)."""
        if self.scoring is not None:
            self.scoring.submit(exchange, asyncio.get_running_loop())

    async def _admit(
        self, ctx: _Ctx, request: CompletionRequest, *, prompt_text: str, send: Send
    ) -> list[Check] | None:
        """The policy decision (a refusal is recorded and answered) and the rate limits.

        Returns the token checks to charge the completion to, or None when the request was
        answered here (blocked, re-verification required, rate limited, or a backend down).
        Shared by every endpoint that reaches an upstream (text and images).
        """
        account_id = ctx.identity.account_id
        decision = self.policy.decide(account_id, self.scorer.score(account_id))
        ctx.decision = decision
        if decision.blocks:
            blocked = decision.action == Action.BLOCK
            status = 403 if blocked else 401
            code = "account_blocked" if blocked else "reverification_required"
            exchange = self._exchange(ctx, request, status=status, result=None, text=None)
            try:
                await self._record(ctx, exchange)
            except StorageError:
                await self._reject(
                    send,
                    503,
                    "storage_unavailable",
                    "Storage unavailable",
                    "the exchange could not be recorded; retry later",
                )
                return None
            await self._reject(
                send,
                status,
                code,
                "Account blocked" if blocked else "Re-verification required",
                "this account is blocked"
                if blocked
                else "renew the passport (re-verify the account) to continue",
            )
            return None
        if any(a.key == "payment" for a in self.limits.aggregates):
            ctx.payment = await self.accounts.payment(account_id)
        reqs, toks = self._checks(ctx, count_tokens(prompt_text))
        try:
            verdict = self.limiter.acquire([*reqs, *toks])
        except StorageError:
            await self._reject(
                send,
                503,
                "rate_limiter_unavailable",
                "Rate limiter unavailable",
                "rate limits cannot be checked; retry later",
            )
            return None
        if not verdict.allowed:
            retry = max(1, math.ceil(verdict.retry_after_s))
            await self._reject(
                send,
                429,
                "rate_limited",
                "Too many requests",
                f"limited by {verdict.limited_by}; retry after {retry} s",
                headers=[(b"retry-after", str(retry).encode())],
            )
            return None
        return toks

    async def _complete(
        self,
        ctx: _Ctx,
        request: CompletionRequest,
        stream: bool,
        include_usage: bool,
        send: Send,
    ) -> None:
        toks = await self._admit(ctx, request, prompt_text=request.prompt_text, send=send)
        if toks is None:
            return
        decision = ctx.decision
        assert decision is not None
        if decision.payload is not None:
            request = CompletionRequest(
                kind=request.kind,
                model=request.model,
                messages=request.messages,
                prompt=request.prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                payload=decision.payload,
                raw=request.raw,
            )
        if stream:
            await self._stream(ctx, request, include_usage, send, toks)
        else:
            await self._whole(ctx, request, send, toks)

    def _finish_text(self, ctx: _Ctx, request: CompletionRequest, result: CompletionResult) -> str:
        text = result.text
        decision = ctx.decision
        if decision is not None and decision.payload is not None:
            applied = result.watermarked
            scheme = "generation" if applied else None
            if not applied and self.watermarker is not None:
                text = self.watermarker.apply(text, payload=decision.payload)
                applied = True
                scheme = self.watermarker.name
            ctx.extra["dg_watermark"] = {
                "payload": decision.payload,
                "applied": applied,
                "scheme": scheme,
            }
        if decision is not None and decision.plants_canary and self.canaries is not None:
            text, canary_id = self.canaries.plant(text, ctx.identity.account_id)
            if canary_id is not None:
                ctx.extra["dg_canary"] = canary_id
        return text

    def _charge_completion(self, toks: list[Check], completion_tokens: int) -> None:
        if completion_tokens <= 0:
            return
        try:
            self.limiter.charge(
                [Check(c.name, c.key, c.limit, float(completion_tokens)) for c in toks]
            )
        except StorageError:
            logger.warning("could not charge completion tokens: rate limiter unavailable")

    async def _upstream_failed(
        self,
        ctx: _Ctx,
        request: CompletionRequest,
        exc: UpstreamError,
        send: Send | None,
        *,
        sent: str | None = None,
    ) -> None:
        """Record the failed exchange (``sent``: the text already streamed) and answer 502/504."""
        timeout = isinstance(exc, UpstreamTimeoutError)
        status = 504 if timeout else 502
        ctx.extra["dg_error"] = exc.message
        exchange = self._exchange(ctx, request, status=status, result=None, text=sent or None)
        try:
            await self._record(ctx, exchange)
        except StorageError:
            logger.error("could not record a failed exchange")
        if send is not None:
            await self._reject(
                send,
                status,
                "upstream_timeout" if timeout else "upstream_error",
                "Upstream timeout" if timeout else "Upstream error",
                exc.message,
            )
        else:
            self.metrics.rejections.labels(
                "upstream_timeout" if timeout else "upstream_error"
            ).inc()

    async def _whole(
        self, ctx: _Ctx, request: CompletionRequest, send: Send, toks: list[Check]
    ) -> None:
        t0 = time.perf_counter()
        try:
            result = check_result(await self.upstream.complete(request))
        except Exception as exc:  # whatever the upstream does, a recorded 502/504
            self.metrics.upstream.observe(time.perf_counter() - t0)
            await self._upstream_failed(ctx, request, _upstream_error(exc), send)
            return
        self.metrics.upstream.observe(time.perf_counter() - t0)
        text = self._finish_text(ctx, request, result)
        exchange = self._exchange(ctx, request, status=200, result=result, text=text)
        try:
            await self._record(ctx, exchange)
        except StorageError:
            await self._reject(
                send,
                503,
                "storage_unavailable",
                "Storage unavailable",
                "the exchange could not be recorded; retry later",
            )
            return
        self._charge_completion(toks, result.completion_tokens)
        created = int(ctx.ts.timestamp())
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
        if request.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            body = {
                "id": "chatcmpl-" + exchange.exchange_id,
                "object": "chat.completion",
                "created": created,
                "model": request.model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": result.finish_reason}
                ],
                "usage": usage,
            }
        else:
            body = {
                "id": "cmpl-" + exchange.exchange_id,
                "object": "text_completion",
                "created": created,
                "model": request.model,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "finish_reason": result.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        await send_bytes(
            send,
            200,
            orjson.dumps(body),
            headers=[(b"x-distillguard-exchange-id", exchange.exchange_id.encode())],
        )
        self._log(ctx, exchange)
        self._after(ctx, exchange)

    def _log(self, ctx: _Ctx, exchange: Exchange) -> None:
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

    async def _stream(
        self,
        ctx: _Ctx,
        request: CompletionRequest,
        include_usage: bool,
        send: Send,
        toks: list[Check],
    ) -> None:
        chat = request.kind == "chat"
        cid = ("chatcmpl-" if chat else "cmpl-") + _new_exchange_id()
        created = int(ctx.ts.timestamp())
        obj = "chat.completion.chunk" if chat else "text_completion"
        # When the answer is rewritten afterwards (post-hoc watermark, canary), buffer it.
        decision = ctx.decision
        rewrite = decision is not None and (
            decision.plants_canary
            or (decision.payload is not None and self.upstream.name != "local")
        )

        def chunk(delta: str | None, finish: str | None, *, role: bool = False) -> bytes:
            if chat:
                d: dict[str, Any] = {}
                if role:
                    d["role"] = "assistant"
                if delta is not None:
                    d["content"] = delta
                choice: dict[str, Any] = {"index": 0, "delta": d, "finish_reason": finish}
            else:
                choice = {
                    "index": 0,
                    "text": delta or "",
                    "finish_reason": finish,
                    "logprobs": None,
                }
            payload = {
                "id": cid,
                "object": obj,
                "created": created,
                "model": request.model,
                "choices": [choice],
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        started_response = False
        t0 = time.perf_counter()

        async def start() -> None:
            nonlocal started_response
            if not started_response:
                started_response = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no"),
                        ],
                    }
                )
                if chat:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": chunk("", None, role=True),
                            "more_body": True,
                        }
                    )

        result: CompletionResult | None = None
        sent: list[str] = []
        try:
            async for event in self.upstream.stream(request):
                if isinstance(event, CompletionResult):
                    result = check_result(event)
                    break
                delta = check_text(event, "a delta of the upstream stream")
                if not rewrite:
                    body = chunk(delta, None)
                    await start()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    sent.append(delta)
            if result is None:
                raise UpstreamError("the upstream stream ended without a result")
        except OSError:  # the client went away mid-stream
            return
        except Exception as exc:  # whatever the upstream does, a recorded 502/504
            self.metrics.upstream.observe(time.perf_counter() - t0)
            failure = _upstream_error(exc)
            await self._upstream_failed(
                ctx, request, failure, None if started_response else send, sent="".join(sent)
            )
            if started_response:
                err = orjson.dumps(
                    {
                        "error": {
                            "message": failure.message,
                            "type": "upstream_error",
                            "code": failure.code,
                        }
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + err + b"\n\n",
                        "more_body": False,
                    }
                )
            return
        self.metrics.upstream.observe(time.perf_counter() - t0)
        text = self._finish_text(ctx, request, result)
        exchange = self._exchange(ctx, request, status=200, result=result, text=text)
        exchange_id = exchange.exchange_id
        try:
            await self._record(ctx, exchange)
        except StorageError:
            if not started_response:
                await self._reject(
                    send,
                    503,
                    "storage_unavailable",
                    "Storage unavailable",
                    "the exchange could not be recorded; retry later",
                )
            else:
                err = orjson.dumps(
                    {
                        "error": {
                            "message": "the exchange could not be recorded",
                            "type": "storage_unavailable",
                        }
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + err + b"\n\n",
                        "more_body": False,
                    }
                )
            return
        self._charge_completion(toks, result.completion_tokens)
        await start()
        tail = b""
        if rewrite:
            tail += chunk(text, None)
        tail += chunk(None if chat else "", result.finish_reason)
        if include_usage:
            usage = {
                "id": cid,
                "object": obj,
                "created": created,
                "model": request.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "total_tokens": result.prompt_tokens + result.completion_tokens,
                },
            }
            tail += b"data: " + orjson.dumps(usage) + b"\n\n"
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        logger.debug("streamed exchange %s", exchange_id)
        self._log(ctx, exchange)
        self._after(ctx, exchange)
