"""Request ids and trace context: the middleware's ids, W3C traceparent parsing (Hypothesis),
OpenTelemetry spans with the SDK's in-memory exporter, and OTLP export to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillguard.gateway._http import Message, Receive, Scope, Send
from distillguard.gateway.tracing import (
    GatewayTracing,
    TracingMiddleware,
    current_request_id,
    outgoing_headers,
    parse_traceparent,
    record_fields,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_PARENT = "00f067aa0ba902b7"
CALLER_HEADER = f"00-{CALLER_TRACE}-{CALLER_PARENT}-01"


def test_parse_traceparent_valid_and_invalid() -> None:
    assert parse_traceparent(CALLER_HEADER) == (CALLER_TRACE, CALLER_PARENT, True)
    assert parse_traceparent(f"00-{CALLER_TRACE}-{CALLER_PARENT}-00") == (
        CALLER_TRACE,
        CALLER_PARENT,
        False,
    )
    # a later version may carry more fields
    assert parse_traceparent(f"01-{CALLER_TRACE}-{CALLER_PARENT}-01-extra") is not None
    for bad in (
        "",
        "garbage",
        f"ff-{CALLER_TRACE}-{CALLER_PARENT}-01",  # version ff is invalid
        f"00-{'0' * 32}-{CALLER_PARENT}-01",  # all-zero trace id
        f"00-{CALLER_TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{CALLER_TRACE.upper()}-{CALLER_PARENT}-01",  # upper case
        f"00-{CALLER_TRACE}-{CALLER_PARENT}-01-extra",  # version 00 has four fields
        f"01-{CALLER_TRACE}-{CALLER_PARENT}-01extra",
        f"00-{CALLER_TRACE[:-1]}-{CALLER_PARENT}-01",
    ):
        assert parse_traceparent(bad) is None, bad


@given(st.text(max_size=80))
def test_parse_traceparent_never_raises(value: str) -> None:
    got = parse_traceparent(value)
    if got is not None:
        trace_id, parent_id, _ = got
        assert len(trace_id) == 32 and len(parent_id) == 16
        assert trace_id in value and parent_id in value


@given(
    trace_id=st.binary(min_size=16, max_size=16).filter(any),
    parent=st.binary(min_size=8, max_size=8).filter(any),
    flags=st.integers(0, 255),
)
def test_parse_traceparent_round_trips(trace_id: bytes, parent: bytes, flags: int) -> None:
    header = f"00-{trace_id.hex()}-{parent.hex()}-{flags:02x}"
    assert parse_traceparent(header) == (trace_id.hex(), parent.hex(), bool(flags & 1))


class Probe:
    """An ASGI app that notes what the current request looks like from inside."""

    def __init__(self, status: int = 200) -> None:
        self.seen: list[dict[str, Any]] = []
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(
            {
                "request_id": current_request_id(),
                "outgoing": outgoing_headers(),
                "record": record_fields(),
            }
        )
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def serve_once(app: Any, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent


def response_header(sent: list[Message], name: bytes) -> bytes | None:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return dict(start["headers"]).get(name)


def test_ids_without_opentelemetry_continue_the_callers_trace() -> None:
    probe = Probe()
    app = TracingMiddleware(probe, GatewayTracing(tracer=None))
    sent = serve_once(
        app,
        [(b"traceparent", CALLER_HEADER.encode()), (b"x-request-id", b"client \x01id-7\n")],
    )
    seen = probe.seen[0]
    rid = seen["request_id"]
    assert rid is not None and rid.startswith("gx_") and len(rid) == 3 + 16 + 12
    # the same id answers the client, goes to the upstream and into the record
    assert response_header(sent, b"x-request-id") == rid.encode()
    assert seen["outgoing"]["x-request-id"] == rid
    trace_id, span_id, sampled = parse_traceparent(seen["outgoing"]["traceparent"]) or ("", "", 0)
    assert trace_id == CALLER_TRACE and span_id != CALLER_PARENT and sampled
    assert seen["record"] == {"dg_trace_id": CALLER_TRACE, "dg_client_request_id": "clientid-7"}
    # outside the request nothing is current
    assert current_request_id() is None and outgoing_headers() == {} and record_fields() == {}


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    probe = Probe()
    app = TracingMiddleware(probe, GatewayTracing(tracer=None))
    serve_once(app, [(b"traceparent", b"00-zz-yy-01")])
    serve_once(app, [])
    (a, b) = probe.seen
    assert a["record"]["dg_trace_id"] != b["record"]["dg_trace_id"]
    assert a["request_id"] != b["request_id"]
    assert "dg_client_request_id" not in a["record"]
    for s in (a, b):
        assert parse_traceparent(s["outgoing"]["traceparent"]) is not None


def test_opentelemetry_spans_with_the_sdk() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = GatewayTracing(tracer=provider.get_tracer("test"))
    probe = Probe(status=502)
    sent = serve_once(TracingMiddleware(probe, tracing), [(b"traceparent", CALLER_HEADER.encode())])
    (span,) = exporter.get_finished_spans()
    seen = probe.seen[0]
    assert span.name == "POST /v1/chat/completions"
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_PARENT
    assert span.attributes is not None
    assert span.attributes["distillguard.request_id"] == seen["request_id"]
    assert span.attributes["http.response.status_code"] == 502
    assert not span.status.is_ok
    # the upstream's parent is the gateway's span, in the caller's trace
    assert seen["outgoing"]["traceparent"] == (f"00-{CALLER_TRACE}-{span.context.span_id:016x}-01")
    assert response_header(sent, b"x-request-id") == seen["request_id"].encode()


def test_upstream_span_is_the_parent_of_the_upstream_call() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = GatewayTracing(tracer=provider.get_tracer("test"))
    headers: list[dict[str, str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with tracing.upstream_span(model="stub-1"):
            headers.append(outgoing_headers())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    serve_once(TracingMiddleware(app, tracing), [])
    upstream, server = exporter.get_finished_spans()
    assert upstream.name == "upstream" and upstream.parent is not None
    assert upstream.parent.span_id == server.context.span_id
    assert headers[0]["traceparent"].split("-")[2] == f"{upstream.context.span_id:016x}"


_OTLP_CHILD = textwrap.dedent(
    """
    import asyncio, os
    from opentelemetry import trace
    from distillguard.gateway.tracing import (
        GatewayTracing, TracingMiddleware, configure_otlp_from_environment)
    assert configure_otlp_from_environment()
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        pass
    mw = TracingMiddleware(app, GatewayTracing.from_environment())
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    asyncio.run(mw(scope, receive, send))
    trace.get_tracer_provider().shutdown()  # flushes the batch to the receiver
    """
)


def test_otlp_export_reaches_a_collector() -> None:
    """A span of a served request arrives, as OTLP/HTTP protobuf, at a receiver that this test
    runs (in place of an OpenTelemetry collector)."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    bodies: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            bodies.append((self.path, body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = dict(os.environ)
        env.pop("OTEL_SDK_DISABLED", None)
        env["OTEL_TRACES_EXPORTER"] = "otlp"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}"
        env["OTEL_SERVICE_NAME"] = "dg-test"
        done = subprocess.run(
            [sys.executable, "-c", _OTLP_CHILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        server.shutdown()
        thread.join()
    assert [p for p, _ in bodies] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(bodies[0][1])
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "dg-test"
    spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert [s.name for s in spans] == ["POST /v1/chat/completions"]
    attrs = {a.key: a.value for a in spans[0].attributes}
    assert attrs["distillguard.request_id"].string_value.startswith("gx_")
    assert attrs["http.response.status_code"].int_value == 200


def test_otlp_is_off_unless_asked() -> None:
    from distillguard.gateway.tracing import configure_otlp_from_environment

    saved = os.environ.pop("OTEL_TRACES_EXPORTER", None)
    try:
        assert configure_otlp_from_environment() is False
    finally:
        if saved is not None:
            os.environ["OTEL_TRACES_EXPORTER"] = saved


def test_disabled_by_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert GatewayTracing.from_environment().tracer is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    assert GatewayTracing.from_environment().tracer is not None


def test_the_request_id_reaches_the_upstream_and_is_the_recorded_exchange_id(
    tmp_path: Any,
) -> None:
    """Through the gateway: the X-Request-Id answered = the id sent to the upstream = the stored
    exchange's id; the caller's trace id and own request id are in the record's extra fields."""
    import httpx

    from distillguard.app import create_gateway
    from distillguard.gateway.agents import AgentFactory
    from distillguard.gateway.testing import BASE_URL, chat_body, make_settings
    from distillguard.gateway.upstream import OpenAIUpstream, stub_app
    from distillguard.store import open_store

    received: list[dict[str, str]] = []
    stub = stub_app()

    async def upstream_app(scope: Any, receive: Any, send: Any) -> None:
        received.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await stub(scope, receive, send)

    settings = make_settings(tmp_path, models=["stub-1"])
    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        transport=httpx.ASGITransport(app=upstream_app),
    )
    gw = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-trace")
    app = TracingMiddleware(gw, GatewayTracing(tracer=None))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, auth=agent.auth()
        ) as c:
            return await c.post(
                "/v1/chat/completions",
                json=chat_body("hi"),
                headers={"traceparent": CALLER_HEADER, "x-request-id": "client-42"},
            )

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid.startswith("gx_") and r.headers["x-distillguard-exchange-id"] == rid
    assert received[-1]["x-request-id"] == rid
    assert received[-1]["traceparent"].split("-")[1] == CALLER_TRACE
    store = open_store(settings.store_url)
    try:
        stored = store.get_exchange(rid)
    finally:
        store.close()
    assert stored is not None
    assert stored.exchange.extra["dg_trace_id"] == CALLER_TRACE
    assert stored.exchange.extra["dg_client_request_id"] == "client-42"
