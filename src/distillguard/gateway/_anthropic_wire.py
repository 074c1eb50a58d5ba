"""The Anthropic Messages wire format, and its translation to and from OpenAI chat.

The gateway's upstreams speak OpenAI chat (:class:`~distillguard.gateway.upstream.Upstream`);
``POST /v1/messages`` translates each request to an OpenAI chat body and each answer back, so
that the ``anthropic`` SDK works unchanged in front of any upstream.

Request (Messages → chat):

* ``system`` (a string or text blocks) → a ``system`` message;
* text blocks → text parts; ``image`` blocks (``base64`` or ``url`` source) → ``image_url``
  parts (a ``data:`` URL for base64); ``tool_use`` blocks of the assistant → ``tool_calls``
  (``input`` as JSON ``arguments``); ``tool_result`` blocks → ``tool`` messages, placed before the
  rest of their user turn;
* ``tools`` (``name``, ``description``, ``input_schema``) → function tools; ``tool_choice``
  ``auto`` / ``any`` / ``tool`` / ``none`` → ``auto`` / ``required`` / the named function /
  ``none``, ``disable_parallel_tool_use`` → ``parallel_tool_calls: false``;
* ``max_tokens``, ``temperature``, ``top_p`` as they are; ``stop_sequences`` → ``stop``;
  ``metadata.user_id`` → ``user``; ``top_k`` and any field not named here are passed on as they
  came (an upstream that does not know them may refuse them: its 400 reaches the client).

Misfires: ``thinking`` and ``redacted_thinking`` blocks of earlier assistant turns and
``document`` blocks have no chat equivalent and are dropped from what the upstream gets (they
are recorded as content-part summaries); cache-control marks are dropped.

Answer (chat → Messages): the text as a ``text`` block, each tool call as a ``tool_use`` block
(its ``arguments`` parsed as JSON; arguments that are not a JSON object become
``{"arguments": <text>}``), the finish reason as ``stop_reason`` (``stop`` → ``end_turn``,
``length`` → ``max_tokens``, ``tool_calls`` → ``tool_use``, ``content_filter`` → ``refusal``),
usage as ``input_tokens`` / ``output_tokens``. Errors have Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from distillguard.gateway._openai_wire import upstream_error
from distillguard.gateway.pipeline import Refusal
from distillguard.gateway.upstream import CompletionResult

__all__ = [
    "ANTHROPIC_SHAPE",
    "AnthropicErrorShape",
    "StreamWriter",
    "error_type",
    "message_body",
    "stop_reason",
    "to_chat",
    "tool_input",
]

_MAX_TOKENS = 1_000_000
_MAX_MESSAGES = 4096
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
    }
)


def error_type(status: int) -> str:
    """The Anthropic error ``type`` of an HTTP status."""
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _error(refusal: Refusal) -> dict[str, Any]:
    message = refusal.detail
    if refusal.upstream is not None:
        upstream = upstream_error(refusal.upstream.body)
        if upstream is not None and isinstance(upstream.get("message"), str):
            message = upstream["message"]
    status = refusal.upstream.status if refusal.upstream is not None else refusal.status
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


class AnthropicErrorShape:
    """Anthropic's error shape; an upstream's error keeps its status and its message."""

    def __repr__(self) -> str:
        return "AnthropicErrorShape()"

    def render(self, refusal: Refusal) -> tuple[bytes, bytes]:
        """The error body and its content type."""
        return b"application/json", orjson.dumps(_error(refusal))

    def stream_event(self, refusal: Refusal) -> bytes:
        """The ``error`` event that ends a failed stream."""
        return event("error", _error(refusal))


ANTHROPIC_SHAPE = AnthropicErrorShape()
"""The Anthropic error shape."""


def event(name: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event with its name."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- request --------------------------------------------------------------------------------------


def _text_of(blocks: object, what: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise ValueError(f"{what} must be a string or a list of blocks")
    texts: list[str] = []
    for b in blocks:
        if not isinstance(b, dict):
            raise ValueError(f"each block of {what} must be an object")
        if b.get("type") == "text":
            if not isinstance(b.get("text"), str):
                raise ValueError(f"a text block of {what} has no text")
            texts.append(b["text"])
    return "\n".join(texts) if what == "system" else "".join(texts)


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ValueError("an image block needs a source object")
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise ValueError("a base64 image source needs media_type and data strings")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise ValueError("an image source must be base64 or url")


def _user_turn(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise ValueError("message content must be a string or a list of blocks")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for b in content:
        if not isinstance(b, dict):
            raise ValueError("each content block must be an object")
        kind = b.get("type")
        if kind == "text":
            if not isinstance(b.get("text"), str):
                raise ValueError("a text block has no text")
            parts.append({"type": "text", "text": b["text"]})
        elif kind == "image":
            parts.append(_image_part(b))
        elif kind == "tool_result":
            tool_use_id = b.get("tool_use_id")
            if not isinstance(tool_use_id, str):
                raise ValueError("a tool_result block needs a tool_use_id")
            result = b.get("content", "")
            text = _text_of(result, "a tool_result") if result is not None else ""
            if b.get("is_error") is True:
                text = "Error: " + text
            tools.append({"role": "tool", "tool_call_id": tool_use_id, "content": text})
        elif not isinstance(kind, str):
            raise ValueError("a content block has no type")
        # other blocks (documents, ...) have no chat equivalent: dropped
    out = tools
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content: object) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise ValueError("message content must be a string or a list of blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for b in content:
        if not isinstance(b, dict):
            raise ValueError("each content block must be an object")
        kind = b.get("type")
        if kind == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif kind == "tool_use":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                raise ValueError("a tool_use block needs an id and a name")
            calls.append(
                {
                    "id": b["id"],
                    "type": "function",
                    "function": {
                        "name": b["name"],
                        "arguments": orjson.dumps(b.get("input", {})).decode(),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tool(tool: object) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise ValueError("each tool must be an object with a name")
    fn: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    schema = tool.get("input_schema")
    fn["parameters"] = schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "function", "function": fn}


def _tool_choice(choice: object, body: dict[str, Any]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise ValueError("'tool_choice' must be an object with a type")
    kind = choice["type"]
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise ValueError("'tool_choice' must be auto, any, none or tool (with a name)")
    if choice.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False


def to_chat(data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A Messages request body as ``(OpenAI chat body, stream)`` (see the module documentation).

    Raises:
        ValueError: a field is malformed (HTTP 400).
    """
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("'model' must be a non-empty string")
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ValueError("'max_tokens' is required: an integer")
    if not 1 <= max_tokens <= _MAX_TOKENS:
        raise ValueError(f"'max_tokens' must be between 1 and {_MAX_TOKENS}")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ValueError("'stream' must be a boolean")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > _MAX_MESSAGES:
        raise ValueError("'messages' must be a non-empty list")
    chat: list[dict[str, Any]] = []
    system = data.get("system")
    if system is not None:
        chat.append({"role": "system", "content": _text_of(system, "system")})
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        role = m.get("role")
        if role == "user":
            chat += _user_turn(m.get("content"))
        elif role == "assistant":
            chat.append(_assistant_turn(m.get("content")))
        else:
            raise ValueError(f"a message role must be user or assistant, not {str(role)[:40]!r}")
    if not chat:
        raise ValueError("'messages' has nothing to send")
    body: dict[str, Any] = {k: v for k, v in data.items() if k not in _TRANSLATED}
    body["model"] = model
    body["messages"] = chat
    body["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
            raise ValueError(f"'{name}' must be a number between 0 and 2")
        body[name] = value
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ValueError("'stop_sequences' must be a list of strings")
        body["stop"] = stops
    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise ValueError("'tools' must be a list")
        if tools:
            body["tools"] = [_tool(t) for t in tools]
    _tool_choice(data.get("tool_choice"), body)
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        body["user"] = metadata["user_id"]
    return body, stream


# -- answer ---------------------------------------------------------------------------------------

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish: str) -> str:
    """The Messages ``stop_reason`` of an OpenAI ``finish_reason``."""
    return _STOP.get(finish, "end_turn")


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's ``arguments`` as a ``tool_use`` input object."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": arguments}


