"""The vocabulary of the gateway's request pipeline: refusals, the request context, handlers.

Every request to a model endpoint goes through the same stages, offered by
:class:`~distillguard.gateway.core.GatewayCore` (the :class:`Pipeline`):

1. **read and verify** (:meth:`Pipeline.read_verified`): the body, bounded in size and time, and
   the passport and RFC 9421 signature;
2. **admit** (:meth:`Pipeline.admit`): the policy action (block and re-verification are recorded
   and refused) and the rate limits;
3. **call upstream**: the handler's own model call (text, images);
4. **finish** (:meth:`Pipeline.finish_text`): watermark and canary;
5. **record** (:meth:`Pipeline.record`): the exchange in the store and the ledger, before the
   answer; then :meth:`Pipeline.done` feeds the access log and the online scorer.

A stage that refuses raises :class:`Refusal`; nothing else sends an error. One place,
:meth:`Pipeline.serve`, turns a refusal into the response in the endpoint's own error shape
(:class:`ErrorShape`: OpenAI's ``{"error": {...}}``, Anthropic's ``{"type": "error", ...}``, or an
RFC 9457 problem document) and counts it in the metrics. A refusal raised after a stream has
started becomes the shape's last stream event instead.

A :class:`Handler` is one endpoint (chat completions, completions, models, images, Anthropic
messages): its path, method and error shape, and :meth:`Handler.handle`, which parses the
verified body and drives the stages above.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from distillguard.gateway._http import Receive, Scope, Send, problem_body

if TYPE_CHECKING:
    from distillguard.gateway.policy import ActionDecision
    from distillguard.gateway.ratelimit import Check
    from distillguard.gateway.upstream import CompletionRequest, CompletionResult, Upstream
    from distillguard.passport import VerifiedIdentity
    from distillguard.records import Exchange

__all__ = [
    "PROBLEM_SHAPE",
    "Admission",
    "ErrorShape",
    "Handler",
    "Pipeline",
    "ProblemShape",
    "Refusal",
    "RequestContext",
    "UpstreamReply",
    "complete_whole",
]


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """An error answer of the upstream, passed on to the client as it came.

    Attributes:
        status: the upstream's HTTP status.
        body: its body, unchanged.
        content_type: its content type.
    """

    status: int
    body: bytes
    content_type: bytes = b"application/json"


class Refusal(Exception):  # noqa: N818 - a refusal is not an error of the gateway
    """The request is answered with an error (the one exception of the request path).

    Args:
        status: HTTP status.
        code: a stable machine-readable code (``rate_limited``, ``upstream_error``, ...); the
            metrics count refusals by it.
        title: a short human title.
        detail: what happened and what to do.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
        upstream: the upstream's own error answer, passed on unchanged where the endpoint's
            shape allows (OpenAI endpoints in front of an OpenAI-compatible upstream).
        silent: counted, but nothing is sent (the client went away).
    """

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        upstream: UpstreamReply | None = None,
        silent: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers
        self.upstream = upstream
        self.silent = silent

    def __repr__(self) -> str:
        return f"Refusal({self.status}, {self.code!r})"


class ErrorShape(Protocol):
    """How an API writes its errors."""

    def render(self, refusal: Refusal) -> tuple[bytes, bytes]:
        """``(content_type, body)`` of the error response."""
        ...

    def stream_event(self, refusal: Refusal) -> bytes:
        """The last server-sent event of a stream that fails after it started."""
        ...


class ProblemShape:
    """RFC 9457 problem documents (``application/problem+json``): the gateway's own APIs."""

    def __repr__(self) -> str:
        return "ProblemShape()"

    def render(self, refusal: Refusal) -> tuple[bytes, bytes]:
        """The problem document."""
        return b"application/problem+json", problem_body(
            refusal.status, refusal.code, refusal.title, refusal.detail
        )

    def stream_event(self, refusal: Refusal) -> bytes:
        """The problem document as one ``data:`` event."""
        return b"data: " + self.render(refusal)[1] + b"\n\n"


PROBLEM_SHAPE = ProblemShape()
"""The problem-document shape."""


