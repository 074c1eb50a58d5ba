"""The OpenAI wire format: request bodies, answers, stream chunks, SSE, usage and errors.

Everything here is the format, nothing the policy: the handlers of
:mod:`distillguard.gateway._openai_api` read requests and write answers with it.

Fidelity: a request body is validated only in the fields the gateway reads (``model``,
``messages`` / ``prompt``, ``max_tokens`` / ``max_completion_tokens``, ``temperature``,
``stream``, ``stream_options``); it is kept whole (:attr:`CompletionRequest.raw`) for the upstream.
An upstream's answer is passed on whole too, with the gateway's own ``id`` and the (possibly
watermarked) text of each choice; a stream's chunks likewise, the chunks that finish a choice and
the usage chunk held back until the exchange is recorded.

Recording: a message's text parts make its ``content``; its other fields (``tool_calls``,
``tool_call_id``, ``name``) are kept beside it, and its other parts (images, audio, files) as a
summary (type, SHA-256 and size of the data, never the data).

Misfires: only choice 0 is recorded as the exchange's response (every choice is watermarked).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from distillguard.gateway.pipeline import Refusal
from distillguard.gateway.upstream import (
    CompletionRequest,
    CompletionResult,
    ToolCallAccumulator,
)
from distillguard.records import Message

__all__ = [
    "DONE",
    "OPENAI_SHAPE",
    "ChoiceBuffer",
    "ChunkWriter",
    "OpenAIErrorShape",
    "answer_body",
    "content_text",
    "error_body",
    "error_type",
    "parse_chat",
    "parse_completion",
    "parse_object",
    "recorded_messages",
    "sse",
    "tool_names",
    "upstream_error",
    "usage",
]

ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
DONE = b"data: [DONE]\n\n"
_MAX_TOKENS = 1_000_000
_MAX_MESSAGES = 4096


def error_type(status: int) -> str:
    """The OpenAI error ``type`` of an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error" if status != 503 else "service_unavailable"
    return "invalid_request_error"


