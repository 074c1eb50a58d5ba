"""Replaying a simulated log through a running gateway (``distillguard simulate --target URL``).

The exchanges of a format v1 log are sent in time order as OpenAI chat completions, compressed
(no waiting for the real gaps) and paced at ``rate`` requests per second, with at most
``concurrency`` in flight. Each account gets its own agent key and passport, issued with the
keyring's passport key and recorded in the passport registry the gateway's verifier reads (the
same configuration). The simulated client IP, ASN and client fingerprint travel in
``X-Forwarded-For``, ``X-Client-ASN`` and ``X-Client-Fingerprint`` (the gateway uses them only
with ``gateway.trust_forwarded_for = true``, as behind a trusted front proxy), the user agent in
``User-Agent``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from distillguard.gateway.agents import Agent, AgentFactory
from distillguard.records import Exchange

__all__ = ["ReplayResult", "replay_log"]

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """What a replay did: requests sent, answers by HTTP status, errors, time."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    accounts: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        """Requests answered 200."""
        return self.statuses.get(200, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "sent": self.sent,
            "ok": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "accounts": self.accounts,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.sent / self.seconds, 1) if self.seconds else None,
        }


def _first_exchanges(log_dir: Path, limit: int | None) -> list[Exchange]:
    """The log's exchanges in time order (the first ``limit`` only, in bounded memory)."""
    from distillguard.records import read_log

    def key(e: Exchange) -> tuple[Any, str]:
        return (e.ts, e.exchange_id)

    stream = (e for batch in read_log(log_dir).exchanges() for e in batch)
    if limit is None:
        return sorted(stream, key=key)
    return heapq.nsmallest(limit, stream, key=key)


def _headers(exchange: Exchange) -> dict[str, str]:
    headers = {"x-forwarded-for": exchange.ip}
    if exchange.asn is not None:
        headers["x-client-asn"] = str(exchange.asn)
    if exchange.client_fingerprint:
        headers["x-client-fingerprint"] = exchange.client_fingerprint
    if exchange.user_agent:
        headers["user-agent"] = exchange.user_agent
    return headers


async def _replay(
    exchanges: list[Exchange],
    *,
    target: str,
    factory: AgentFactory,
    orgs: dict[str, str | None],
    rate: float,
    concurrency: int,
    model: str | None,
    transport: httpx.AsyncBaseTransport | None,
    on_progress: Callable[[int], None] | None,
) -> ReplayResult:
    result = ReplayResult()
    agents: dict[str, Agent] = {}
    semaphore = asyncio.Semaphore(concurrency)
    base = target.rstrip("/")

    async def send(client: httpx.AsyncClient, exchange: Exchange, agent: Agent) -> None:
        body = {
            "model": model or exchange.model,
            "messages": [{"role": m.role, "content": m.content} for m in exchange.messages],
            "max_tokens": max(1, min(exchange.completion_tokens or 16, 4096)),
        }
        try:
            r = await client.post(
                "/v1/chat/completions", json=body, headers=_headers(exchange), auth=agent.auth()
            )
            result.statuses[r.status_code] += 1
        except httpx.HTTPError as exc:
            result.errors += 1
            logger.warning("replay request failed: %s", type(exc).__name__)
        finally:
            semaphore.release()
            if on_progress is not None:
                on_progress(1)

    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=base, timeout=60.0, transport=transport) as client:
        for i, exchange in enumerate(exchanges):
            agent = agents.get(exchange.account_id)
            if agent is None:
                agent = await asyncio.to_thread(
                    factory.issue, exchange.account_id, org_id=orgs.get(exchange.account_id)
                )
                agents[exchange.account_id] = agent
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await semaphore.acquire()
            result.sent += 1
            task = asyncio.create_task(send(client, exchange, agent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*list(tasks))
    result.seconds = time.perf_counter() - started
    result.accounts = len(agents)
    return result


def replay_log(
    log_dir: Path,
    *,
    target: str,
    factory: AgentFactory,
    rate: float = 50.0,
    limit: int | None = 1000,
    concurrency: int = 32,
    model: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay the log at ``log_dir`` against the gateway at ``target`` (see the module docs).

    Args:
        log_dir: a format v1 log (the simulator's output).
        target: the gateway's base URL (``http://127.0.0.1:8080``).
        factory: issues each account's agent (``AgentFactory.from_settings(settings)``).
        rate: requests per second.
        limit: replay the first ``limit`` exchanges in time order (None: all; memory grows
            with the log).
        concurrency: requests in flight at most.
        model: send this model name instead of the logged one (the gateway's model).
        transport: an httpx transport (tests: ``httpx.ASGITransport(app=gateway)``).
        on_progress: called with 1 after each answer.

    Raises:
        ValueError: ``rate``, ``limit`` or ``concurrency`` out of range.
    """
    if rate <= 0 or concurrency < 1 or (limit is not None and limit < 1):
        raise ValueError("rate and concurrency must be positive, limit at least 1")
    from distillguard.records import read_log

    orgs = {a.account_id: a.org_id for batch in read_log(log_dir).accounts() for a in batch}
    exchanges = _first_exchanges(log_dir, limit)
    return asyncio.run(
        _replay(
            exchanges,
            target=target,
            factory=factory,
            orgs=orgs,
            rate=rate,
            concurrency=concurrency,
            model=model,
            transport=transport,
            on_progress=on_progress,
        )
    )
