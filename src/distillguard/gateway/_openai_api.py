"""The OpenAI endpoints as handlers on the pipeline: chat completions, completions, models.

Each handler parses its body with :mod:`~distillguard.gateway._openai_wire`, then drives the
pipeline's stages (:class:`~distillguard.gateway.pipeline.Pipeline`): admit, call the upstream,
finish (watermark, canary), record, answer. A stream's chunks are forwarded as the upstream sends
them unless the answer is rewritten afterwards (a post-hoc watermark or a canary), in which case
it is buffered and sent whole; either way the chunks that finish it, the usage chunk and
``[DONE]`` are sent only after the exchange is recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Literal

import orjson

from distillguard.gateway._http import Send, send_bytes
from distillguard.gateway._openai_wire import (
    DONE,
    OPENAI_SHAPE,
    ChoiceBuffer,
    ChunkWriter,
    answer_body,
    parse_chat,
    parse_completion,
    parse_object,
)
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
)

__all__ = ["CHAT_PATH", "COMPLETIONS_PATH", "MODELS_PATH", "ModelsEndpoint", "TextEndpoint"]

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def invalid(exc: ValueError) -> Refusal:
    """The 400 refusal of a malformed body."""
    return Refusal(400, "invalid_request", "Invalid request", str(exc))


def unknown_model(model: str) -> Refusal:
    """The 404 refusal of a model not served."""
    return Refusal(
        404, "model_not_found", "Model not found", f"the model {model!r} is not served here"
    )


class ModelsEndpoint:
    """``GET /v1/models``: the models served (verified like every endpoint)."""

    path = MODELS_PATH
    method = "GET"
    shape: ErrorShape = OPENAI_SHAPE

    def __init__(self, models: frozenset[str]) -> None:
        self.models = models

    def __repr__(self) -> str:
        return f"ModelsEndpoint(models={sorted(self.models)!r})"

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        """The model list."""
        now = int(time.time())
        data = [
            {"id": m, "object": "model", "created": now, "owned_by": "distillguard"}
            for m in sorted(self.models)
        ]
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}))


class TextEndpoint:
    """``POST /v1/chat/completions`` (``kind="chat"``) or ``POST /v1/completions``.

    Args:
        pipeline: the request path's stages.
        upstream: the model.
        kind: which of the two endpoints.
        serves: whether a model name is served (default: the upstream's models).
    """

    method = "POST"
    shape: ErrorShape = OPENAI_SHAPE

    def __init__(
        self,
        pipeline: Pipeline,
        upstream: Upstream,
        *,
        kind: Literal["chat", "completion"],
        models: frozenset[str],
    ) -> None:
        self.pipeline = pipeline
        self.upstream = upstream
        self.kind = kind
        self.path = CHAT_PATH if kind == "chat" else COMPLETIONS_PATH
        self.models = models

    def __repr__(self) -> str:
        return f"TextEndpoint(path={self.path!r})"

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        """Parse, admit, and answer whole or streamed."""
        try:
            data = parse_object(body)
            parsed = parse_chat(data) if self.kind == "chat" else parse_completion(data)
        except ValueError as exc:
            raise invalid(exc) from None
        request, stream, include_usage = parsed
        if request.model not in self.models:
            raise unknown_model(request.model)
        admission = await self.pipeline.admit(ctx, request, prompt_text=request.prompt_text)
        if admission.payload is not None:
            request = dataclasses.replace(request, payload=admission.payload)
        if stream:
            await self._stream(ctx, request, include_usage, send, admission)
        else:
            await self._whole(ctx, request, send, admission)

    async def _whole(
        self, ctx: RequestContext, request: CompletionRequest, send: Send, admission: Admission
    ) -> None:
        pipeline = self.pipeline
        result = await complete_whole(pipeline, ctx, request, self.upstream)
        texts = self._finish_choices(ctx, result)
        text = texts.get(0, result.text)
        exchange = pipeline.exchange(ctx, request, status=200, result=result, text=text)
        await pipeline.record(ctx, exchange)
        pipeline.charge(admission, result.completion_tokens)
        body = answer_body(
            request,
            exchange_id=exchange.exchange_id,
            created=int(ctx.ts.timestamp()),
            result=result,
            texts=texts,
        )
        await send_bytes(
            send,
            200,
            orjson.dumps(body),
            headers=[(b"x-distillguard-exchange-id", exchange.exchange_id.encode())],
        )
        pipeline.done(ctx, exchange)

    def _finish_choices(self, ctx: RequestContext, result: CompletionResult) -> dict[int, str]:
        """Each choice's text as sent: watermarked, a canary in choice 0 (when asked)."""
        watermarked = result.watermarked
        texts = {0: self.pipeline.finish_text(ctx, result.text, watermarked=watermarked)}
        choices = result.body.get("choices") if result.body is not None else None
        if isinstance(choices, list) and len(choices) > 1:
            for i, choice in enumerate(choices):
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", i)
                if index == 0 or not isinstance(index, int):
                    continue
                text = (
                    (choice.get("message") or {}).get("content")
                    if self.kind == "chat"
                    else choice.get("text")
                )
                if isinstance(text, str) and text:
                    texts[index] = self.pipeline.finish_text(
                        ctx, text, watermarked=watermarked, canary=False
                    )
        return texts

    async def _stream(
        self,
        ctx: RequestContext,
        request: CompletionRequest,
        include_usage: bool,
        send: Send,
        admission: Admission,
    ) -> None:
        pipeline = self.pipeline
        writer = ChunkWriter(
            request,
            cid=ChunkWriter.new_id(request, ctx.request_id),
            created=int(ctx.ts.timestamp()),
            include_usage=include_usage,
        )
        rewrite = pipeline.rewrites(
            ctx, generation_watermark=self.upstream.capabilities.generation_watermark
        )
        buffer = ChoiceBuffer() if rewrite else None
        started = False
        role_sent = False
        forwarded = False
        held: list[StreamChunk] = []
        sent: list[str] = []

        async def emit(body: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            if body:
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
                if buffer is not None:
                    if event.data is not None:
                        buffer.add(event.data, chat=writer.chat)
                    else:
                        buffer.texts.setdefault(0, []).append(event.text)
                    continue
                if event.data is None:
                    if writer.chat and not role_sent:
                        role_sent = True
                        await emit(writer.delta(role=True, text=""))
                    await emit(writer.delta(text=event.text))
                elif ChunkWriter.is_tail(event.data):
                    held.append(event)
                else:
                    role_sent = forwarded = True
                    await emit(writer.forward(event.data))
                sent.append(event.text)
            if result is None:
                raise TypeError("the upstream stream ended without a result")
        except OSError:  # the client went away mid-stream
            return
        except Exception as exc:  # whatever the upstream does, a recorded refusal
            pipeline.observe_upstream(time.perf_counter() - t0)
            raise await pipeline.upstream_failed(ctx, request, exc, sent="".join(sent)) from None
        pipeline.observe_upstream(time.perf_counter() - t0)
        marked = result.watermarked
        if buffer is not None:

            def finish(index: int, text: str) -> str:
                return pipeline.finish_text(ctx, text, watermarked=marked, canary=index == 0)

            tail, text = buffer.chunks(writer, result, finish)
        else:
            text = pipeline.finish_text(ctx, result.text, watermarked=marked)
            tail = b""
        exchange = pipeline.exchange(ctx, request, status=200, result=result, text=text)
        await pipeline.record(ctx, exchange)
        pipeline.charge(admission, result.completion_tokens)
        if buffer is None:
            finished = False
            usage_sent = False
            for chunk in held:
                assert chunk.data is not None
                tail += writer.forward(chunk.data)
                finished = finished or any(
                    isinstance(c, dict) and c.get("finish_reason")
                    for c in chunk.data.get("choices") or ()
                )
                usage_sent = usage_sent or bool(chunk.data.get("usage"))
            if not finished:
                if writer.chat and not role_sent:
                    tail = writer.delta(role=True, text="") + tail
                if result.tool_calls and not forwarded:
                    tail += writer.delta(tool_calls=result.tool_calls)
                tail += writer.delta(text=None if writer.chat else "", finish=result.finish_reason)
            if include_usage and not usage_sent:
                tail += writer.usage(result)
        elif include_usage:
            tail += writer.usage(result)
        await emit(b"")
        await send({"type": "http.response.body", "body": tail + DONE, "more_body": False})
        pipeline.done(ctx, exchange)
