"""The model behind the gateway, behind one interface (:class:`Upstream`).

* :class:`StubUpstream`: deterministic answers computed from the prompt, no model (tests and
  benchmarks), tool calls included; :func:`stub_app` serves it as its own OpenAI-compatible HTTP
  service (streaming too).
* :class:`OpenAIUpstream`: any OpenAI-compatible URL over ``httpx``. The client's request body is
  sent as it came (every field: tools, ``response_format``, sampling parameters, content parts,
  unknown fields), with only ``model`` (a route may rename it) and the stream options the gateway
  needs; connect and read timeouts, retries with backoff on connection errors and 5xx, a
  :class:`CircuitBreaker`, and a cool-down of the model after a 429 (its ``Retry-After`` is
  honoured: no call for that model goes out before it passes). Failures raise
  :class:`~distillguard.errors.UpstreamError` (502),
  :class:`~distillguard.errors.UpstreamTimeoutError` (504) or :class:`UpstreamHTTPError` (the
  upstream's own error answer, passed on to the client).
* :class:`LocalModelUpstream`: a local ``transformers`` causal LM from a path, generating with
  the generation-time watermark of :mod:`distillguard.watermark` when a scheme is given.
* :class:`RoutedUpstream`: several upstreams routed by model name, each route with fallbacks
  tried in order when one fails (unreachable, 5xx, 429, circuit open).

What an upstream can do is declared in :class:`UpstreamCapabilities` (typed flags), not guessed
from its name.

Streaming: :meth:`Upstream.stream` yields text deltas (``str``) or :class:`StreamChunk` (a delta
with the upstream's OpenAI chunk as it came), and ends with the :class:`CompletionResult` of the
whole answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import orjson

from distillguard.errors import UpstreamError, UpstreamTimeoutError
from distillguard.gateway.tracing import outgoing_headers

if TYPE_CHECKING:
    from distillguard.config import GatewaySettings

__all__ = [
    "CircuitBreaker",
    "CompletionRequest",
    "CompletionResult",
    "LocalModelUpstream",
    "OpenAIUpstream",
    "Route",
    "RoutedUpstream",
    "StreamChunk",
    "StubUpstream",
    "ToolCallAccumulator",
    "Upstream",
    "UpstreamCapabilities",
    "UpstreamHTTPError",
    "UpstreamHints",
    "check_result",
    "check_text",
    "check_tool_calls",
    "count_tokens",
    "loads_lenient",
    "retry_after_s",
    "routed_upstream",
    "send_with_retries",
    "stub_app",
]

logger = logging.getLogger(__name__)


def count_tokens(text: str) -> int:
    """A model-independent token estimate: whitespace-separated words (at least 1 if any)."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class UpstreamCapabilities:
    """What an upstream can do, as typed flags (the gateway never tests an upstream's name).

    Attributes:
        generation_watermark: it watermarks while generating (a local model with a KGW
            scheme): the gateway need not rewrite its answers afterwards, so a stream is sent as
            it is generated even for a watermarked account.
        passthrough: it receives the client's request body as it came (``CompletionRequest.raw``);
            without it only the text view of the request (messages, prompt, ``max_tokens``,
            ``temperature``) reaches the model.
    """

    generation_watermark: bool = False
    passthrough: bool = False


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What the gateway asks of the model.

    ``raw`` is the client's request body as it came (an OpenAI chat or completions body; the
    Anthropic endpoint translates to one): an upstream with
    :attr:`UpstreamCapabilities.passthrough` sends it unchanged. ``messages`` (``(role, text)``
    pairs, chat) and ``prompt`` (``/v1/completions``) are its text view, what is recorded and
    what a text-only model reads. ``max_tokens`` and ``temperature`` are None when the client
    gave none (no default is invented for the upstream). ``payload`` is the per-account
    watermark payload when the policy asks for one.
    """

    kind: Literal["chat", "completion"]
    model: str
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    payload: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def prompt_text(self) -> str:
        """All the text sent to the model, one message per line."""
        if self.kind == "completion":
            return self.prompt
        return "\n".join(content for _, content in self.messages)


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """The model's answer and its token counts.

    Attributes:
        text: the answer's text (choice 0; empty when the answer is only tool calls).
        tool_calls: the answer's tool calls in OpenAI form
            (``{"id", "type": "function", "function": {"name", "arguments"}}``).
        body: the upstream's whole JSON answer when it has one (OpenAI-compatible upstreams,
            not streamed): the gateway passes its other fields (further choices, logprobs,
            ``system_fingerprint``, refusals) on unchanged.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    reasoning: str | None = None
    watermarked: bool = False
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One event of an upstream's stream: choice 0's text delta and the chunk as it came.

    ``data`` is the upstream's OpenAI ``chat.completion.chunk`` (or ``text_completion``) object;
    the gateway forwards it (tool-call deltas, logprobs, further choices) with its own id.
    """

    text: str = ""
    data: Mapping[str, Any] | None = field(default=None, repr=False)


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an HTTP error: its status, body and ``Retry-After`` are kept
    so that the client gets the upstream's own answer (a 400 stays a 400, a 429 keeps its
    ``Retry-After``), not a gateway 502.

    Args:
        message: what happened.
        status: the upstream's status.
        body: its body, unchanged.
        content_type: its content type.
        retry_after: its ``Retry-After`` value in seconds, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, details={"upstream_status": status})
        self.status = status
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Another upstream may succeed (429 or 5xx); a 4xx is the request's own fault."""
        return self.status == 429 or self.status >= 500