def upstream_error(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of an upstream's error body, or None if it has none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def error_body(refusal: Refusal) -> dict[str, Any]:
    """The ``{"error": {...}}`` object of a refusal made by the gateway."""
    return {
        "error": {
            "message": refusal.detail,
            "type": error_type(refusal.status),
            "param": None,
            "code": refusal.code,
        }
    }


class OpenAIErrorShape:
    """OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``.

    An upstream's own error answer is passed on unchanged (its status, body and content type).
    """

    def __repr__(self) -> str:
        return "OpenAIErrorShape()"

    def render(self, refusal: Refusal) -> tuple[bytes, bytes]:
        """The error body and its content type: the upstream's own when it is an OpenAI error
        object, the gateway's otherwise (with the upstream's status either way)."""
        if refusal.upstream is not None and upstream_error(refusal.upstream.body) is not None:
            return b"application/json", refusal.upstream.body
        return b"application/json", orjson.dumps(error_body(refusal))

    def stream_event(self, refusal: Refusal) -> bytes:
        """The error as the stream's last event (the SDKs raise it)."""
        return sse(error_body(refusal))


OPENAI_SHAPE = OpenAIErrorShape()
"""The OpenAI error shape."""


def sse(obj: Mapping[str, Any]) -> bytes:
    """One server-sent ``data:`` event."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


# -- requests -------------------------------------------------------------------------------------


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises:
        ValueError: not JSON, or not an object.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _common(data: Mapping[str, Any]) -> tuple[str, int | None, float | None, bool, bool]:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("'model' must be a non-empty string")
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not (1 <= max_tokens <= _MAX_TOKENS)
    ):
        raise ValueError(f"'max_tokens' must be an integer between 1 and {_MAX_TOKENS}")
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (0 <= temperature <= 2)
    ):
        raise ValueError("'temperature' must be a number between 0 and 2")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ValueError("'stream' must be a boolean")
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return (
        model,
        max_tokens,
        None if temperature is None else float(temperature),
        stream,
        include_usage,
    )


def content_text(content: object) -> str:
    """The text of a message's ``content``: the string, or its text parts joined.

    Raises:
        ValueError: neither a string, null, nor a list of part objects.
    """
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict):
                raise ValueError("each content part must be an object")
            text = part.get("text")
            if part.get("type", "text") == "text" and isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    raise ValueError("message content must be a string or a list of parts")


def parse_chat(data: dict[str, Any]) -> tuple[CompletionRequest, bool, bool]:
    """A chat completions body as ``(request, stream, include_usage)``.

    Raises:
        ValueError: a field the gateway reads is malformed (HTTP 400).
    """
    model, max_tokens, temperature, stream, include_usage = _common(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > _MAX_MESSAGES:
        raise ValueError("'messages' must be a non-empty list")
    pairs: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"unknown message role {str(role)[:40]!r}")
        pairs.append((role, content_text(m.get("content"))))
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ValueError("'tools' must be a list")
    request = CompletionRequest(
        kind="chat",
        model=model,
        messages=tuple(pairs),
        max_tokens=max_tokens,
        temperature=temperature,
        raw=data,
    )
    return request, stream, include_usage


def parse_completion(data: dict[str, Any]) -> tuple[CompletionRequest, bool, bool]:
    """A completions body as ``(request, stream, include_usage)``.

    Raises:
        ValueError: a field the gateway reads is malformed (HTTP 400).
    """
    model, max_tokens, temperature, stream, include_usage = _common(data)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ValueError("'prompt' must be a string")
    request = CompletionRequest(
        kind="completion",
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        raw=data,
    )
    return request, stream, include_usage


def _part_summary(part: Mapping[str, Any]) -> dict[str, Any]:
    """A non-text content part as recorded: its type, and the SHA-256 and size of its data."""
    kind = str(part.get("type", ""))[:64]
    out: dict[str, Any] = {"type": kind}
    inner = part.get(kind)
    data: object = inner
    if isinstance(inner, dict):
        data = inner.get("url") or inner.get("data") or inner.get("file_data")
        fmt = inner.get("format")
        if isinstance(fmt, str):
            out["format"] = fmt[:32]
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
        out["sha256"] = hashlib.sha256(raw).hexdigest()
        out["bytes"] = len(raw)
    return out


_FREE: MappingProxyType[str, Any] = MappingProxyType({})


def recorded_messages(request: CompletionRequest) -> tuple[Message, ...]:
    """The request's conversation as recorded (see the module documentation)."""
    if request.kind != "chat":
        return (Message(role="user", content=request.prompt),)
    raw = request.raw.get("messages") if request.raw else None
    if not isinstance(raw, list) or len(raw) != len(request.messages):
        return tuple(Message(role=r, content=c) for r, c in request.messages)
    out: list[Message] = []
    for (role, text), m in zip(request.messages, raw, strict=True):
        content = m.get("content")
        if len(m) == 2 and isinstance(content, str):  # the common case: role and text only
            out.append(Message(role=role, content=text))
            continue
        extra = {k: v for k, v in m.items() if k not in ("role", "content")}
        if isinstance(content, list):
            parts = [
                _part_summary(p)
                for p in content
                if isinstance(p, dict) and p.get("type", "text") != "text"
            ]
            if parts:
                extra["content_parts"] = parts
        out.append(Message(role=role, content=text, extra=MappingProxyType(extra) or _FREE))
    return tuple(out)


def tool_names(request: CompletionRequest) -> tuple[str, ...] | None:
    """Names of the tools (functions) the request declares, or None when it declares none."""
    tools = request.raw.get("tools") if request.raw else None
    if not isinstance(tools, list) or not tools:
        return None
    names: list[str] = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            names.append(name[:256])
        elif isinstance(tool, dict) and isinstance(tool.get("type"), str):
            names.append(str(tool["type"])[:256])  # a built-in tool (web search, ...)
    return tuple(names)


# -- answers --------------------------------------------------------------------------------------


def usage(result: CompletionResult) -> dict[str, int]:
    """The ``usage`` object of a result."""
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _prefix(kind: str) -> str:
    return "chatcmpl-" if kind == "chat" else "cmpl-"


def answer_body(
    request: CompletionRequest,
    *,
    exchange_id: str,
    created: int,
    result: CompletionResult,
    texts: Mapping[int, str],
) -> dict[str, Any]:
    """The answer to a request that was not streamed.

    ``texts`` are the choices' texts as sent (watermarked), by choice index. The upstream's own
    answer (:attr:`CompletionResult.body`) is kept whole but for its ``id`` and those texts.
    """
    chat = request.kind == "chat"
    upstream = result.body
    if upstream is not None and isinstance(upstream.get("choices"), list):
        body = dict(upstream)
        body["id"] = _prefix(request.kind) + exchange_id
        choices: list[Any] = []
        for i, choice in enumerate(body["choices"]):
            if not isinstance(choice, dict):
                choices.append(choice)
                continue
            index = choice.get("index", i)
            text = texts.get(index) if isinstance(index, int) else None
            if text is None:
                choices.append(choice)
                continue
            choice = dict(choice)
            if chat and isinstance(choice.get("message"), dict):
                said = dict(choice["message"])
                if said.get("content") is not None or text:
                    said["content"] = text
                choice["message"] = said
            elif not chat:
                choice["text"] = text
            choices.append(choice)
        body["choices"] = choices
        if not isinstance(body.get("usage"), dict):
            body["usage"] = usage(result)
        return body
    text = texts.get(0, result.text)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if result.tool_calls:
            message["tool_calls"] = [dict(c) for c in result.tool_calls]
            if not text:
                message["content"] = None
        choice0: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": result.finish_reason,
        }
        obj = "chat.completion"
    else:
        choice0 = {
            "index": 0,
            "text": text,
            "finish_reason": result.finish_reason,
            "logprobs": None,
        }
        obj = "text_completion"
    return {
        "id": _prefix(request.kind) + exchange_id,
        "object": obj,
        "created": created,
        "model": request.model,
        "choices": [choice0],
        "usage": usage(result),
    }


