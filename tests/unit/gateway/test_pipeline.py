"""The request pipeline: one place for refusals, routing with fallback, the wire parsers on bad
input, the per-network limit key (issue 20: one ``network_of``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.app import create_gateway
from distillguard.errors import UpstreamError
from distillguard.gateway import Gateway
from distillguard.gateway._anthropic_wire import to_chat, tool_input
from distillguard.gateway._http import Send
from distillguard.gateway._openai_wire import parse_chat, parse_completion
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.pipeline import PROBLEM_SHAPE, Refusal, RequestContext
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.gateway.upstream import (
    CircuitBreaker,
    CompletionRequest,
    OpenAIUpstream,
    Route,
    RoutedUpstream,
    StubUpstream,
    UpstreamHTTPError,
    retry_after_s,
)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[Gateway, AgentFactory]]:
    settings = make_settings(tmp_path)
    gateway = create_gateway(settings)
    try:
        yield gateway, AgentFactory.from_settings(settings)
    finally:
        gateway.close_sync()


class Teapot:
    """A handler that refuses, before or after its stream started."""

    method = "POST"
    shape = PROBLEM_SHAPE

    def __init__(self, path: str, *, after_start: bool) -> None:
        self.path = path
        self.after_start = after_start

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        if self.after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        raise Refusal(418, "teapot", "I am a teapot", f"refused {ctx.identity.account_id}")


def _metric(gateway: Gateway, line: str) -> float:
    for row in gateway.metrics.exposition().decode().splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def test_a_refusal_is_answered_in_the_handlers_shape_and_counted_once(gw: Any) -> None:
    gateway, agents = gw
    gateway.core.add_handler(Teapot("/v1/teapot", after_start=False))
    gateway.core.add_handler(Teapot("/v1/teapot-stream", after_start=True))
    agent = agents.issue("acct-t")

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client(gateway, agent) as c:
            return await c.post("/v1/teapot", json={}), await c.post("/v1/teapot-stream", json={})

    before, stream = asyncio.run(go())
    assert before.status_code == 418
    assert before.headers["content-type"] == "application/problem+json"
    assert before.json()["code"] == "teapot" and before.json()["detail"] == "refused acct-t"
    assert stream.status_code == 200
    last = stream.text.split("\n\n")[-2]
    assert json.loads(last.removeprefix("data: "))["code"] == "teapot"
    counted = 'distillguard_gateway_rejections_total{reason="teapot"}'
    assert _metric(gateway, counted) == 2.0


def test_wrong_method_is_refused_with_allow(gw: Any) -> None:
    gateway, agents = gw

    async def go() -> httpx.Response:
        async with client(gateway, agents.issue("acct-m")) as c:
            return await c.get("/v1/chat/completions")

    r = asyncio.run(go())
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_compressed_ipv6_clients_share_their_48(tmp_path: Path) -> None:
    """Two spellings of addresses in one /48 hit one per-network limit (issue 20's IPv6 bug:
    the old key of 2001:db8::1 was '2001:db8:::/48')."""
    settings = make_settings(
        tmp_path,
        trust_forwarded_for=True,
        aggregate_limits=[{"key": "subnet24", "requests_per_minute": 1, "burst": 1}],
    )
    gateway = create_gateway(settings)
    agents = AgentFactory.from_settings(settings)

    async def go() -> list[httpx.Response]:
        out = []
        async with (
            client(gateway, agents.issue("acct-6a")) as a,
            client(gateway, agents.issue("acct-6b")) as b,
        ):
            out.append(
                await a.post(
                    "/v1/chat/completions",
                    json=chat_body("a"),
                    headers={"x-forwarded-for": "2001:db8::1"},
                )
            )
            out.append(
                await b.post(
                    "/v1/chat/completions",
                    json=chat_body("b"),
                    headers={"x-forwarded-for": "2001:0DB8:0:0::7"},
                )
            )
            out.append(
                await b.post(
                    "/v1/chat/completions",
                    json=chat_body("c"),
                    headers={"x-forwarded-for": "2001:db9::7"},
                )
            )
        return out

    try:
        first, same48, other48 = asyncio.run(go())
    finally:
        gateway.close_sync()
    assert first.status_code == 200
    assert same48.status_code == 429 and "subnet24" in same48.json()["error"]["message"]
    assert other48.status_code == 200


# -- routing --------------------------------------------------------------------------------------


def _answering(status: int, body: bytes = b"{}", headers: Any = ()) -> OpenAIUpstream:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    return OpenAIUpstream(
        base_url="http://u.test/v1",
        models=["m"],
        retries=0,
        breaker=CircuitBreaker(failures=100),
        transport=httpx.ASGITransport(app=app),
        name=f"http-{status}",
    )


def _ask(upstream: RoutedUpstream, model: str, *, stream: bool = False) -> Any:
    request = CompletionRequest(kind="chat", model=model, messages=(("user", "hi"),))

    async def go() -> Any:
        if stream:
            return [e async for e in upstream.stream(request)]
        return await upstream.complete(request)

    return asyncio.run(go())


@pytest.mark.parametrize("failing", [503, 429])
def test_a_route_falls_back_when_its_first_upstream_fails(failing: int) -> None:
    routed = RoutedUpstream(
        [Route(models=("m",), upstreams=(_answering(failing), StubUpstream(models=["m"])))]
    )
    assert (
        _ask(routed, "m").text
        == StubUpstream()
        .answer(CompletionRequest(kind="chat", model="m", messages=(("user", "hi"),)))
        .text
    )
    events = _ask(routed, "m", stream=True)
    assert events[-1].text and isinstance(events[0], str)


def test_a_4xx_is_final_and_routes_pick_by_model() -> None:
    err = json.dumps({"error": {"message": "bad", "type": "invalid_request_error"}}).encode()
    stub_a, stub_b = StubUpstream(models=["a-1"], words=3), StubUpstream(models=["b-1"], words=5)
    routed = RoutedUpstream(
        [
            Route(models=("bad",), upstreams=(_answering(400, err), stub_a)),
            Route(models=("a-*",), upstreams=(stub_a,)),
            Route(models=("b-1",), upstreams=(stub_b,), model="b-renamed"),
        ]
    )
    with pytest.raises(UpstreamHTTPError) as info:
        _ask(routed, "bad")
    assert info.value.status == 400 and info.value.body == err
    assert len(_ask(routed, "a-anything").text.split()) == 3
    assert len(_ask(routed, "b-1").text.split()) == 5
    assert routed.models() == ["bad", "b-1"]
    with pytest.raises(UpstreamHTTPError) as missing:
        _ask(routed, "zzz")
    assert missing.value.status == 404


def test_every_upstream_failing_raises_the_last_failure() -> None:
    routed = RoutedUpstream([Route(models=("*",), upstreams=(_answering(503), _answering(502)))])
    with pytest.raises(UpstreamError) as info:
        _ask(routed, "m")
    assert isinstance(info.value, UpstreamHTTPError) and info.value.status == 502


def test_a_429_cools_the_upstream_down_for_its_retry_after() -> None:
    now = [1000.0]
    upstream = _answering(429, b'{"error": {"message": "slow"}}', [(b"retry-after", b"30")])
    upstream.breaker = CircuitBreaker(clock=lambda: now[0])
    calls = []
    routed = RoutedUpstream([Route(models=("m",), upstreams=(upstream,))])
    for _ in range(2):
        with pytest.raises(UpstreamHTTPError) as info:
            _ask(routed, "m")
        calls.append(info.value)
    assert calls[0].retry_after == 30.0 and calls[0].body == b'{"error": {"message": "slow"}}'
    assert calls[1].retry_after == 30.0 and b"asked to wait" in calls[1].body  # not sent
    now[0] += 31
    with pytest.raises(UpstreamHTTPError) as again:
        _ask(routed, "m")
    assert again.value.body == b'{"error": {"message": "slow"}}'  # the upstream was asked again


# -- parsers on bad input -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"]), "content": _json}
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "messages",
                "max_tokens",
                "system",
                "tools",
                "tool_choice",
                "stream",
                "stop_sequences",
                "temperature",
                "top_p",
                "metadata",
                "top_k",
            ]
        ),
        _json | _messages,
        max_size=8,
    ),
    model=st.sampled_from([None, "m"]),
    messages=st.none() | _messages,
)
def test_the_anthropic_translation_refuses_bad_input_with_value_error_only(
    body: dict[str, Any], model: str | None, messages: Any
) -> None:
    if model is not None:
        body["model"] = model
    if messages is not None:
        body["messages"] = messages
    try:
        chat, stream = to_chat(body)
    except ValueError:
        return
    request, _, _ = parse_chat(chat)  # what it makes is a valid chat request
    assert request.model == body["model"] and isinstance(stream, bool)
    assert chat["max_tokens"] == body["max_tokens"]


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(
            ["model", "messages", "prompt", "max_tokens", "temperature", "stream", "tools"]
        ),
        _json | _messages,
    )
)
def test_the_openai_parsers_refuse_bad_input_with_value_error_only(body: dict[str, Any]) -> None:
    for parse in (parse_chat, parse_completion):
        try:
            request, stream, usage = parse(body)
        except ValueError:
            continue
        assert request.raw is body and isinstance(stream, bool) and isinstance(usage, bool)
        assert request.max_tokens is None or 1 <= request.max_tokens <= 1_000_000


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    seconds = retry_after_s(value, now=0.0)
    assert seconds is None or seconds >= 0


def test_retry_after_forms() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_s("soon") is None and retry_after_s("") is None


@given(st.text(max_size=30))
def test_tool_input_is_always_an_object(arguments: str) -> None:
    value = tool_input(arguments)
    assert isinstance(value, dict)


def test_routes_from_the_configuration_fall_back_through_the_gateway(tmp_path: Path) -> None:
    """[gateway.upstreams] + [[gateway.routes]]: the primary answers 503, the backup answers."""
    from distillguard.gateway.upstream import routed_upstream, stub_app

    async def down(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    settings = make_settings(
        tmp_path,
        models=["chat-1"],
        upstream_retries=0,
        upstreams={"primary": {"url": "http://a.test/v1"}, "backup": {"url": "http://b.test/v1"}},
        routes=[{"models": ["chat-*"], "upstreams": ["primary", "backup"], "model": "stub-1"}],
    )
    upstream = routed_upstream(
        settings.gateway,
        transports={
            "primary": httpx.ASGITransport(app=down),
            "backup": httpx.ASGITransport(app=stub_app()),
        },
    )
    assert upstream.models() == ["chat-1"]
    gateway = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-route")

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("hi", model="chat-1"))

    try:
        r = asyncio.run(go())
    finally:
        gateway.close_sync()
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    with pytest.raises(ValueError, match="no route matches"):
        RoutedUpstream([Route(models=("a",), upstreams=(StubUpstream(),))], served=["b"])