_MAX_TOKEN_COUNT = 2**31 - 1  # a larger count is garbage (502)


def check_text(value: object, what: str) -> str:
    """``value`` if it is a string that can be stored and sent (no lone surrogate).

    Raises:
        UpstreamError: it is not a string, or not valid Unicode (HTTP 502).
    """
    if not isinstance(value, str):
        raise UpstreamError(f"{what} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UpstreamError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return value


def _token_count(value: object, fallback: int, what: str) -> int:
    """A usage count: absent, null or 0 gives ``fallback``; otherwise 0..2**31-1."""
    if value is None or (type(value) is int and value == 0):
        return fallback
    if type(value) is float and value.is_integer():  # 12.0 from some servers; not inf or NaN
        value = int(value)
    if type(value) is not int or not 0 <= value <= _MAX_TOKEN_COUNT:
        shown = (
            "out of range"
            if type(value) is int
            else repr(value)
            if type(value) is float
            else f"a {type(value).__name__}"
        )
        raise UpstreamError(f"the upstream's {what} is not a token count: {shown}")
    return value


def _usage_counts(usage: object, prompt_text: str, text: str) -> tuple[int, int]:
    """Prompt and completion token counts from an upstream's ``usage`` (word counts if absent).

    Raises:
        UpstreamError: ``usage`` is not an object, or a count is not a non-negative integer.
    """
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise UpstreamError(f"the upstream's usage is not an object ({type(usage).__name__})")
    return (
        _token_count(usage.get("prompt_tokens"), count_tokens(prompt_text), "usage.prompt_tokens"),
        _token_count(usage.get("completion_tokens"), count_tokens(text), "usage.completion_tokens"),
    )


def check_result(result: object) -> CompletionResult:
    """``result`` if it is a :class:`CompletionResult` the gateway can store and send.

    Every upstream's answer passes here before it is recorded: strings without lone
    surrogates, token counts in ``0..2**31-1``, a short finish reason.

    Raises:
        UpstreamError: anything else (the gateway answers 502 and records the failure).
    """
    if not isinstance(result, CompletionResult):
        raise UpstreamError(f"the upstream gave a {type(result).__name__}, not a result")
    check_text(result.text, "the upstream's answer")
    if result.reasoning is not None:
        check_text(result.reasoning, "the upstream's reasoning")
    reason = check_text(result.finish_reason, "the upstream's finish reason")
    if len(reason) > 64:
        raise UpstreamError("the upstream's finish reason is longer than 64 characters")
    for name in ("prompt_tokens", "completion_tokens"):
        n = getattr(result, name)
        if type(n) is not int or not 0 <= n <= _MAX_TOKEN_COUNT:
            raise UpstreamError(f"the upstream's {name} is not a token count")
    if not isinstance(result.watermarked, bool):
        raise UpstreamError("the upstream's watermark flag is not a boolean")
    if result.tool_calls:
        check_tool_calls(result.tool_calls)
    return result


def check_tool_calls(calls: object) -> tuple[Mapping[str, Any], ...]:
    """``calls`` if it is a sequence of OpenAI tool calls the gateway can store and send.

    Each call is an object with a ``function`` object holding a string ``name`` and string
    ``arguments`` (the model's JSON, not parsed here); strings are valid Unicode.

    Raises:
        UpstreamError: anything else (HTTP 502).
    """
    if not isinstance(calls, (list, tuple)):
        raise UpstreamError("the upstream's tool_calls is not a list")
    for call in calls:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping):
            raise UpstreamError("an upstream tool call has no function object")
        check_text(fn.get("name"), "a tool call's function name")
        check_text(fn.get("arguments", ""), "a tool call's arguments")
        if "id" in call and call["id"] is not None:
            check_text(call["id"], "a tool call's id")
    return tuple(calls)


