"""Request ids and tracing: one id per request, carried to the upstream and into the record.

:class:`TracingMiddleware` wraps the gateway's ASGI app. For every HTTP request it

* makes the request id (``gx_`` + time + random: the id of the exchange record too) and answers
  it in the ``X-Request-Id`` response header; a client's own ``X-Request-Id`` is kept (cleaned,
  at most 128 printable characters) as ``dg_client_request_id`` in the record, never as the
  record's id, which must be unique;
* continues the caller's W3C trace (``traceparent``/``tracestate``, https://www.w3.org/TR/trace-context/)
  or starts one, and opens an OpenTelemetry server span ``POST /v1/chat/completions`` when
  ``opentelemetry-api`` is installed (extra ``otel``) and not disabled
  (``OTEL_SDK_DISABLED=true``); spans are exported by whatever tracer provider the process
  configured (:func:`configure_otlp_from_environment` sets one from the standard ``OTEL_*``
  variables when the SDK and an exporter are installed). Without OpenTelemetry the trace ids
  are still made and propagated, so the upstream's logs can be joined with the record;
* makes the request's :class:`RequestTrace` the current one (a context variable) for the code
  it calls: the upstream client adds :func:`outgoing_headers` to its HTTP request
  (``X-Request-Id`` and ``traceparent``), the recorder adds :func:`record_fields`
  (``dg_trace_id``, ``dg_client_request_id``) to the exchange's extra fields, and the pipeline
  uses :func:`current_request_id` as the exchange id.

Misfires: a trace id arriving in a malformed ``traceparent`` is ignored (a new trace starts, as
the W3C specification asks), so a caller with a broken tracer sees two traces, not one.
Outside a request (tests calling the core directly) :func:`current_request_id` is None and the
caller makes its own id.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from distillguard.gateway._http import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "GatewayTracing",
    "RequestTrace",
    "TracingMiddleware",
    "configure_otlp_from_environment",
    "current_request_id",
    "current_trace",
    "new_request_id",
    "outgoing_headers",
    "parse_traceparent",
    "record_fields",
]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
"""The header that carries the request id (response, upstream request)."""

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLIENT_ID = re.compile(r"[^\x21-\x7e]")
_current: ContextVar[RequestTrace | None] = ContextVar("distillguard_request_trace", default=None)


def new_request_id() -> str:
    """A new request id: ``gx_`` + 16 hex digits of nanoseconds + 12 random hex digits."""
    return f"gx_{time.time_ns():016x}{os.urandom(6).hex()}"


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_id, sampled)`` of a W3C ``traceparent``, or None if invalid.

    Version 00 must have exactly four fields; a later version may have more (they are
    ignored); version ``ff`` and all-zero ids are invalid.
    """
    value = value.strip()
    m = _TRACEPARENT.match(value)
    if m is None:
        return None
    version, trace_id, parent_id, flags = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    rest = value[m.end() :]
    if version == "00" and rest:
        return None
    if rest and not rest.startswith("-"):
        return None
    return trace_id, parent_id, bool(int(flags, 16) & 1)


