"""``POST /v1/messages``: an Anthropic Messages-compatible endpoint on the pipeline.

The request is translated to an OpenAI chat body (:mod:`~distillguard.gateway._anthropic_wire`)
and goes through the same stages as ``/v1/chat/completions``: passport and signature, policy and
limits, the upstream, watermark and canary, the exchange recorded (endpoint ``/v1/messages``,
the translated conversation, declared tools, the answer's tool calls) before the answer. The
answer and the stream events (``message_start``, content blocks with ``text_delta`` and
``input_json_delta``, ``message_delta``, ``message_stop``) are written back in Messages form;
``message_delta`` and ``message_stop`` are sent only after the exchange is recorded. A stream
whose answer is rewritten (post-hoc watermark, canary) is buffered and sent whole at the end.
"""

from __future__ import annotations

import dataclasses
import time

import orjson

from distillguard.gateway._anthropic_wire import (
    ANTHROPIC_SHAPE,
    StreamWriter,
    message_body,
    to_chat,
)
from distillguard.gateway._http import Send, send_bytes
from distillguard.gateway._openai_wire import parse_chat, parse_object
from distillguard.gateway.pipeline import (
    Admission,
    ErrorShape,
    Pipeline,
    Refusal,
    RequestContext,
    complete_whole,
)
from distillguard.gateway.upstream import (
    CompletionRequest,
    CompletionResult,
    StreamChunk,
    Upstream,
    check_result,
    check_text,
    count_tokens,
)

__all__ = ["MESSAGES_PATH", "MessagesEndpoint"]

MESSAGES_PATH = "/v1/messages"

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class MessagesEndpoint:
    """``POST /v1/messages`` (see the module documentation).

    Args:
        pipeline: the request path's stages.
        upstream: the model (OpenAI chat).
        models: the model names served.
    """

    path = MESSAGES_PATH
    method = "POST"
    shape: ErrorShape = ANTHROPIC_SHAPE

    def __init__(self, pipeline: Pipeline, upstream: Upstream, *, models: frozenset[str]) -> None:
        self.pipeline = pipeline
        self.upstream = upstream
        self.models = models

    def __repr__(self) -> str:
        return f"MessagesEndpoint(upstream={self.upstream!r})"

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        """Translate, admit, and answer whole or streamed."""
        try:
            chat, stream = to_chat(parse_object(body))
            request, _, _ = parse_chat(chat)
        except ValueError as exc:
            raise Refusal(400, "invalid_request", "Invalid request", str(exc)) from None
        if request.model not in self.models:
            raise Refusal(
                404,
                "model_not_found",
                "Model not found",
                f"the model {request.model!r} is not served here",
            )
        admission = await self.pipeline.admit(ctx, request, prompt_text=request.prompt_text)
        if admission.payload is not None:
            request = dataclasses.replace(request, payload=admission.payload)
        if stream:
            await self._stream(ctx, request, send, admission)
        else:
            await self._whole(ctx, request, send, admission)

    async def _whole(
        self, ctx: RequestContext, request: CompletionRequest, send: Send, admission: Admission
    ) -> None:
        pipeline = self.pipeline
        result = await complete_whole(pipeline, ctx, request, self.upstream)
        text = pipeline.finish_text(ctx, result.text, watermarked=result.watermarked)
        exchange = pipeline.exchange(ctx, request, status=200, result=result, text=text)
        await pipeline.record(ctx, exchange)
        pipeline.charge(admission, result.completion_tokens)
        answer = message_body(
            message_id="msg_" + exchange.exchange_id, model=request.model, text=text, result=result
        )
        await send_bytes(
            send,
            200,
            orjson.dumps(answer),
            headers=[(b"x-distillguard-exchange-id", exchange.exchange_id.encode())],
        )
        pipeline.done(ctx, exchange)

    async def _stream(
        self, ctx: RequestContext, request: CompletionRequest, send: Send, admission: Admission
    ) -> None:
        pipeline = self.pipeline
        writer = StreamWriter(
            message_id="msg_" + ctx.request_id,
            model=request.model,
            input_tokens=count_tokens(request.prompt_text),
        )
        buffered = pipeline.rewrites(
            ctx, generation_watermark=self.upstream.capabilities.generation_watermark
        )
        started = False
        tools_streamed = False
        sent: list[str] = []

        async def emit(body: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                body = writer.start() + body
            await send({"type": "http.response.body", "body": body, "more_body": True})

        result: CompletionResult | None = None
        t0 = time.perf_counter()
        try:
            async for event in self.upstream.stream(request):
                if isinstance(event, CompletionResult):
                    result = check_result(event)
                    break
                if isinstance(event, str):
                    event = StreamChunk(text=check_text(event, "a delta of the upstream stream"))
                elif not isinstance(event, StreamChunk):
                    raise TypeError(f"the upstream streamed a {type(event).__name__}")
                if buffered:
                    continue
                out = writer.text(event.text) if event.text else b""
                deltas = _tool_deltas(event)
                if deltas:
                    tools_streamed = True
                    out += writer.tool_deltas(deltas)
                if out:
                    await emit(out)
                sent.append(event.text)
            if result is None:
                raise TypeError("the upstream stream ended without a result")
        except OSError:  # the client went away mid-stream
            return
        except Exception as exc:  # whatever the upstream does, a recorded refusal
            pipeline.observe_upstream(time.perf_counter() - t0)
            raise await pipeline.upstream_failed(ctx, request, exc, sent="".join(sent)) from None
        pipeline.observe_upstream(time.perf_counter() - t0)
        text = pipeline.finish_text(ctx, result.text, watermarked=result.watermarked)
        exchange = pipeline.exchange(ctx, request, status=200, result=result, text=text)
        await pipeline.record(ctx, exchange)
        pipeline.charge(admission, result.completion_tokens)
        tail = b""
        if buffered and text:
            tail += writer.text(text)
        if result.tool_calls and not tools_streamed:
            tail += writer.tool_calls(result.tool_calls)
        if writer.index < 0:  # nothing at all: one empty text block
            tail += writer.text("")
        tail += writer.finish(result)
        if not started:
            await emit(b"")
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        pipeline.done(ctx, exchange)


def _tool_deltas(event: StreamChunk) -> list[dict[str, object]]:
    """The tool-call deltas of choice 0 in an upstream chunk."""
    data = event.data
    if data is None:
        return []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            deltas = (choice.get("delta") or {}).get("tool_calls")
            if isinstance(deltas, list):
                return [d for d in deltas if isinstance(d, dict)]
    return []
