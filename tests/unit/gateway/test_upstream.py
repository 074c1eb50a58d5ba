"""Upstreams: the stub, an OpenAI-compatible URL (a real ASGI server through httpx), failures."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from distillguard.errors import UpstreamError, UpstreamTimeoutError
from distillguard.gateway.upstream import (
    CircuitBreaker,
    CompletionRequest,
    CompletionResult,
    OpenAIUpstream,
    StubUpstream,
    stub_app,
)

CHAT = CompletionRequest(
    kind="chat", model="stub-1", messages=(("user", "hi there"),), max_tokens=8
)


def _state(breaker: CircuitBreaker) -> str:
    """The breaker's state, read through a call so that mypy does not narrow it across steps."""
    return breaker.state


def test_stub_is_deterministic_and_bounded() -> None:
    stub = StubUpstream(words=16)
    a, b = stub.answer(CHAT), stub.answer(CHAT)
    assert a == b
    assert a.completion_tokens == 8 and len(a.text.split()) == 8
    other = stub.answer(CompletionRequest(kind="chat", model="stub-1", messages=(("user", "x"),)))
    assert other.text != a.text


async def _collect(upstream: Any, request: CompletionRequest) -> tuple[str, CompletionResult]:
    parts: list[str] = []
    result: CompletionResult | None = None
    async for event in upstream.stream(request):
        if isinstance(event, CompletionResult):
            result = event
        else:
            parts.append(event)
    assert result is not None
    return "".join(parts), result


def test_stub_stream_matches_whole() -> None:
    stub = StubUpstream()
    text, result = asyncio.run(_collect(stub, CHAT))
    assert text == result.text == stub.answer(CHAT).text


def test_openai_upstream_against_a_real_app() -> None:
    up = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        transport=httpx.ASGITransport(app=stub_app()),
    )
    result = asyncio.run(up.complete(CHAT))
    assert result.text == StubUpstream().answer(CHAT).text
    assert result.completion_tokens == 8
    comp = CompletionRequest(kind="completion", model="stub-1", prompt="once upon", max_tokens=4)
    assert asyncio.run(up.complete(comp)).text == StubUpstream().answer(comp).text
    asyncio.run(up.aclose())


class Faulty:
    """An upstream app that fails in a chosen way; counts calls."""

    def __init__(self, mode: str, *, fail_first: int = 10**9) -> None:
        self.mode = mode
        self.calls = 0
        self.fail_first = fail_first
        self.ok = stub_app()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.calls > self.fail_first:
            await self.ok(scope, receive, send)
            return
        if self.mode == "garbage":
            body = b"<html>not json</html>"
            status = 200
        elif self.mode == "wrong_shape":
            body = b'{"choices": "nope"}'
            status = 200
        else:  # "500"
            body = b"boom"
            status = 503
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _upstream(app: Any, **kw: Any) -> OpenAIUpstream:
    return OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        transport=httpx.ASGITransport(app=app),
        backoff_s=0.001,
        **kw,
    )


@pytest.mark.parametrize("mode", ["garbage", "wrong_shape"])
def test_garbage_is_an_upstream_error(mode: str) -> None:
    up = _upstream(Faulty(mode), retries=0)
    with pytest.raises(UpstreamError) as info:
        asyncio.run(up.complete(CHAT))
    assert not isinstance(info.value, UpstreamTimeoutError)


def test_5xx_is_retried_then_succeeds() -> None:
    app = Faulty("500", fail_first=2)
    up = _upstream(app, retries=2)
    assert asyncio.run(up.complete(CHAT)).text
    assert app.calls == 3


def test_5xx_exhausts_retries() -> None:
    app = Faulty("500")
    up = _upstream(app, retries=2)
    with pytest.raises(UpstreamError, match="HTTP 503"):
        asyncio.run(up.complete(CHAT))
    assert app.calls == 3


def test_connection_refused_is_502_kind() -> None:
    up = OpenAIUpstream(
        base_url="http://127.0.0.1:1/v1", retries=1, backoff_s=0.001, connect_timeout_s=0.5
    )
    with pytest.raises(UpstreamError, match="cannot reach"):
        asyncio.run(up.complete(CHAT))


def test_slow_upstream_times_out() -> None:
    """A real socket that accepts and never answers: the read timeout fires."""

    async def run() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = OpenAIUpstream(base_url=f"http://127.0.0.1:{port}/v1", read_timeout_s=0.3, retries=0)
        try:
            async with asyncio.timeout(4):
                await up.complete(CHAT)
        finally:
            await up.aclose()
            server.close()

    with pytest.raises(UpstreamTimeoutError):
        asyncio.run(run())


def test_breaker_opens_and_half_opens() -> None:
    t = [0.0]
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=lambda: t[0])
    app = Faulty("garbage")
    up = _upstream(app, retries=0, breaker=breaker)
    for _ in range(3):
        with pytest.raises(UpstreamError):
            asyncio.run(up.complete(CHAT))
    assert breaker.state == "open" and not up.ready()
    with pytest.raises(UpstreamError, match="circuit is open"):
        asyncio.run(up.complete(CHAT))
    assert app.calls == 3  # refused without calling
    t[0] = 11.0
    assert _state(breaker) == "half_open"
    app.fail_first = 0  # recovered
    assert asyncio.run(up.complete(CHAT)).text
    assert _state(breaker) == "closed"


def test_breaker_half_open_failure_reopens() -> None:
    t = [0.0]
    b = CircuitBreaker(failures=1, reset_s=5, clock=lambda: t[0])
    b.failure()
    assert not b.allow()
    t[0] = 6
    assert b.allow()  # the one trial
    assert not b.allow()  # no second trial at the same time
    b.failure()
    assert b.state == "open"