@dataclass(slots=True)
class RequestContext:
    """Everything known about one request once it is verified.

    ``request_id`` is also the id of its exchange record and of its answer. ``decision`` is set
    by :meth:`Pipeline.admit`; ``extra`` collects the fields recorded in the exchange's
    ``extra`` (watermark, canary, tool calls, errors).
    """

    endpoint: str
    started: float
    ts: datetime
    identity: VerifiedIdentity
    request_id: str
    ip: str
    asn: int | None
    user_agent: str | None
    client_fingerprint: str | None
    payment: str | None = None
    decision: ActionDecision | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return round((time.perf_counter() - self.started) * 1000, 3)


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: the token checks its completion is charged to afterwards, and the
    account's watermark payload when the policy asks for one (for the upstream's request)."""

    token_checks: tuple[Check, ...]
    payload: int | None = None


class Handler(Protocol):
    """One endpoint on the pipeline.

    Attributes:
        path: the full request path served (``/v1/chat/completions``); another path under the
            handler's mount is a 404.
        method: ``POST`` or ``GET``.
        shape: how the endpoint writes errors.
    """

    path: str
    method: str
    shape: ErrorShape

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        """Answer one verified request; raise :class:`Refusal` to refuse it."""
        ...


class Pipeline(Protocol):
    """The stages a handler drives (implemented by :class:`~distillguard.gateway.core.GatewayCore`).

    Each stage that can refuse raises :class:`Refusal`.
    """

    async def serve(self, scope: Scope, receive: Receive, send: Send, handler: Handler) -> None:
        """Run ``handler`` for one request: method, verification, context, refusals, metrics."""
        ...

    async def admit(
        self, ctx: RequestContext, request: CompletionRequest, *, prompt_text: str
    ) -> Admission:
        """The policy decision (a refusal is recorded) and the rate limits."""
        ...

    async def upstream_failed(
        self, ctx: RequestContext, request: CompletionRequest, exc: Exception, *, sent: str = ""
    ) -> Refusal:
        """Record a failed upstream call (``sent``: text already streamed); the refusal to raise."""
        ...

    def rewrites(self, ctx: RequestContext, *, generation_watermark: bool) -> bool:
        """Whether :meth:`finish_text` may change the answer (a stream must then be buffered)."""
        ...

    def finish_text(
        self, ctx: RequestContext, text: str, *, watermarked: bool, canary: bool = True
    ) -> str:
        """``text`` with the account's watermark (unless the upstream ``watermarked`` it) and,
        with ``canary``, a canary, where the policy asks for them."""
        ...

    def exchange(
        self,
        ctx: RequestContext,
        request: CompletionRequest,
        *,
        status: int,
        result: CompletionResult | None,
        text: str | None,
    ) -> Exchange:
        """The exchange record of this request."""
        ...

    async def record(self, ctx: RequestContext, exchange: Exchange) -> None:
        """Store ``exchange`` and its ledger leaf (503 refusal when the store is down)."""
        ...

    def charge(self, admission: Admission, completion_tokens: int) -> None:
        """Charge the completion's tokens to the admitted request's token limits."""
        ...

    def done(self, ctx: RequestContext, exchange: Exchange) -> None:
        """After the answer: the access log and the online scorer."""
        ...

    def observe_upstream(self, seconds: float) -> None:
        """Count one upstream call's duration."""
        ...


async def complete_whole(
    pipeline: Pipeline, ctx: RequestContext, request: CompletionRequest, upstream: Upstream
) -> CompletionResult:
    """Ask ``upstream`` for a whole (not streamed) answer: timed into the upstream metric, checked
    (:func:`~distillguard.gateway.upstream.check_result`), and any failure recorded and raised as
    the pipeline's refusal (the API shapes' handlers share it).

    Raises:
        Refusal: the upstream failed, timed out or gave an answer the gateway cannot store.
    """
    from distillguard.gateway.upstream import check_result

    t0 = time.perf_counter()
    try:
        result = check_result(await upstream.complete(request))
    except Exception as exc:  # whatever the upstream does, a recorded refusal
        pipeline.observe_upstream(time.perf_counter() - t0)
        raise await pipeline.upstream_failed(ctx, request, exc) from None
    pipeline.observe_upstream(time.perf_counter() - t0)
    return result
