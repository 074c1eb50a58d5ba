"""The model behind the gateway, behind one interface (:class:`Upstream`).

* :class:`StubUpstream`: deterministic answers computed from the prompt, no model (tests and
  benchmarks); :func:`stub_app` serves it as its own OpenAI-compatible HTTP service.
* :class:`OpenAIUpstream`: any OpenAI-compatible URL over ``httpx``, with connect and read
  timeouts, retries with backoff on connection errors and 5xx, and a :class:`CircuitBreaker`;
  failures raise :class:`~distillguard.errors.UpstreamError` (502) or
  :class:`~distillguard.errors.UpstreamTimeoutError` (504).
* :class:`LocalModelUpstream`: a local ``transformers`` causal LM from a path, generating with
  the generation-time watermark of :mod:`distillguard.watermark` when a scheme is given.

Streaming: :meth:`Upstream.stream` yields text deltas and ends with the
:class:`CompletionResult` of the whole answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from distillguard.errors import UpstreamError, UpstreamTimeoutError

__all__ = [
    "CircuitBreaker",
    "CompletionRequest",
    "CompletionResult",
    "LocalModelUpstream",
    "OpenAIUpstream",
    "StubUpstream",
    "Upstream",
    "UpstreamHints",
    "check_result",
    "check_text",
    "count_tokens",
    "send_with_retries",
    "stub_app",
]

logger = logging.getLogger(__name__)


def count_tokens(text: str) -> int:
    """A model-independent token estimate: whitespace-separated words (at least 1 if any)."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What the gateway asks of the model.

    ``messages`` are ``(role, content)`` pairs (chat); ``prompt`` is set for ``/v1/completions``.
    ``payload`` is the per-account watermark payload when the policy asks for one.
    """

    kind: Literal["chat", "completion"]
    model: str
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str = ""
    max_tokens: int = 16
    temperature: float = 1.0
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
    """The model's answer and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    reasoning: str | None = None
    watermarked: bool = False


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
    return result


class Upstream(Protocol):
    """The model the gateway protects."""

    name: str

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

    def stream(self, request: CompletionRequest) -> AsyncIterator[str | CompletionResult]:
        """Text deltas, then the :class:`CompletionResult` of the whole answer."""
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


