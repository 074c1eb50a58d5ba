"""Collect a suspect model's outputs on a probe set from an OpenAI-compatible endpoint.

:func:`collect_outputs` sends each probe to ``POST {endpoint}/chat/completions`` (``endpoint`` is
the API base, e.g. ``http://host:8000/v1``), with bounded concurrency, retries with exponential
backoff and jitter on 429, 5xx, timeouts and connection errors (honouring ``Retry-After``), and
appends each answer to a gzip JSONL file in the alpaca_eval layout as soon as it arrives.
Re-running the same collection skips the prompt ids already in the file, so an interrupted run
resumes where it stopped; a file cut off mid-write is repaired (complete lines kept) first.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from distillguard.errors import InputError, UpstreamError
from distillguard.fingerprint.outputs import ProbeSet

__all__ = [
    "CollectResult",
    "RetryPolicy",
    "ask_with_retries",
    "chat_url",
    "collect_outputs",
    "collect_outputs_async",
    "completion_text",
    "read_collected",
]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    Attributes:
        max_attempts: tries per prompt, the first included.
        base_delay_s: the first backoff; doubles on every retry, with full jitter.
        max_delay_s: cap of one backoff (and of a server's ``Retry-After``).
        timeout_s: per-request timeout.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts must be between 1 and 100")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    def delay(self, attempt: int, *, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class CollectResult:
    """What a collection did.

    Attributes:
        path: the outputs file.
        total: prompts in the probe set.
        skipped: prompts already in the file (resumed).
        collected: prompts answered in this run.
        failed: prompt ids that still failed after all retries (re-run to retry them).
        retries: requests retried in this run.
        repaired_lines: incomplete lines dropped from a file cut off mid-write.
        errors: the last error of each failed prompt id.
    """

    path: Path
    total: int
    skipped: int
    collected: int
    failed: tuple[int, ...]
    retries: int
    repaired_lines: int = 0
    errors: Mapping[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every probe has an answer in the file."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "path": str(self.path),
            "total": self.total,
            "skipped": self.skipped,
            "collected": self.collected,
            "failed": list(self.failed),
            "retries": self.retries,
            "repaired_lines": self.repaired_lines,
            "complete": self.complete,
            "errors": {str(k): v for k, v in self.errors.items()},
        }


def _decompress_tolerant(raw: bytes) -> tuple[bytes, bool]:
    """The bytes of every gzip member, stopping at a truncated or corrupt tail (flagged)."""
    out = bytearray()
    data = raw
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            out += d.decompress(data)
        except zlib.error:
            return bytes(out), True
        if not d.eof:
            return bytes(out + d.flush()), True
        data = d.unused_data
    return bytes(out), False


def read_collected(path: Path) -> tuple[dict[int, dict[str, Any]], int]:
    """Rows already collected in ``path`` (by prompt id) and the number of broken lines.

    Tolerates a file cut off mid-write: complete JSON lines are kept, the rest counted.
    """
    if not path.exists():
        return {}, 0
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        data, _truncated = _decompress_tolerant(raw)
    else:
        data = raw
    rows: dict[int, dict[str, Any]] = {}
    broken = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        pid = obj.get("prompt_id") if isinstance(obj, dict) else None
        if (
            isinstance(pid, int)
            and not isinstance(pid, bool)
            and isinstance(obj.get("output"), str)
        ):
            rows[pid] = obj
        else:
            broken += 1
    return rows, broken


def _rewrite(path: Path, rows: Mapping[int, Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for pid in sorted(rows):
            fh.write(json.dumps(rows[pid], ensure_ascii=False) + "\n")
    tmp.replace(path)


def completion_text(body: Any) -> str:
    """The answer in an OpenAI chat-completions response body.

    Raises:
        UpstreamError: the body is not a chat completion with a text answer.
    """
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamError("the endpoint's response is not a chat completion") from exc
    if content is None:
        return ""
    if not isinstance(content, str):
        raise UpstreamError("the endpoint's answer is not text")
    return content


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


async def _ask(
    client: httpx.AsyncClient,
    *,
    url: str,
    model: str,
    prompt: str,
    max_tokens: int | None,
    temperature: float,
) -> str:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": temperature,
    }
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    try:
        response = await client.post(url, json=payload)
    except httpx.TimeoutException as exc:
        raise _RetryableError(f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _RetryableError(f"cannot reach the endpoint ({type(exc).__name__}: {exc})") from exc
    if response.status_code in _RETRY_STATUS:
        raise _RetryableError(f"HTTP {response.status_code}", _retry_after(response))
    if response.status_code >= 400:
        raise UpstreamError(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
    except ValueError as exc:
        raise UpstreamError("the endpoint's response is not JSON") from exc
    return completion_text(body)


async def ask_with_retries(
    client: httpx.AsyncClient,
    *,
    url: str,
    model: str,
    prompt: str,
    retry: RetryPolicy,
    rng: random.Random,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    on_retry: Callable[[], None] | None = None,
) -> str:
    """One chat completion with retries; raises :class:`UpstreamError` once they are spent."""
    for attempt in range(1, retry.max_attempts + 1):
        try:
            return await _ask(
                client,
                url=url,
                model=model,
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
            )
        except _RetryableError as exc:
            if attempt == retry.max_attempts:
                raise UpstreamError(f"{exc} (after {attempt} attempts)") from exc
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(retry.delay(attempt, retry_after=exc.retry_after, rng=rng))
    raise AssertionError("unreachable")  # pragma: no cover


def chat_url(endpoint: str) -> str:
    """``{endpoint}/chat/completions`` (``endpoint`` is the API base, e.g. ``.../v1``)."""
    if not endpoint.startswith(("http://", "https://")):
        raise InputError(f"{endpoint!r}: the endpoint must be an http(s) URL")
    base = endpoint.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


async def collect_outputs_async(
    *,
    endpoint: str,
    model: str,
    probes: ProbeSet,
    out: Path,
    api_key: str | None = None,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    datasets: Mapping[int, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_done: Callable[[int], None] | None = None,
    seed: int | None = None,
) -> CollectResult:
    """Async form of :func:`collect_outputs` (same arguments)."""
    if not 1 <= concurrency <= 256:
        raise InputError("concurrency must be between 1 and 256")
    retry = retry or RetryPolicy()
    url = chat_url(endpoint)
    out = Path(out)
    if not out.name.endswith(".jsonl.gz"):
        raise InputError(f"{out}: the outputs file must end in .jsonl.gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    done, broken = read_collected(out)
    valid_ids = set(probes.prompt_ids)
    done = {pid: row for pid, row in done.items() if pid in valid_ids}
    if broken:
        logger.warning("%s: dropped %d incomplete or foreign lines before resuming", out, broken)
    if out.exists():
        _rewrite(out, done)
    todo = [
        (pid, text)
        for pid, text in zip(probes.prompt_ids, probes.instructions, strict=True)
        if pid not in done
    ]
    rng = random.Random(seed)
    sem = asyncio.Semaphore(concurrency)
    errors: dict[int, str] = {}
    counts = {"retries": 0, "collected": 0}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(retry.timeout_s)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def _count_retry() -> None:
        counts["retries"] += 1

    with gzip.open(out, "at", encoding="utf-8") as fh:
        async with httpx.AsyncClient(
            transport=transport, headers=headers, timeout=timeout, limits=limits
        ) as client:

            async def one(pid: int, instruction: str) -> None:
                async with sem:
                    try:
                        text = await ask_with_retries(
                            client,
                            url=url,
                            model=model,
                            prompt=instruction,
                            retry=retry,
                            rng=rng,
                            max_tokens=max_tokens,
                            temperature=temperature,
                            on_retry=_count_retry,
                        )
                    except UpstreamError as exc:
                        errors[pid] = exc.message
                        logger.warning("prompt %d failed: %s", pid, exc.message)
                        return
                row = {
                    "prompt_id": pid,
                    "dataset": (datasets or {}).get(pid, probes.name),
                    "instruction": instruction,
                    "output": text,
                    "generator": model,
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()  # a sync flush: what is written survives an interruption
                counts["collected"] += 1
                if on_done is not None:
                    on_done(pid)

            await asyncio.gather(*(one(pid, text) for pid, text in todo))
    return CollectResult(
        path=out,
        total=len(probes),
        skipped=len(done),
        collected=counts["collected"],
        failed=tuple(sorted(errors)),
        retries=counts["retries"],
        repaired_lines=broken,
        errors=dict(sorted(errors.items())),
    )


def collect_outputs(
    *,
    endpoint: str,
    model: str,
    probes: ProbeSet,
    out: Path,
    api_key: str | None = None,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    datasets: Mapping[int, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_done: Callable[[int], None] | None = None,
    seed: int | None = None,
) -> CollectResult:
    """Collect ``model``'s answers to ``probes`` from ``endpoint`` into ``out`` (resumable).

    Args:
        endpoint: the OpenAI-compatible API base (``http://host:port/v1``).
        model: the model name sent in each request.
        probes: the probe set.
        out: the ``.jsonl.gz`` outputs file (alpaca_eval layout); prompt ids already in it are
            skipped.
        api_key: sent as a bearer token (never logged).
        concurrency: requests in flight at once.
        retry: retry policy (default :class:`RetryPolicy`).
        max_tokens, temperature: generation parameters sent with each request.
        datasets: ``prompt_id -> dataset`` for the ``dataset`` field (default: the probe set name).
        transport: an httpx transport (tests: ``httpx.ASGITransport``).
        on_done: called with each prompt id once its answer is written (progress).
        seed: seed of the backoff jitter.

    Returns:
        the :class:`CollectResult`; prompts that failed after all retries are listed in
        ``failed`` and are not written, so a re-run retries them.
    """
    return asyncio.run(
        collect_outputs_async(
            endpoint=endpoint,
            model=model,
            probes=probes,
            out=out,
            api_key=api_key,
            concurrency=concurrency,
            retry=retry,
            max_tokens=max_tokens,
            temperature=temperature,
            datasets=datasets,
            transport=transport,
            on_done=on_done,
            seed=seed,
        )
    )