@dataclass(slots=True)
class RequestTrace:
    """The ids of one request: its own, the trace it belongs to, and the client's."""

    request_id: str
    trace_id: str
    span_id: str
    sampled: bool = True
    tracestate: str | None = None
    client_request_id: str | None = None
    span: Any = field(default=None, repr=False)

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` naming this request's span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def upstream_headers(self) -> dict[str, str]:
        """Headers for the upstream request: the request id and the trace context."""
        headers = {REQUEST_ID_HEADER: self.request_id}
        injected = _otel_inject()
        if injected:
            headers.update(injected)
        else:
            headers["traceparent"] = self.traceparent
            if self.tracestate:
                headers["tracestate"] = self.tracestate
        return headers

    def record_fields(self) -> dict[str, str]:
        """Extra fields for the exchange record."""
        fields = {"dg_trace_id": self.trace_id}
        if self.client_request_id:
            fields["dg_client_request_id"] = self.client_request_id
        return fields


def current_trace() -> RequestTrace | None:
    """The request being served in this context, or None."""
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    trace = _current.get()
    return trace.request_id if trace is not None else None


def outgoing_headers() -> dict[str, str]:
    """Headers to add to a request sent on behalf of the current request ({} outside one)."""
    trace = _current.get()
    return trace.upstream_headers() if trace is not None else {}


def record_fields() -> dict[str, str]:
    """Extra fields for the current request's exchange record ({} outside one)."""
    trace = _current.get()
    return trace.record_fields() if trace is not None else {}


def _otel_inject() -> dict[str, str]:
    """The OpenTelemetry propagator's headers for the current context ({} if none valid)."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier if "traceparent" in carrier else {}


class GatewayTracing:
    """Makes :class:`RequestTrace` objects and their OpenTelemetry spans.

    Args:
        tracer: an OpenTelemetry tracer, or None for ids and propagation without spans.
    """

    def __init__(self, *, tracer: Any = None) -> None:
        self.tracer = tracer

    def __repr__(self) -> str:
        return f"GatewayTracing(opentelemetry={self.tracer is not None})"

    @classmethod
    def from_environment(cls) -> GatewayTracing:
        """Spans through OpenTelemetry when ``opentelemetry-api`` is installed and
        ``OTEL_SDK_DISABLED`` is not ``true``; ids and propagation only otherwise."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls()
        try:
            from opentelemetry import trace
        except ImportError:
            return cls()
        return cls(tracer=trace.get_tracer("distillguard.gateway"))

    @contextmanager
    def request(
        self, *, method: str, path: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> Iterator[RequestTrace]:
        """The trace of one request, current for the duration of the ``with`` block."""
        incoming: dict[str, str] = {}
        client_id = None
        for k, v in headers:
            name = k.decode("latin-1").lower()
            if name in ("traceparent", "tracestate"):
                incoming[name] = v.decode("latin-1")
            elif name == REQUEST_ID_HEADER:
                client_id = _CLIENT_ID.sub("", v.decode("latin-1"))[:128] or None
        parent = parse_traceparent(incoming.get("traceparent", ""))
        request_id = new_request_id()
        if self.tracer is None:
            trace = RequestTrace(
                request_id=request_id,
                trace_id=parent[0] if parent else os.urandom(16).hex(),
                span_id=os.urandom(8).hex(),
                sampled=parent[2] if parent else True,
                tracestate=incoming.get("tracestate") if parent else None,
                client_request_id=client_id,
            )
            token = _current.set(trace)
            try:
                yield trace
            finally:
                _current.reset(token)
            return
        with self._otel_span(method, path, incoming if parent else {}) as span:
            ctx = span.get_span_context()
            if ctx.is_valid:
                trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
                sampled = bool(ctx.trace_flags & 1)
            else:  # the API without an SDK and no caller's trace: make our own ids
                trace_id = parent[0] if parent else os.urandom(16).hex()
                span_id, sampled = os.urandom(8).hex(), parent[2] if parent else True
            trace = RequestTrace(
                request_id=request_id,
                trace_id=trace_id,
                span_id=span_id,
                sampled=sampled,
                tracestate=incoming.get("tracestate") if parent else None,
                client_request_id=client_id,
                span=span,
            )
            span.set_attribute("distillguard.request_id", request_id)
            token = _current.set(trace)
            try:
                yield trace
            finally:
                _current.reset(token)

    @contextmanager
    def _otel_span(self, method: str, path: str, carrier: dict[str, str]) -> Iterator[Any]:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent_ctx = propagate.extract(carrier) if carrier else None
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=parent_ctx,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            yield span

    @contextmanager
    def upstream_span(self, *, model: str) -> Iterator[None]:
        """A client span around one upstream call (its id becomes the upstream's parent)."""
        if self.tracer is None:
            yield
            return
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(
            "upstream", kind=SpanKind.CLIENT, attributes={"gen_ai.request.model": model}
        ):
            yield


class TracingMiddleware:
    """ASGI middleware: a :class:`RequestTrace` per HTTP request (see the module).

    Args:
        app: the wrapped ASGI app.
        tracing: how to make the traces (default :meth:`GatewayTracing.from_environment`).
    """

    def __init__(self, app: ASGIApp, tracing: GatewayTracing | None = None) -> None:
        self.app = app
        self.tracing = tracing if tracing is not None else GatewayTracing.from_environment()

    def __repr__(self) -> str:
        return f"TracingMiddleware({self.tracing!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; HTTP requests get a trace, other scopes pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracing.request(
            method=scope.get("method", "GET"),
            path=scope.get("path", ""),
            headers=scope.get("headers") or (),
        ) as trace:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message["headers"] = [
                        *message.get("headers", ()),
                        (REQUEST_ID_HEADER.encode(), trace.request_id.encode()),
                    ]
                    if trace.span is not None:
                        trace.span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            from opentelemetry.trace import Status, StatusCode

                            trace.span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_with_id)


def configure_otlp_from_environment() -> bool:
    """Install an OTLP-exporting tracer provider when ``OTEL_TRACES_EXPORTER`` is ``otlp``.

    Uses ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` (the endpoint
    from ``OTEL_EXPORTER_OTLP_ENDPOINT``, the service name from ``OTEL_SERVICE_NAME``, default
    ``distillguard-gateway``). Returns whether a provider was installed; logs why not.
    """
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() != "otlp":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        logger.warning(
            "OTEL_TRACES_EXPORTER=otlp but %s is not installed: no spans are exported "
            "(pip install 'distillguard[otel]' opentelemetry-exporter-otlp-proto-http)",
            exc.name,
        )
        return False
    service = os.environ.get("OTEL_SERVICE_NAME", "distillguard-gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