def _tool_use(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or f"toolu_{index}",
        "name": fn.get("name", ""),
        "input": tool_input(str(fn.get("arguments") or "")),
    }


def message_body(
    *, message_id: str, model: str, text: str, result: CompletionResult
) -> dict[str, Any]:
    """The Messages answer to a request that was not streamed."""
    content: list[dict[str, Any]] = []
    if text or not result.tool_calls:
        content.append({"type": "text", "text": text})
    content += [_tool_use(c, i) for i, c in enumerate(result.tool_calls)]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(result.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens},
    }


class StreamWriter:
    """Writes the events of one streamed Messages answer, one content block at a time.

    Args:
        message_id: the message's id.
        model: the model answered for.
        input_tokens: the prompt's token estimate for ``message_start`` (the final count is in
            ``message_delta``).
    """

    def __init__(self, *, message_id: str, model: str, input_tokens: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self.index = -1
        self.open: str | None = None  # the kind of the open block
        self._tool_index: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"StreamWriter(id={self.message_id!r}, blocks={self.index + 1})"

    def start(self) -> bytes:
        """``message_start`` and a ``ping``."""
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message}) + event(
            "ping", {"type": "ping"}
        )

    def close(self) -> bytes:
        """``content_block_stop`` of the open block, if any."""
        if self.open is None:
            return b""
        self.open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def text(self, delta: str) -> bytes:
        """A text delta (opening a text block when needed)."""
        out = b""
        if self.open != "text":
            out += self.close()
            self.index += 1
            self.open = "text"
            out += event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": self.index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        if delta:
            out += event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self.index,
                    "delta": {"type": "text_delta", "text": delta},
                },
            )
        return out

    def tool_deltas(self, deltas: Sequence[Mapping[str, Any]]) -> bytes:
        """An OpenAI chunk's ``tool_calls`` deltas as ``tool_use`` blocks and
        ``input_json_delta`` events."""
        out = b""
        for d in deltas:
            openai_index = d.get("index", 0)
            fn = d.get("function") or {}
            if not isinstance(openai_index, int) or not isinstance(fn, Mapping):
                continue
            if openai_index not in self._tool_index:
                out += self.close()
                self.index += 1
                self.open = "tool_use"
                self._tool_index[openai_index] = self.index
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": d.get("id") or f"toolu_{self.message_id}_{openai_index}",
                    "name": fn.get("name") or "",
                    "input": {},
                }
                out += event(
                    "content_block_start",
                    {"type": "content_block_start", "index": self.index, "content_block": block},
                )
            arguments = fn.get("arguments")
            if isinstance(arguments, str) and arguments:
                out += event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._tool_index[openai_index],
                        "delta": {"type": "input_json_delta", "partial_json": arguments},
                    },
                )
        return out

    def tool_calls(self, calls: Sequence[Mapping[str, Any]]) -> bytes:
        """Whole tool calls as ``tool_use`` blocks."""
        return self.tool_deltas([{"index": 10_000 + i, **dict(c)} for i, c in enumerate(calls)])

    def finish(self, result: CompletionResult) -> bytes:
        """The last events: the open block closed, ``message_delta`` and ``message_stop``."""
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(result.finish_reason), "stop_sequence": None},
            "usage": {
                "input_tokens": result.prompt_tokens,
                "output_tokens": result.completion_tokens,
            },
        }
        return (
            self.close()
            + event("message_delta", delta)
            + event("message_stop", {"type": "message_stop"})
        )