class Upstream(Protocol):
    """The model the gateway protects.

    Attributes:
        name: a label for logs and metrics (never used to decide behaviour).
        capabilities: what it can do (see :class:`UpstreamCapabilities`).
    """

    name: str
    capabilities: UpstreamCapabilities

    def models(self) -> list[str]:
        """The model names served."""
        ...

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The whole answer.

        Raises:
            UpstreamError: the model failed or answered garbage (HTTP 502).
            UpstreamTimeoutError: the model did not answer in time (HTTP 504).
        """
        ...

    def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[str | StreamChunk | CompletionResult]:
        """Text deltas (``str`` or :class:`StreamChunk`), then the whole answer's result."""
        ...

    def ready(self) -> bool:
        """False while the upstream is known to be unusable (circuit open)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# -- stub ---------------------------------------------------------------------------------------

_TEXT = (
    "the model answers with care and the gateway records every exchange in a ledger so that "
    "evidence can be proven later to anyone who asks about distillation of outputs through "
    "proxy accounts while legitimate users keep working without noticing anything unusual"
)
_WORDS = tuple(_TEXT.split())


def _stub_tool(raw: Mapping[str, Any]) -> str | None:
    """The tool the stub calls: the first declared function, unless the conversation already
    has a tool result or ``tool_choice`` is ``"none"`` (a named ``tool_choice`` is obeyed)."""
    tools = raw.get("tools")
    if not isinstance(tools, list) or not tools or raw.get("tool_choice") == "none":
        return None
    messages = raw.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    choice = raw.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    first = tools[0] if isinstance(tools[0], dict) else {}
    name = (first.get("function") or {}).get("name")
    return name if isinstance(name, str) else None


class StubUpstream:
    """Deterministic answers: the words are chosen by a hash of the prompt.

    When the request declares tools (``tools`` in its body), the stub calls the first one (or the
    one ``tool_choice`` names) with arguments ``{"query": <the first answer word>}`` until the
    conversation holds a tool result; it then answers with text.

    Args:
        models: model names served.
        delay_s: simulated model latency per answer.
        words: answer length when the request does not ask for fewer (``max_tokens``).
    """

    name = "stub"
    capabilities = UpstreamCapabilities()

    def __init__(
        self, *, models: Sequence[str] = ("stub-1",), delay_s: float = 0.0, words: int = 16
    ) -> None:
        self._models = list(models)
        self.delay_s = delay_s
        self.words = words

    def __repr__(self) -> str:
        return f"StubUpstream(models={self._models!r})"

    def models(self) -> list[str]:
        """The model names served."""
        return list(self._models)

    def answer(self, request: CompletionRequest) -> CompletionResult:
        """The deterministic answer to ``request``."""
        limit = request.max_tokens if request.max_tokens is not None else self.words
        n = max(1, min(self.words, limit))
        seed = hashlib.blake2b(request.prompt_text.encode(), digest_size=32).digest()
        text = " ".join(_WORDS[seed[i % 32] % len(_WORDS)] for i in range(n))
        prompt_tokens = max(1, count_tokens(request.prompt_text))
        tool = _stub_tool(request.raw) if request.kind == "chat" else None
        if tool is not None:
            arguments = orjson.dumps({"query": text.split(" ", 1)[0]}).decode()
            call = {
                "id": "call_" + seed[:8].hex(),
                "type": "function",
                "function": {"name": tool, "arguments": arguments},
            }
            return CompletionResult(
                text="",
                prompt_tokens=prompt_tokens,
                completion_tokens=max(1, count_tokens(arguments)),
                finish_reason="tool_calls",
                tool_calls=(call,),
            )
        return CompletionResult(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=n,
            finish_reason="length" if n == request.max_tokens else "stop",
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The deterministic answer (after ``delay_s``)."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.answer(request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str | CompletionResult]:
        """The answer word by word, then the result."""
        result = await self.complete(request)
        if result.text:
            words = result.text.split(" ")
            for i, w in enumerate(words):
                yield w if i == 0 else " " + w
        yield result

    def ready(self) -> bool:
        """Always ready."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


# -- circuit breaker ----------------------------------------------------------------------------

MAX_COOL_DOWN_S = 600.0
"""The longest an upstream's ``Retry-After`` keeps the gateway from calling it."""


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``reset_s`` lets one trial through.

    States: ``closed`` (normal), ``open`` (calls refused at once), ``half_open`` (one trial call;
    success closes, failure opens again).
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._count = 0
        self._opened_at: float | None = None
        self._trial = False
        self._cool_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r})"

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        """The current state."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now?"""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial:
                self._trial = True
                return True
            return False

    def cool_down(self, seconds: float, *, key: str = "") -> None:
        """Refuse calls for ``key`` (a model) for ``seconds`` (the upstream's ``Retry-After``
        after a 429), at most :data:`MAX_COOL_DOWN_S`; the circuit's state does not change."""
        now = self._clock()
        until = now + min(max(seconds, 0.0), MAX_COOL_DOWN_S)
        with self._lock:
            if len(self._cool_until) > 10_000:  # bounded: drop what has expired
                self._cool_until = {k: t for k, t in self._cool_until.items() if t > now}
            self._cool_until[key] = max(self._cool_until.get(key, 0.0), until)

    def cooling_for(self, key: str = "") -> float:
        """Seconds left of ``key``'s cool-down (0 when none)."""
        until = self._cool_until.get(key)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def success(self) -> None:
        """Record a success (closes the circuit)."""
        with self._lock:
            self._count = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> None:
        """Record a failure (may open the circuit)."""
        with self._lock:
            self._count += 1
            self._trial = False
            if self._count >= self.failures or self._opened_at is not None:
                self._opened_at = self._clock()


