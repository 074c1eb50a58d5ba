"""API fidelity (issue 21): the official ``openai`` and ``anthropic`` SDKs through the gateway.

The upstream is the stub model served as a real OpenAI-compatible app (``stub_app``) behind a
recorder that keeps every body it receives and can answer errors; the SDKs reach the gateway
over the ASGI transport, signing with an agent passport. Checked: every request field reaches
the upstream unchanged, tool calls and content parts come back and are recorded, upstream errors
keep their status and body (429 with ``Retry-After``), gateway errors have each API's shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.gateway import Gateway
from distillguard.gateway.agents import Agent, AgentFactory
from distillguard.gateway.policy import Action, Override
from distillguard.gateway.testing import BASE_URL, make_settings
from distillguard.gateway.upstream import OpenAIUpstream, stub_app
from distillguard.records import Exchange
from distillguard.store import open_store

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
OPENAI_ERROR_400 = {
    "error": {
        "message": "tools[0].function.parameters is not a valid JSON schema",
        "type": "invalid_request_error",
        "param": "tools",
        "code": None,
    }
}


class RecordingUpstream:
    """The stub model over HTTP, recording every body; models ``err-400`` and ``err-429``
    answer the upstream errors a provider sends."""

    def __init__(self) -> None:
        self.app = stub_app()
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            m = await receive()
            raw += m.get("body", b"")
            if not m.get("more_body"):
                break
        body = json.loads(raw)
        self.bodies.append(body)
        model = body.get("model")
        if model in ("err-400", "err-429"):
            status = 400 if model == "err-400" else 429
            payload = (
                OPENAI_ERROR_400
                if status == 400
                else {"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}
            )
            headers = [(b"content-type", b"application/json")]
            if status == 429:
                headers.append((b"retry-after", b"7"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, Gateway, RecordingUpstream, AgentFactory]]:
    settings = make_settings(tmp_path)
    recorder = RecordingUpstream()
    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1", "err-400", "err-429"],
        retries=0,
        transport=httpx.ASGITransport(app=recorder),
    )
    gw = create_gateway(settings, upstream=upstream)
    try:
        yield settings, gw, recorder, AgentFactory.from_settings(settings)
    finally:
        gw.close_sync()


def _http(gw: Gateway, agent: Agent) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), auth=agent.auth())


def _openai(gw: Gateway, agent: Agent) -> Any:
    return openai.AsyncOpenAI(
        api_key="unused", base_url=BASE_URL + "/v1", http_client=_http(gw, agent), max_retries=0
    )


def _anthropic(gw: Gateway, agent: Agent) -> Any:
    import httpx2  # the anthropic SDK's HTTP library

    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gw), auth=agent.httpx2_auth())
    return anthropic.AsyncAnthropic(
        api_key="unused", base_url=BASE_URL, http_client=http, max_retries=0
    )


def _stored(settings: Settings) -> list[Exchange]:
    store = open_store(settings.store_url)
    try:
        return [e.exchange for batch in store.iter_exchanges() for e in batch]
    finally:
        store.close()


def test_every_openai_field_reaches_the_upstream_unchanged(world: Any) -> None:
    settings, gw, upstream, agents = world
    fields: dict[str, Any] = {
        "tools": TOOLS,
        "tool_choice": "none",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "n": 1,
        "logprobs": True,
        "top_logprobs": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "user": "end-user-7",
        "parallel_tool_calls": False,
        "logit_bias": {"50256": -100},
        "metadata": {"team": "a"},
    }
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is a ledger?"},
    ]

    async def go() -> Any:
        c = _openai(gw, agents.issue("acct-f1"))
        return await c.chat.completions.create(
            model="stub-1",
            messages=messages,
            extra_body={"x_vendor_option": {"keep": [1, 2]}},
            **fields,
        )

    answer = asyncio.run(go())
    (sent,) = upstream.bodies
    assert sent == {
        "model": "stub-1",
        "messages": messages,
        **fields,
        "x_vendor_option": {"keep": [1, 2]},
    }
    assert "max_tokens" not in sent and "temperature" not in sent  # nothing invented
    assert answer.choices[0].message.content  # a text answer (tool_choice none)
    (ex,) = _stored(settings)
    assert ex.tools == ("get_weather",)
    assert [m.content for m in ex.messages] == ["be brief", "what is a ledger?"]


def test_tool_calls_come_back_intact_and_are_recorded(world: Any) -> None:
    settings, gw, upstream, agents = world
    agent = agents.issue("acct-f2")

    async def go() -> tuple[Any, Any]:
        c = _openai(gw, agent)
        first = await c.chat.completions.create(
            model="stub-1", messages=[{"role": "user", "content": "weather in Oslo?"}], tools=TOOLS
        )
        call = first.choices[0].message.tool_calls[0]
        second = await c.chat.completions.create(
            model="stub-1",
            tools=TOOLS,
            messages=[
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "12 C, rain"},
            ],
        )
        return first, second

    first, second = asyncio.run(go())
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {
        "query": json.loads(call.function.arguments)["query"]
    }
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls
    # the assistant's tool call and the tool result reached the upstream as the client sent them
    assert upstream.bodies[1]["messages"][1]["tool_calls"][0]["id"] == call.id
    assert upstream.bodies[1]["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "12 C, rain",
    }
    one, two = sorted(_stored(settings), key=lambda e: e.ts)
    assert one.tools == ("get_weather",)
    assert one.extra["tool_calls"] == [call.model_dump()]
    assert one.response == ""
    assert two.messages[1].extra["tool_calls"][0]["function"]["name"] == "get_weather"
    assert two.messages[2].role == "tool" and two.messages[2].extra["tool_call_id"] == call.id


def test_streamed_tool_calls_and_usage(world: Any) -> None:
    settings, gw, upstream, agents = world

    async def go() -> list[Any]:
        c = _openai(gw, agents.issue("acct-f3"))
        stream = await c.chat.completions.create(
            model="stub-1",
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    assert upstream.bodies[0]["stream"] is True
    args = ""
    name = None
    for chunk in chunks:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                name = d.function.name or name
                args += d.function.arguments or ""
    assert name == "get_weather" and json.loads(args)["query"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert len({c.id for c in chunks}) == 1  # one id: the gateway's
    (ex,) = _stored(settings)
    assert ex.extra["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": args}
    assert chunks[0].id == "chatcmpl-" + ex.exchange_id


def test_vision_parts_pass_through_and_are_summarised_in_the_record(world: Any) -> None:
    settings, gw, upstream, agents = world
    url = "data:image/png;base64," + PIXEL
    content = [
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]

    async def go() -> Any:
        c = _openai(gw, agents.issue("acct-f4"))
        return await c.chat.completions.create(
            model="stub-1", messages=[{"role": "user", "content": content}]
        )

    asyncio.run(go())
    assert upstream.bodies[0]["messages"][0]["content"] == content
    (ex,) = _stored(settings)
    message = ex.messages[0]
    assert message.content == "what is in this picture?"
    assert message.extra["content_parts"] == [
        {
            "type": "image_url",
            "sha256": hashlib.sha256(url.encode()).hexdigest(),
            "bytes": len(url),
        }
    ]
    assert PIXEL not in json.dumps(ex.to_dict())  # the data itself is not kept


def test_upstream_400_stays_a_400_with_its_body(world: Any) -> None:
    settings, gw, upstream, agents = world

    async def go() -> Any:
        c = _openai(gw, agents.issue("acct-f5"))
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="err-400", messages=[{"role": "user", "content": "x"}], tools=TOOLS
            )
        return info.value

    err = asyncio.run(go())
    assert err.status_code == 400 and err.body == OPENAI_ERROR_400["error"]
    assert len(upstream.bodies) == 1  # not retried
    (ex,) = _stored(settings)
    assert ex.status == 400 and "HTTP 400" in ex.extra["dg_error"]


def test_upstream_429_passes_retry_after_and_is_honoured(world: Any) -> None:
    settings, gw, upstream, agents = world

    async def go() -> list[Any]:
        c = _openai(gw, agents.issue("acct-f6"))
        out = []
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as info:
                await c.chat.completions.create(
                    model="err-429", messages=[{"role": "user", "content": "x"}]
                )
            out.append(info.value)
        return out

    first, second = asyncio.run(go())
    assert first.status_code == 429 and first.response.headers["retry-after"] == "7"
    assert first.body["message"] == "slow down"
    # the second call is answered by the gateway without reaching the upstream
    assert len(upstream.bodies) == 1
    assert second.status_code == 429 and int(second.response.headers["retry-after"]) in (6, 7)
    assert [e.status for e in _stored(settings)] == [429, 429]


def test_gateway_errors_have_the_openai_shape(world: Any) -> None:
    _, gw, _, agents = world

    async def go() -> tuple[Any, Any]:
        c = _openai(gw, agents.issue("acct-f7"))
        with pytest.raises(openai.NotFoundError) as missing:
            await c.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.BadRequestError) as bad:
            await c.chat.completions.create(model="stub-1", messages=[])
        return missing.value, bad.value

    missing, bad = asyncio.run(go())
    assert missing.code == "model_not_found" and missing.type == "not_found_error"
    assert bad.code == "invalid_request" and "messages" in bad.message


def test_watermarked_stream_keeps_tool_calls(world: Any) -> None:
    """A rewritten (buffered) stream still carries the tool calls and the usage."""
    settings, gw, _, agents = world
    gw.core.policy.set_overrides(
        [Override("acct-f8", Action.WATERMARK, "test", "ana", set_at=_now())]
    )

    async def go() -> list[Any]:
        c = _openai(gw, agents.issue("acct-f8"))
        stream = await c.chat.completions.create(
            model="stub-1",
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,
            stream=True,
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    calls = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or []]
    assert calls and calls[0].function.name == "get_weather"
    (ex,) = _stored(settings)
    assert ex.extra["dg_action"] == "watermark" and ex.extra["tool_calls"]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- anthropic ------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}


def test_anthropic_messages_whole_with_tools_and_images(world: Any) -> None:
    settings, gw, upstream, agents = world
    agent = agents.issue("acct-a1")

    async def go() -> tuple[Any, Any]:
        c = _anthropic(gw, agent)
        first = await c.messages.create(
            model="stub-1",
            max_tokens=64,
            system="be brief",
            tools=[WEATHER_TOOL],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "weather where this was taken?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                        },
                    ],
                }
            ],
            metadata={"user_id": "end-user-9"},
            stop_sequences=["END"],
        )
        use = first.content[-1]
        second = await c.messages.create(
            model="stub-1",
            max_tokens=64,
            tools=[WEATHER_TOOL],
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [use.model_dump()]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "12 C"}],
                },
            ],
        )
        return first, second

    first, second = asyncio.run(go())
    assert first.type == "message" and first.stop_reason == "tool_use"
    use = first.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input["query"]
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert second.stop_reason in ("end_turn", "max_tokens") and second.content[0].type == "text"
    sent = upstream.bodies[0]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + PIXEL},
    }
    assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert sent["max_tokens"] == 64 and sent["stop"] == ["END"] and sent["user"] == "end-user-9"
    follow = upstream.bodies[1]["messages"]
    assert follow[1]["tool_calls"][0]["id"] == use.id
    assert follow[2] == {"role": "tool", "tool_call_id": use.id, "content": "12 C"}
    one, _two = sorted(_stored(settings), key=lambda e: e.ts)
    assert one.endpoint == "/v1/messages" and one.tools == ("get_weather",)
    assert one.extra["tool_calls"][0]["function"]["name"] == "get_weather"
    assert one.messages[1].extra["content_parts"][0]["type"] == "image_url"
    assert first.id == "msg_" + one.exchange_id


def test_anthropic_stream_events(world: Any) -> None:
    settings, gw, _, agents = world

    async def go() -> tuple[list[Any], Any, list[Any], Any]:
        c = _anthropic(gw, agents.issue("acct-a2"))
        async with c.messages.stream(
            model="stub-1", max_tokens=32, messages=[{"role": "user", "content": "hello"}]
        ) as stream:
            text_events = [e async for e in stream]
            text_final = await stream.get_final_message()
        async with c.messages.stream(
            model="stub-1",
            max_tokens=32,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            tool_events = [e async for e in stream]
            tool_final = await stream.get_final_message()
        return text_events, text_final, tool_events, tool_final

    text_events, text_final, tool_events, tool_final = asyncio.run(go())
    kinds = [e.type for e in text_events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    stored = sorted(_stored(settings), key=lambda e: e.ts)
    assert text_final.content[0].text == stored[0].response
    assert text_final.stop_reason == "end_turn"
    use = tool_final.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input["query"]
    assert tool_final.stop_reason == "tool_use"
    assert any(e.type == "input_json" for e in tool_events)
    assert stored[1].extra["tool_calls"][0]["function"]["name"] == "get_weather"


def test_anthropic_errors_have_the_anthropic_shape(world: Any) -> None:
    _settings, gw, _upstream, agents = world

    async def go() -> list[Any]:
        c = _anthropic(gw, agents.issue("acct-a3"))
        out = []
        with pytest.raises(anthropic.BadRequestError) as bad:
            await c.messages.create(
                model="stub-1", max_tokens=0, messages=[{"role": "user", "content": "x"}]
            )
        out.append(bad.value)
        with pytest.raises(anthropic.NotFoundError) as missing:
            await c.messages.create(
                model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        out.append(missing.value)
        with pytest.raises(anthropic.BadRequestError) as upstream_400:
            await c.messages.create(
                model="err-400", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        out.append(upstream_400.value)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await c.messages.create(
                model="err-429", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        out.append(limited.value)
        return out

    bad, missing, upstream_400, limited = asyncio.run(go())
    assert bad.body["type"] == "error" and bad.body["error"]["type"] == "invalid_request_error"
    assert missing.body["error"]["type"] == "not_found_error"
    assert upstream_400.body["error"]["message"] == OPENAI_ERROR_400["error"]["message"]
    assert limited.response.headers["retry-after"] == "7"


def test_anthropic_unsigned_request_is_refused_in_its_shape(world: Any) -> None:
    _, gw, _, _ = world

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url=BASE_URL) as c:
            return await c.post(
                "/v1/messages",
                json={
                    "model": "stub-1",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "x"}],
                },
            )

    r = asyncio.run(go())
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