class ChunkWriter:
    """Writes the chunks of one streamed answer (``chat.completion.chunk`` or
    ``text_completion``), in the gateway's id.

    Args:
        request: the request answered.
        cid: the answer's id.
        created: its creation time (Unix seconds).
        include_usage: the client asked for the usage chunk.
    """

    def __init__(
        self, request: CompletionRequest, *, cid: str, created: int, include_usage: bool
    ) -> None:
        self.chat = request.kind == "chat"
        self.model = request.model
        self.cid = cid
        self.created = created
        self.include_usage = include_usage
        self.object = "chat.completion.chunk" if self.chat else "text_completion"

    def __repr__(self) -> str:
        return f"ChunkWriter(cid={self.cid!r})"

    @classmethod
    def new_id(cls, request: CompletionRequest, suffix: str) -> str:
        """An answer id for ``request``."""
        return _prefix(request.kind) + suffix

    def _frame(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.cid,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def delta(
        self,
        *,
        index: int = 0,
        text: str | None = None,
        role: bool = False,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish: str | None = None,
    ) -> bytes:
        """One chunk of one choice."""
        if self.chat:
            d: dict[str, Any] = {}
            if role:
                d["role"] = "assistant"
            if text is not None:
                d["content"] = text
            if tool_calls:
                d["tool_calls"] = [{"index": i, **dict(c)} for i, c in enumerate(tool_calls)]
            choice: dict[str, Any] = {"index": index, "delta": d, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        return sse(self._frame([choice]))

    def usage(self, result: CompletionResult) -> bytes:
        """The usage chunk (sent only when the client asked for it)."""
        frame = self._frame([])
        frame["usage"] = usage(result)
        return sse(frame)

    @staticmethod
    def is_tail(chunk: Mapping[str, Any]) -> bool:
        """Whether an upstream chunk is held until the exchange is recorded: it finishes a
        choice, or it carries the usage."""
        if chunk.get("usage"):
            return True
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return False
        return any(isinstance(c, dict) and c.get("finish_reason") for c in choices)

    def forward(self, chunk: Mapping[str, Any]) -> bytes:
        """An upstream chunk in the gateway's id (its usage dropped unless asked for); empty
        when nothing of it is left to send."""
        out = dict(chunk)
        out["id"] = self.cid
        if not self.include_usage and "usage" in out:
            del out["usage"]
            if not out.get("choices"):
                return b""
        return sse(out)


class ChoiceBuffer:
    """Collects a stream's choices (text, tool calls, finish reason) when the answer is
    rewritten before it is sent (watermark, canary)."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.tools: dict[int, ToolCallAccumulator] = {}
        self.finish: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"ChoiceBuffer(choices={len(self.texts)})"

    def add(self, chunk: Mapping[str, Any], *, chat: bool) -> None:
        """Fold in one upstream chunk (malformed parts are ignored: the upstream's own stream
        parser has refused garbage already)."""
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if type(index) is not int or not 0 <= index < 128:
                continue
            texts = self.texts.setdefault(index, [])
            if chat:
                d = choice.get("delta") or {}
                if isinstance(d.get("content"), str):
                    texts.append(d["content"])
                if d.get("tool_calls"):
                    self.tools.setdefault(index, ToolCallAccumulator()).add(d["tool_calls"])
            elif isinstance(choice.get("text"), str):
                texts.append(choice["text"])
            if isinstance(choice.get("finish_reason"), str):
                self.finish[index] = choice["finish_reason"]

    def chunks(
        self,
        writer: ChunkWriter,
        result: CompletionResult,
        finish_text: Callable[[int, str], str],
    ) -> tuple[bytes, str]:
        """Every choice as whole chunks (role, text rewritten by ``finish_text``, tool calls,
        finish), and choice 0's text as sent."""
        if not self.texts:
            self.texts[0] = [result.text]
        out: list[bytes] = []
        first = ""
        for index in sorted(self.texts):
            text = finish_text(index, "".join(self.texts[index]))
            if index == 0:
                first = text
            calls = self.tools[index].calls() if index in self.tools else ()
            if index == 0 and not calls:
                calls = result.tool_calls
            out.append(writer.delta(index=index, role=writer.chat, text=text))
            if calls:
                out.append(writer.delta(index=index, tool_calls=calls))
            reason = self.finish.get(index, result.finish_reason)
            out.append(writer.delta(index=index, text=None if writer.chat else "", finish=reason))
        return b"".join(out), first
