"""Closed mode: the suspect is only reachable through an OpenAI-compatible API.

The suspect is prompted (prompts from our logs, or a probe set), its answers are tokenized with the
watermark's tokenizer and scored with the run's deduplication tape and the optional k-gram filter;
the pooled p-value is reported after every batch of answers, so the curve streams as answers
arrive. An independent model's answers carry no green bias, so each deduplicated (window, token)
pair is green with probability exactly ``gamma`` and the test is exact.

The client (:class:`SuspectClient`) uses httpx with concurrency, retries with exponential backoff
on timeouts, connection errors, 429 and 5xx, and raises :class:`~distillguard.errors.UpstreamError`
when an answer cannot be had. Any httpx transport can be given (``httpx.ASGITransport`` to test
against a local app, no network).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError, UpstreamError, UpstreamTimeoutError
from distillguard.radioactivity._pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    TokenText,
)
from distillguard.radioactivity._results import ModeResult
from distillguard.watermark import WatermarkScheme

__all__ = ["EndpointConfig", "SuspectClient", "score_closed"]

logger = logging.getLogger(__name__)

Encoder = Callable[[str], npt.NDArray[np.int64]]


@dataclass(frozen=True)
class EndpointConfig:
    """How to query a suspect endpoint.

    Attributes:
        url: base URL of an OpenAI-compatible API (``.../v1``).
        model: the ``model`` field of requests.
        api_key: bearer token (never logged or shown in reprs).
        chat: use ``/chat/completions`` (else ``/completions``).
        max_tokens: answer length asked for.
        temperature: sampling temperature asked for.
        timeout_s: per-request timeout.
        retries: attempts after the first one, on timeouts, connection errors, 429 and 5xx.
        backoff_s: first retry delay (doubles each time).
        concurrency: requests in flight at once.
    """

    url: str
    model: str = "suspect"
    api_key: str | None = field(default=None, repr=False)
    chat: bool = True
    max_tokens: int = 128
    temperature: float = 1.0
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"endpoint URL must be http(s), got {self.url!r}")
        if self.max_tokens < 1 or self.concurrency < 1 or self.retries < 0:
            raise InputError("max_tokens and concurrency must be >= 1, retries >= 0")


class SuspectClient:
    """Asks an OpenAI-compatible endpoint for answers to prompts (async, concurrent, retried)."""

    def __init__(
        self, config: EndpointConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.config = config
        self._transport = transport

    def __repr__(self) -> str:
        return f"SuspectClient(url={self.config.url!r}, model={self.config.model!r})"

    def _request(self, prompt: str, temperature: float | None) -> tuple[str, dict[str, object]]:
        c = self.config
        base: dict[str, object] = {
            "model": c.model,
            "max_tokens": c.max_tokens,
            "temperature": c.temperature if temperature is None else temperature,
        }
        if c.chat:
            return "/chat/completions", {**base, "messages": [{"role": "user", "content": prompt}]}
        return "/completions", {**base, "prompt": prompt}

    @staticmethod
    def _text(payload: object, chat: bool) -> str:
        try:
            choice = payload["choices"][0]  # type: ignore[index]
            text = choice["message"]["content"] if chat else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(
                "the endpoint's answer is not an OpenAI-compatible completion",
                hint="check --endpoint points at the /v1 base of an OpenAI-compatible API",
            ) from exc
        return str(text or "")

    async def _one(
        self,
        client: httpx.AsyncClient,
        sem: asyncio.Semaphore,
        prompt: str,
        temperature: float | None = None,
    ) -> str:
        path, body = self._request(prompt, temperature)
        delay = self.config.backoff_s
        last: Exception | None = None
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            async with sem:
                try:
                    resp = await client.post(path, json=body)
                except httpx.TimeoutException as exc:
                    last = UpstreamTimeoutError(
                        f"the endpoint timed out ({exc.__class__.__name__})"
                    )
                    continue
                except httpx.TransportError as exc:
                    last = UpstreamError(f"cannot reach the endpoint: {exc.__class__.__name__}")
                    continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = UpstreamError(f"the endpoint answered HTTP {resp.status_code}")
                logger.info("endpoint HTTP %d, retrying (%d)", resp.status_code, attempt + 1)
                continue
            if resp.status_code >= 400:
                raise UpstreamError(
                    f"the endpoint refused the request: HTTP {resp.status_code}",
                    hint="check --endpoint, --endpoint-model and the API key",
                )
            return self._text(resp.json(), self.config.chat)
        assert last is not None
        raise last

    async def acomplete(
        self, prompts: Sequence[str], temperatures: Sequence[float] | None = None
    ) -> list[str]:
        """Answers to ``prompts``, in order; ``temperatures`` (one per prompt) override the
        configured temperature (e.g. 0 for a greedy answer)."""
        temps = _temperatures(prompts, temperatures)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        sem = asyncio.Semaphore(self.config.concurrency)
        async with httpx.AsyncClient(
            base_url=self.config.url.rstrip("/"),
            headers=headers,
            timeout=self.config.timeout_s,
            transport=self._transport,
        ) as client:
            return list(
                await asyncio.gather(
                    *(self._one(client, sem, p, t) for p, t in zip(prompts, temps, strict=True))
                )
            )

    def complete(
        self, prompts: Sequence[str], temperatures: Sequence[float] | None = None
    ) -> list[str]:
        """Blocking form of :meth:`acomplete`."""
        return asyncio.run(self.acomplete(prompts, temperatures))


def _temperatures(
    prompts: Sequence[str], temperatures: Sequence[float] | None
) -> list[float | None]:
    if temperatures is None:
        return [None] * len(prompts)
    if len(temperatures) != len(prompts) or any(t < 0 for t in temperatures):
        raise InputError("give one non-negative temperature per prompt")
    return [float(t) for t in temperatures]


def score_closed(
    client: SuspectClient,
    prompts: Sequence[str],
    scheme: WatermarkScheme,
    encode: Encoder,
    *,
    subject: str,
    role: str = "suspect",
    kgram_filter: KgramFilter | None = None,
    batch_size: int = 32,
    on_point: Callable[[CurvePoint], None] | None = None,
    scorer: RadioactivityScorer | None = None,
    on_answers: Callable[[Sequence[str]], None] | None = None,
    temperatures: Sequence[float] | None = None,
) -> ModeResult:
    """The closed-mode test: prompt the endpoint in batches, score the answers as they arrive.

    ``temperatures`` (one per prompt) override the client's temperature: asking each prompt
    once at 0 (greedy) and a few times sampled gets the most out of a student that memorised
    our answers; repeated answers are scored once (deduplication).

    Answers are tokenized with ``encode`` (the watermark's tokenizer) and scored whole: each
    answer's first ``h`` tokens are context only. Pass a ``scorer`` to keep the pooled
    per-token scores afterwards (e.g. for tracing).
    """
    if not prompts:
        raise InputError("closed mode needs at least one prompt")
    if scorer is None:
        scorer = RadioactivityScorer(scheme, kgram_filter=kgram_filter)
    elif scorer.scheme is not scheme:
        raise InputError("the scorer given must use the same scheme")

    _temperatures(prompts, temperatures)  # checked before anything is asked

    async def run() -> None:
        for i in range(0, len(prompts), batch_size):
            answers = await client.acomplete(
                prompts[i : i + batch_size],
                None if temperatures is None else temperatures[i : i + batch_size],
            )
            if on_answers is not None:
                on_answers(answers)
            point = scorer.add_texts([TokenText.of(encode(a)) for a in answers])
            if on_point is not None:
                on_point(point)

    asyncio.run(run())
    return ModeResult.from_scorer(
        scorer,
        subject=subject,
        mode="closed",
        role=role,
        n_texts=len(prompts),
        notes=[f"{len(prompts)} prompts answered by the endpoint, answers scored whole"],
    )