class StubUpstream:
    """Deterministic answers: the words are chosen by a hash of the prompt.

    Args:
        models: model names served.
        delay_s: simulated model latency per answer.
        words: answer length when the request does not ask for fewer (``max_tokens``).
    """

    name = "stub"

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
        n = max(1, min(self.words, request.max_tokens))
        seed = hashlib.blake2b(request.prompt_text.encode(), digest_size=32).digest()
        text = " ".join(_WORDS[seed[i % 32] % len(_WORDS)] for i in range(n))
        return CompletionResult(
            text=text,
            prompt_tokens=max(1, count_tokens(request.prompt_text)),
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
    breaker records a success and the call fails without retry. ``what`` names the upstream in
    the error messages ("the upstream", "the image upstream").

    Raises:
        UpstreamTimeoutError: no answer in time; UpstreamError: the circuit is open, the upstream
            cannot be reached, failed, or refused the request (``details.upstream_status``).
    """
    if not breaker.allow():
        raise UpstreamError(
            f"{what} circuit is open after repeated failures", hint=hints.circuit_open
        )
    attempt = 0
    while True:
        failure: UpstreamError
        try:
            response = await client.send(
                client.build_request("POST", path, json=body), stream=stream
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
            if response.status_code < 400:
                return response
            if response.status_code < 500:
                await response.aread()  # drain it so that the connection can be reused
                await response.aclose()
                breaker.success()  # the upstream works; the request was refused
                raise UpstreamError(
                    f"{what} refused the request (HTTP {response.status_code})",
                    details={"upstream_status": response.status_code},
                )
            await response.aclose()
            failure = UpstreamError(f"{what} failed (HTTP {response.status_code})")
            if response.status_code not in _RETRY_STATUS:
                breaker.failure()
                raise failure
        if attempt >= retries:
            breaker.failure()
            raise failure
        await asyncio.sleep(backoff_s * (2**attempt))
        attempt += 1


def _result_from_json(data: Any, kind: str, request: CompletionRequest) -> CompletionResult:
    try:
        choice = data["choices"][0]
        if kind == "chat":
            message = choice["message"]
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
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
            )
        )
    except UpstreamError as exc:
        raise UpstreamError(exc.message, hint="check gateway.upstream_url") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UpstreamError(
            f"the upstream answered something that is not an OpenAI response ({exc})"[:300],
            hint="check gateway.upstream_url",
        ) from None


class OpenAIUpstream:
    """Any OpenAI-compatible service (vLLM, llama.cpp server, a provider API).

    Args:
        base_url: the API base, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token (never logged).
        models: model names served (default: asked from ``/models`` is not done; configure).
        connect_timeout_s, read_timeout_s: httpx timeouts.
        retries: extra attempts on connection errors and 5xx, with exponential backoff.
        backoff_s: first retry delay.
        breaker: the circuit breaker (default: 5 failures, 30 s).
        transport: an httpx transport (tests: ``httpx.ASGITransport``).
    """

    name = "openai"

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
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport,
        )
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
    def _body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.kind == "chat":
            body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
        else:
            body["prompt"] = request.prompt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _path(self, request: CompletionRequest) -> str:
        return "/chat/completions" if request.kind == "chat" else "/completions"

    async def _send(self, request: CompletionRequest, *, stream: bool) -> httpx.Response:
        return await send_with_retries(
            self._client,
            self._path(request),
            self._body(request, stream=stream),
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
            data = response.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.breaker.failure()
            raise UpstreamError("the upstream answered something that is not JSON") from None
        try:
            result = _result_from_json(data, request.kind, request)
        except UpstreamError:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str | CompletionResult]:
        """Deltas of the upstream's SSE stream, then the result.

        Garbage anywhere (an event that is not OpenAI SSE, a delta or finish reason that is not
        valid Unicode, a ``usage`` that is not token counts) raises
        :class:`~distillguard.errors.UpstreamError`, also after deltas were yielded.
        """
        response = await self._send(request, stream=True)
        parts: list[str] = []
        usage: object = None
        finish: object = "stop"
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                    if event.get("usage"):
                        usage = event["usage"]
                    choices = event.get("choices") or []
                    if not choices:
                        continue
                    choice = choices[0]
                    delta = (
                        (choice.get("delta") or {}).get("content")
                        if request.kind == "chat"
                        else choice.get("text")
                    )
                    finish = choice.get("finish_reason") or finish
                except (ValueError, AttributeError, TypeError, KeyError, RecursionError):
                    raise UpstreamError("the upstream stream is not OpenAI SSE") from None
                if isinstance(delta, str) and delta:
                    parts.append(check_text(delta, "a delta of the upstream stream"))
                    yield delta
            text = "".join(parts)
            prompt_tokens, completion_tokens = _usage_counts(usage, request.prompt_text, text)
            result = check_result(
                CompletionResult(
                    text=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    finish_reason=finish if isinstance(finish, str) else "stop",
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
        with self._lock:
            out = generate_watermarked(
                self.model,
                self.tokenizer,
                [request.prompt_text or " "],
                scheme=scheme,
                max_new_tokens=max(1, request.max_tokens),
                do_sample=request.temperature > 0,
                temperature=max(request.temperature, 1e-3),
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


# -- the stub as its own HTTP service -----------------------------------------------------------


def stub_app(stub: StubUpstream | None = None) -> Any:
    """An OpenAI-compatible ASGI app answering with :class:`StubUpstream` (no auth, no record).

    Used as the "direct" baseline of the gateway benchmark and as a real upstream in tests.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    upstream = stub or StubUpstream()

    async def chat(request: Request) -> Response:
        body = await request.json()
        req = CompletionRequest(
            kind="chat",
            model=str(body.get("model", "stub-1")),
            messages=tuple((m["role"], m["content"]) for m in body.get("messages", [])),
            max_tokens=int(body.get("max_tokens") or 16),
        )
        res = await upstream.complete(req)
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": res.text},
                        "finish_reason": res.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": res.completion_tokens,
                    "total_tokens": res.prompt_tokens + res.completion_tokens,
                },
            }
        )

    async def completions(request: Request) -> Response:
        body = await request.json()
        req = CompletionRequest(
            kind="completion",
            model=str(body.get("model", "stub-1")),
            prompt=str(body.get("prompt", "")),
            max_tokens=int(body.get("max_tokens") or 16),
        )
        res = await upstream.complete(req)
        return JSONResponse(
            {
                "id": "cmpl-stub",
                "object": "text_completion",
                "created": int(time.time()),
                "model": req.model,
                "choices": [{"index": 0, "text": res.text, "finish_reason": res.finish_reason}],
                "usage": {
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": res.completion_tokens,
                    "total_tokens": res.prompt_tokens + res.completion_tokens,
                },
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ]
    )