# -- OpenAI-compatible URL ----------------------------------------------------------------------

_RETRY_STATUS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class UpstreamHints:
    """What to tell the operator when an upstream call fails (see :func:`send_with_retries`)."""

    circuit_open: str
    timeout: str
    unreachable: str


_TEXT_HINTS = UpstreamHints(
    circuit_open="the gateway retries it automatically after gateway.breaker_reset_s",
    timeout="raise gateway.upstream_timeout_s or check the upstream",
    unreachable="check gateway.upstream_url and that the model server runs",
)


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header value in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:9]), 86_400))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_MAX_ERROR_BODY = 64 << 10  # an upstream's error body passed on is cut here
_JSON = {"content-type": "application/json"}


async def _http_error(response: httpx.Response, what: str) -> UpstreamHTTPError:
    """The upstream's error answer (``response``, read and closed) as an exception."""
    try:
        body = (await response.aread())[:_MAX_ERROR_BODY]
    except httpx.HTTPError:
        body = b""
    finally:
        await response.aclose()
    status = response.status_code
    return UpstreamHTTPError(
        f"{what} refused the request (HTTP {status})"
        if status < 500
        else f"{what} failed (HTTP {status})",
        status=status,
        body=body,
        content_type=response.headers.get("content-type", "application/json"),
        retry_after=retry_after_s(response.headers.get("retry-after")),
    )


def _cooling(what: str, wait: float) -> UpstreamHTTPError:
    message = f"{what} asked to wait; retry after {math.ceil(wait)} s"
    body = orjson.dumps(
        {"error": {"message": message, "type": "rate_limit_error", "code": "upstream_rate_limited"}}
    )
    return UpstreamHTTPError(message, status=429, body=body, retry_after=wait)


async def send_with_retries(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    *,
    stream: bool,
    breaker: CircuitBreaker,
    retries: int,
    backoff_s: float,
    what: str,
    hints: UpstreamHints,
) -> httpx.Response:
    """POST ``body`` to ``path`` through the circuit breaker, retrying what may succeed later.

    Connection errors and HTTP 500/502/503/504 are retried up to ``retries`` times with
    exponential backoff (``backoff_s * 2**attempt``); a timeout is not retried (the caller's
    deadline is spent). A 4xx answer means the upstream works and refused this request: the
    breaker records a success and the call fails at once with the upstream's answer. A 429 also
    starts the breaker's cool-down of the body's model for its ``Retry-After``: until it passes,
    calls for that model fail at once with a 429 without reaching the upstream. ``what`` names
    the upstream in the error messages ("the upstream", "the image upstream").

    Raises:
        UpstreamTimeoutError: no answer in time; UpstreamHTTPError: the upstream answered an
            HTTP error (its status, body and ``Retry-After`` kept), or is cooling down after a
            429; UpstreamError: the circuit is open, or the upstream cannot be reached.
    """
    model = body.get("model")
    key = model if isinstance(model, str) else ""
    wait = breaker.cooling_for(key)
    if wait > 0:
        raise _cooling(what, wait)
    if not breaker.allow():
        raise UpstreamError(
            f"{what} circuit is open after repeated failures", hint=hints.circuit_open
        )
    attempt = 0
    while True:
        failure: UpstreamError
        try:
            response = await client.send(
                client.build_request(
                    "POST",
                    path,
                    content=orjson.dumps(body),
                    headers=_JSON | outgoing_headers(),  # X-Request-Id, traceparent
                ),
                stream=stream,
            )
        except httpx.TimeoutException:
            breaker.failure()
            raise UpstreamTimeoutError(
                f"{what} did not answer in time", hint=hints.timeout
            ) from None
        except httpx.HTTPError as exc:
            failure = UpstreamError(
                f"cannot reach {what}: {type(exc).__name__}", hint=hints.unreachable
            )
        else:
            status = response.status_code
            if status < 400:
                return response
            if status < 500 or status not in _RETRY_STATUS or attempt >= retries:
                error = await _http_error(response, what)
                if status < 500:
                    breaker.success()  # the upstream works; the request was refused
                    if status == 429:
                        breaker.cool_down(error.retry_after or 0.0, key=key)
                else:
                    breaker.failure()
                raise error
            await response.aclose()
            failure = UpstreamError(f"{what} failed (HTTP {status})")
        if attempt >= retries:
            breaker.failure()
            raise failure
        await asyncio.sleep(backoff_s * (2**attempt))
        attempt += 1


def loads_lenient(raw: bytes | str) -> Any:
    """JSON as an upstream may write it: strict JSON fast; otherwise what Python's reader
    accepts (``NaN``, ``Infinity``: the token counts' checks refuse them with a clear message),
    as long as it can be written out again (no lone surrogate, which would break the answer
    passed on to the client).

    Raises:
        ValueError: not JSON, or strings that are not valid Unicode.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError("not JSON") from None
    try:
        orjson.dumps(data)
    except TypeError:
        raise ValueError("strings that are not valid Unicode (a lone surrogate)") from None
    return data


def _result_from_json(data: Any, kind: str, request: CompletionRequest) -> CompletionResult:
    try:
        choice = data["choices"][0]
        tool_calls: tuple[Mapping[str, Any], ...] = ()
        if kind == "chat":
            message = choice["message"]
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            calls = message.get("tool_calls")
            if calls:
                tool_calls = check_tool_calls(calls)
        else:
            text = choice["text"]
            reasoning = None
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        prompt_tokens, completion_tokens = _usage_counts(
            data.get("usage"), request.prompt_text, text
        )
        finish = choice.get("finish_reason") or "stop"
        return check_result(
            CompletionResult(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reason=finish if isinstance(finish, str) else "stop",
                reasoning=reasoning if isinstance(reasoning, str) else None,
                tool_calls=tool_calls,
                body=data,
            )
        )
    except UpstreamError as exc:
        raise UpstreamError(exc.message, hint="check gateway.upstream_url") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UpstreamError(
            f"the upstream answered something that is not an OpenAI response ({exc})"[:300],
            hint="check gateway.upstream_url",
        ) from None


class ToolCallAccumulator:
    """Joins the tool-call deltas of an OpenAI stream into whole tool calls (by ``index``)."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"ToolCallAccumulator(calls={len(self._calls)})"

    def add(self, deltas: object) -> None:
        """Fold one chunk's ``delta.tool_calls`` in.

        Raises:
            UpstreamError: the deltas are not a list of objects with string parts.
        """
        if not isinstance(deltas, list):
            raise UpstreamError("the upstream's tool_calls delta is not a list")
        for d in deltas:
            if not isinstance(d, dict):
                raise UpstreamError("an upstream tool_calls delta is not an object")
            index = d.get("index", len(self._calls))
            if type(index) is not int or not 0 <= index < 1024:
                raise UpstreamError("an upstream tool_calls delta has a bad index")
            call = self._calls.setdefault(
                index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if d.get("id") is not None:
                call["id"] = check_text(d["id"], "a tool call's id")
            if isinstance(d.get("type"), str):
                call["type"] = d["type"]
            fn = d.get("function") or {}
            if not isinstance(fn, dict):
                raise UpstreamError("an upstream tool_calls delta's function is not an object")
            for part in ("name", "arguments"):
                piece = fn.get(part)
                if piece is not None:
                    call["function"][part] += check_text(piece, f"a tool call's {part}")

    def calls(self) -> tuple[Mapping[str, Any], ...]:
        """The whole tool calls, by index."""
        return tuple(self._calls[i] for i in sorted(self._calls))


class OpenAIUpstream:
    """Any OpenAI-compatible service (vLLM, llama.cpp server, a provider API).

    The client's body is passed on unchanged (see the module documentation); the answer's
    fields too (:attr:`CompletionResult.body`, :attr:`StreamChunk.data`).

    Args:
        base_url: the API base, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token (never logged).
        models: model names served (default: asked from ``/models`` is not done; configure).
        connect_timeout_s, read_timeout_s: httpx timeouts.
        retries: extra attempts on connection errors and 5xx, with exponential backoff.
        backoff_s: first retry delay.
        breaker: the circuit breaker (default: 5 failures, 30 s).
        transport: an httpx transport (tests: ``httpx.ASGITransport``).
        name: a label for logs (several upstreams behind a :class:`RoutedUpstream`).
    """

    capabilities = UpstreamCapabilities(passthrough=True)

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        models: Sequence[str] = (),
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "openai",
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport,
        )
        self.name = name
        self.base_url = base_url
        self._models = list(models)
        self.retries = retries
        self.backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()

    def __repr__(self) -> str:
        return f"OpenAIUpstream(base_url={self.base_url!r})"

    def models(self) -> list[str]:
        """The configured model names."""
        return list(self._models)

    def ready(self) -> bool:
        """False while the circuit is open."""
        return self.breaker.state != "open"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    @staticmethod
    def body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """What is sent: the client's body as it came, with the request's ``model`` (a route
        may rename it) and, for a stream, ``stream_options.include_usage`` (the gateway needs
        the token counts; the usage chunk reaches the client only if it asked). A request
        without a body (built in code) sends its text view."""
        if request.raw:
            body = dict(request.raw)
            body["model"] = request.model
        else:
            body = {"model": request.model}
            if request.kind == "chat":
                body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
            else:
                body["prompt"] = request.prompt
            if request.max_tokens is not None:
                body["max_tokens"] = request.max_tokens
            if request.temperature is not None:
                body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    def _path(self, request: CompletionRequest) -> str:
        return "/chat/completions" if request.kind == "chat" else "/completions"

    async def _send(self, request: CompletionRequest, *, stream: bool) -> httpx.Response:
        return await send_with_retries(
            self._client,
            self._path(request),
            self.body(request, stream=stream),
            stream=stream,
            breaker=self.breaker,
            retries=self.retries,
            backoff_s=self.backoff_s,
            what="the upstream",
            hints=_TEXT_HINTS,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The whole answer (see :class:`Upstream`)."""
        response = await self._send(request, stream=False)
        try:
            data = loads_lenient(response.content)
        except ValueError as exc:
            self.breaker.failure()
            raise UpstreamError(
                f"the upstream answered something that is not JSON: {exc}"
            ) from None
        try:
            result = _result_from_json(data, request.kind, request)
        except UpstreamError:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[str | StreamChunk | CompletionResult]:
        """The upstream's SSE chunks (:class:`StreamChunk`), then the result.

        Garbage anywhere (an event that is not OpenAI SSE, a delta or finish reason that is not
        valid Unicode, a ``usage`` that is not token counts) raises
        :class:`~distillguard.errors.UpstreamError`, also after chunks were yielded.
        """
        response = await self._send(request, stream=True)
        parts: list[str] = []
        tools = ToolCallAccumulator()
        usage: object = None
        finish: object = "stop"
        chat = request.kind == "chat"
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                delta: object = None
                try:
                    event = loads_lenient(data)
                    if not isinstance(event, dict):
                        raise TypeError("not an object")
                    if event.get("usage"):
                        usage = event["usage"]
                    choices = event.get("choices") or []
                    for choice in choices:
                        if choice.get("index", 0) != 0:
                            continue
                        if chat:
                            d = choice.get("delta") or {}
                            delta = d.get("content")
                            if d.get("tool_calls"):
                                tools.add(d["tool_calls"])
                        else:
                            delta = choice.get("text")
                        finish = choice.get("finish_reason") or finish
                except (ValueError, AttributeError, TypeError, KeyError, RecursionError) as exc:
                    why = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
                    raise UpstreamError(
                        f"the upstream stream is not OpenAI SSE ({why})"[:300]
                    ) from None
                text = ""
                if isinstance(delta, str) and delta:
                    text = check_text(delta, "a delta of the upstream stream")
                    parts.append(text)
                yield StreamChunk(text=text, data=event)
            text = "".join(parts)
            prompt_tokens, completion_tokens = _usage_counts(usage, request.prompt_text, text)
            result = check_result(
                CompletionResult(
                    text=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    finish_reason=finish if isinstance(finish, str) else "stop",
                    tool_calls=tools.calls(),
                )
            )
        except UpstreamError:
            self.breaker.failure()
            raise
        except httpx.TimeoutException:
            self.breaker.failure()
            raise UpstreamTimeoutError("the upstream stream stalled") from None
        except httpx.HTTPError as exc:
            self.breaker.failure()
            raise UpstreamError(f"the upstream stream broke: {type(exc).__name__}") from None
        finally:
            await response.aclose()
        self.breaker.success()
        yield result


# -- local transformers model -------------------------------------------------------------------

_LOCAL_MAX_TOKENS = 256  # a local model's answer length when the request gives none


class LocalModelUpstream:
    """A local ``transformers`` causal LM (a path), generating in a worker thread.

    Args:
        path: model folder (``from_pretrained``); the tokenizer is read from the same folder.
        model_name: the name served (default: the folder name).
        scheme_for: returns the watermark scheme for a payload (None: no payload), or None
            for no watermark; built from the keyring's watermark key by the gateway.
    """

    name = "local"

    def __init__(
        self,
        *,
        path: Any,
        model_name: str | None = None,
        scheme_for: Callable[[int | None], Any] | None = None,
    ) -> None:
        from pathlib import Path

        from distillguard.errors import ConfigurationError, DependencyMissingError

        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise DependencyMissingError(
                "the local model upstream needs transformers and torch",
                hint="pip install 'distillguard[ml]'",
            ) from None
        p = Path(path)
        if not p.is_dir():
            raise ConfigurationError(f"model folder {p} does not exist")
        self.model = AutoModelForCausalLM.from_pretrained(str(p))
        self.model.eval()  # type: ignore[no-untyped-call]
        self.tokenizer = AutoTokenizer.from_pretrained(str(p))
        self._name = model_name or p.name
        self._scheme_for = scheme_for
        self.capabilities = UpstreamCapabilities(generation_watermark=scheme_for is not None)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalModelUpstream(model={self._name!r})"

    def models(self) -> list[str]:
        """The one model served."""
        return [self._name]

    def ready(self) -> bool:
        """Always ready once loaded."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""

    def _generate(self, request: CompletionRequest) -> CompletionResult:
        from distillguard.watermark.hf import generate_watermarked

        scheme = self._scheme_for(request.payload) if self._scheme_for else None
        temperature = 1.0 if request.temperature is None else request.temperature
        with self._lock:
            out = generate_watermarked(
                self.model,
                self.tokenizer,
                [request.prompt_text or " "],
                scheme=scheme,
                max_new_tokens=max(1, request.max_tokens or _LOCAL_MAX_TOKENS),
                do_sample=temperature > 0,
                temperature=max(temperature, 1e-3),
            )
        n_prompt = out.prompt_lengths[0]
        return CompletionResult(
            text=out.texts[0],
            prompt_tokens=n_prompt,
            completion_tokens=len(out.token_ids[0]) - n_prompt,
            finish_reason="length",
            watermarked=scheme is not None,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """Generate in a worker thread."""
        try:
            return await asyncio.to_thread(self._generate, request)
        except Exception as exc:  # a model failure is an upstream failure, not a crash
            logger.exception("local model generation failed")
            raise UpstreamError(f"the local model failed: {type(exc).__name__}") from None

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str | CompletionResult]:
        """The generated answer as one delta, then the result."""
        result = await self.complete(request)
        if result.text:
            yield result.text
        yield result


# -- several upstreams, routed by model ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Where requests for some models go.

    Attributes:
        models: model names (``*`` at the end matches a prefix: ``gpt-*``; ``*`` alone, any).
        upstreams: tried in order; the next one when one fails with a failure another may not
            have (unreachable, timeout, 5xx, 429, circuit open); a 4xx answer is final.
        model: the name the upstreams are asked for (None: the client's).
    """

    models: tuple[str, ...]
    upstreams: tuple[Upstream, ...]
    model: str | None = None

    def matches(self, model: str) -> bool:
        """Whether this route serves ``model``."""
        for pattern in self.models:
            if pattern == model or (pattern.endswith("*") and model.startswith(pattern[:-1])):
                return True
        return False


def _worth_another(exc: Exception) -> bool:
    if isinstance(exc, UpstreamHTTPError):
        return exc.retryable
    return isinstance(exc, UpstreamError)


class RoutedUpstream:
    """Several upstreams behind one :class:`Upstream`: each request goes to the first route
    whose models match, and to that route's upstreams in order until one answers.

    A stream falls back only before its first event; once text has reached the client, a
    failure is the stream's failure. Capabilities are those every upstream has.

    Args:
        routes: the routes, first match wins.
        served: the model names the gateway lists and accepts (default: the routes' exact
            names); each must match a route.

    Raises:
        ValueError: no route, a route without upstreams, or a served name no route matches.
    """

    name = "routed"

    def __init__(self, routes: Sequence[Route], *, served: Sequence[str] = ()) -> None:
        if not routes or any(not r.upstreams for r in routes):
            raise ValueError("RoutedUpstream needs routes, each with at least one upstream")
        self.routes = tuple(routes)
        unrouted = [m for m in served if not self.serves(m)]
        if unrouted:
            raise ValueError(f"no route matches the served models {unrouted}")
        self._served = list(served)
        every = [u for r in self.routes for u in r.upstreams]
        self.capabilities = UpstreamCapabilities(
            generation_watermark=all(u.capabilities.generation_watermark for u in every),
            passthrough=any(u.capabilities.passthrough for u in every),
        )

    def __repr__(self) -> str:
        return f"RoutedUpstream(routes={len(self.routes)})"

    def models(self) -> list[str]:
        """The served names, or the exact model names of every route (patterns with ``*`` are
        not listed)."""
        if self._served:
            return list(self._served)
        names: list[str] = []
        for r in self.routes:
            names += [m for m in r.models if "*" not in m and m not in names]
        return names

    def serves(self, model: str) -> bool:
        """Whether a route matches ``model``."""
        return any(r.matches(model) for r in self.routes)

    def route(self, model: str) -> Route:
        """The route of ``model``.

        Raises:
            UpstreamHTTPError: no route serves it (404).
        """
        for r in self.routes:
            if r.matches(model):
                return r
        message = f"no upstream serves the model {model!r}"
        raise UpstreamHTTPError(
            message,
            status=404,
            body=orjson.dumps(
                {
                    "error": {
                        "message": message,
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                }
            ),
        )

    @staticmethod
    def _for(route: Route, request: CompletionRequest) -> CompletionRequest:
        if route.model is None or route.model == request.model:
            return request
        return dataclasses.replace(request, model=route.model)

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The first answer of the route's upstreams (see the class documentation)."""
        route = self.route(request.model)
        asked = self._for(route, request)
        last: Exception | None = None
        for upstream in route.upstreams:
            try:
                return await upstream.complete(asked)
            except Exception as exc:
                if not _worth_another(exc):
                    raise
                logger.warning("upstream %s failed (%s); trying the next", upstream.name, exc)
                last = exc
        assert last is not None
        raise last

    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[str | StreamChunk | CompletionResult]:
        """The first stream of the route's upstreams that starts."""
        route = self.route(request.model)
        asked = self._for(route, request)
        last: Exception | None = None
        for upstream in route.upstreams:
            events = upstream.stream(asked)
            try:
                first = await anext(aiter(events))
            except StopAsyncIteration:
                raise UpstreamError(f"upstream {upstream.name} sent an empty stream") from None
            except Exception as exc:
                if not _worth_another(exc):
                    raise
                logger.warning("upstream %s failed (%s); trying the next", upstream.name, exc)
                last = exc
                continue
            yield first
            async for event in events:
                yield event
            return
        assert last is not None
        raise last

    def ready(self) -> bool:
        """Whether every route has an upstream ready."""
        return all(any(u.ready() for u in r.upstreams) for r in self.routes)

    async def aclose(self) -> None:
        """Close every upstream."""
        for r in self.routes:
            for u in r.upstreams:
                await u.aclose()


def routed_upstream(
    settings: GatewaySettings, *, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> RoutedUpstream:
    """The :class:`RoutedUpstream` of ``[gateway.upstreams]`` and ``[[gateway.routes]]``: one
    :class:`OpenAIUpstream` per named upstream (its own circuit breaker; timeouts and retries
    from ``[gateway]``), shared by the routes that name it.

    ``transports`` (tests) replaces the HTTP transport of named upstreams.

    Raises:
        ValueError: no route is configured.
    """
    if not settings.routes:
        raise ValueError("no [[gateway.routes]] configured")
    built: dict[str, Upstream] = {}
    for name, cfg in settings.upstreams.items():
        built[name] = OpenAIUpstream(
            base_url=cfg.url,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            models=(),
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_timeout_s,
            retries=settings.upstream_retries,
            breaker=CircuitBreaker(
                failures=settings.breaker_failures, reset_s=settings.breaker_reset_s
            ),
            transport=(transports or {}).get(name),
            name=name,
        )
    routes = [
        Route(
            models=tuple(r.models),
            upstreams=tuple(built[n] for n in r.upstreams),
            model=r.model,
        )
        for r in settings.routes
    ]
    return RoutedUpstream(routes, served=settings.models)


# -- the stub as its own HTTP service -----------------------------------------------------------


def stub_app(stub: StubUpstream | None = None) -> Any:
    """An OpenAI-compatible ASGI app answering with :class:`StubUpstream` (no auth, no record).

    Chat and completions, whole or streamed (with ``stream_options.include_usage``), tool calls
    included. Used as the "direct" baseline of the gateway benchmark and as a real upstream in
    tests.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route as StarletteRoute

    upstream = stub or StubUpstream()

    def text_of(content: object) -> str:
        if isinstance(content, list):
            return "".join(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        return content if isinstance(content, str) else ""

    def usage(res: CompletionResult) -> dict[str, int]:
        return {
            "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens,
            "total_tokens": res.prompt_tokens + res.completion_tokens,
        }

    async def answer(body: dict[str, Any], kind: Literal["chat", "completion"]) -> Response:
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        req = CompletionRequest(
            kind=kind,
            model=str(body.get("model", "stub-1")),
            messages=tuple(
                (str(m.get("role")), text_of(m.get("content")))
                for m in body.get("messages") or []
                if isinstance(m, dict)
            ),
            prompt=str(body.get("prompt", "")),
            max_tokens=int(max_tokens) if max_tokens else None,
            raw=body,
        )
        res = await upstream.complete(req)
        created = int(time.time())
        cid = "chatcmpl-stub" if kind == "chat" else "cmpl-stub"
        if not body.get("stream"):
            if kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": res.text or None}
                if res.tool_calls:
                    message["tool_calls"] = [dict(c) for c in res.tool_calls]
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": message,
                    "finish_reason": res.finish_reason,
                }
            else:
                choice = {"index": 0, "text": res.text, "finish_reason": res.finish_reason}
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion" if kind == "chat" else "text_completion",
                    "created": created,
                    "model": req.model,
                    "choices": [choice],
                    "usage": usage(res),
                }
            )
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
            frame = {"id": cid, "object": obj, "created": created, "model": req.model}
            return b"data: " + orjson.dumps({**frame, "choices": choices, **more}) + b"\n\n"

        def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            if kind == "chat":
                return {"index": 0, "delta": d, "finish_reason": finish}
            return {"index": 0, "text": d.get("content", ""), "finish_reason": finish}

        async def events() -> AsyncIterator[bytes]:
            if kind == "chat":
                yield event([delta({"role": "assistant", "content": ""})])
            for i, word in enumerate(res.text.split(" ") if res.text else []):
                yield event([delta({"content": word if i == 0 else " " + word})])
            for i, call in enumerate(res.tool_calls):
                fn = call["function"]
                head = {"index": i, "id": call["id"], "type": "function"}
                yield event([delta({"tool_calls": [{**head, "function": {"name": fn["name"]}}]})])
                args = fn["arguments"]
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    yield event(
                        [delta({"tool_calls": [{"index": i, "function": {"arguments": part}}]})]
                    )
            yield event([delta({}, res.finish_reason)])
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                yield event([], usage=usage(res))
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def chat(request: Request) -> Response:
        return await answer(await request.json(), "chat")

    async def completions(request: Request) -> Response:
        return await answer(await request.json(), "completion")

    return Starlette(
        routes=[
            StarletteRoute("/v1/chat/completions", chat, methods=["POST"]),
            StarletteRoute("/v1/completions", completions, methods=["POST"]),
        ]
    )
