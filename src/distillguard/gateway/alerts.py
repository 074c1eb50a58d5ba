"""Webhook alerts when an account or a campaign (cluster) crosses a risk level.

:class:`Alerter` decides and delivers:

* a subject (``account:ID`` or ``campaign:ID``) is alerted when its risk reaches the configured
  level, once per *state*; the state is the risk band (tenths: 0.8, 0.9, 1.0), so an escalation
  alerts again but the same state never twice. Deduplication is recorded in the store table
  ``gateway_alerts`` (a unique key on subject and state), so replicas sharing a store do not
  send duplicates either;
* delivery POSTs the JSON alert to every webhook with retries and exponential backoff; an alert
  that cannot be delivered is appended to a dead-letter JSONL file (nothing is dropped silently).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from distillguard._internal.timeutil import to_micros
from distillguard.store import Store

__all__ = ["ALERT_DDL", "Alert", "Alerter"]

logger = logging.getLogger(__name__)

ALERT_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS gateway_alerts (
        subject {text} NOT NULL, state {text} NOT NULL, alert_id {text} NOT NULL,
        created_at {bigint} NOT NULL, body {text} NOT NULL, PRIMARY KEY (subject, state)
    )""",
)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what crossed which level, with the reasons."""

    alert_id: str
    subject: str
    state: str
    risk: float
    level: float
    reasons: tuple[str, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON body POSTed to webhooks."""
        kind, _, ident = self.subject.partition(":")
        return {
            "type": "distillguard.alert",
            "alert_id": self.alert_id,
            "kind": kind,
            "id": ident,
            "state": self.state,
            "risk": round(self.risk, 4),
            "level": self.level,
            "reasons": list(self.reasons),
            "created_at": self.created_at.isoformat(),
        }


def _band(risk: float) -> str:
    return f"risk>={math.floor(risk * 10 + 1e-9) / 10:.1f}"


class Alerter:
    """Decides (deduplicated through ``store``) and delivers alerts.

    Args:
        store: a store connection for the dedup table (used under a lock, from worker threads).
        webhooks: URLs to POST to.
        level: risk at or above which a subject alerts.
        retries: retries per webhook after the first attempt.
        backoff_s: first retry delay (doubles each time).
        timeout_s: timeout of one POST.
        dead_letter: JSONL file of alerts that could not be delivered.
        transport: an httpx transport (tests).
        on_outcome: called with ``"delivered"`` or ``"dead_letter"`` per webhook (metrics).
    """

    def __init__(
        self,
        *,
        store: Store,
        webhooks: Sequence[str],
        level: float = 0.8,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        dead_letter: Path,
        transport: httpx.AsyncBaseTransport | None = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        store.ensure_tables("gateway_alerts", 1, ALERT_DDL)
        self.webhooks = list(webhooks)
        self.level = level
        self.retries = retries
        self.backoff_s = backoff_s
        self.dead_letter = dead_letter
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.dead = 0
        self._on_outcome = on_outcome

    def __repr__(self) -> str:
        return f"Alerter(webhooks={len(self.webhooks)}, level={self.level})"

    def _claim(self, alert: Alert) -> bool:
        """Record the (subject, state); False if some process already alerted it."""
        key = (alert.subject, alert.state)
        with self._lock:
            if key in self._seen:
                return False
            with self.store.transaction() as cur:
                cur.execute(
                    self.store.q(
                        "INSERT INTO gateway_alerts (subject, state, alert_id, created_at, body) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject, state) DO NOTHING"
                    ),
                    (
                        alert.subject,
                        alert.state,
                        alert.alert_id,
                        to_micros(alert.created_at),
                        json.dumps(alert.to_dict()),
                    ),
                )
                claimed = bool(cur.rowcount == 1)  # type: ignore[attr-defined]
            self._seen.add(key)
            return claimed

    def consider(self, subject: str, risk: float, reasons: Sequence[str]) -> Alert | None:
        """Build the alert for ``subject`` at ``risk`` if it is new (blocking: call in a thread)."""
        if risk < self.level:
            return None
        state = _band(risk)
        if (subject, state) in self._seen:
            return None
        alert = Alert(
            alert_id="alr_" + uuid.uuid4().hex,
            subject=subject,
            state=state,
            risk=risk,
            level=self.level,
            reasons=tuple(reasons),
            created_at=datetime.now(UTC),
        )
        return alert if self._claim(alert) else None

    async def observe(self, subject: str, risk: float, reasons: Sequence[str]) -> None:
        """Alert on ``subject`` if it crossed the level in a new state; delivery runs detached."""
        if risk < self.level or (subject, _band(risk)) in self._seen:
            return
        alert = await asyncio.to_thread(self.consider, subject, risk, reasons)
        if alert is not None:
            task = asyncio.create_task(self.deliver(alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def deliver(self, alert: Alert) -> bool:
        """POST ``alert`` to every webhook; dead-letter it where every retry failed."""
        body = alert.to_dict()
        ok = True
        for url in self.webhooks:
            if not await self._post(url, body):
                ok = False
                self._dead_letter(url, body)
        return ok

    async def _post(self, url: str, body: dict[str, Any]) -> bool:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                r = await self._client.post(url, json=body)
                if r.status_code < 300:
                    self.delivered += 1
                    if self._on_outcome is not None:
                        self._on_outcome("delivered")
                    return True
                logger.warning("alert webhook answered HTTP %d", r.status_code)
            except httpx.HTTPError as exc:
                logger.warning("alert webhook failed: %s", type(exc).__name__)
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        return False

    def _dead_letter(self, url: str, body: dict[str, Any]) -> None:
        self.dead += 1
        if self._on_outcome is not None:
            self._on_outcome("dead_letter")
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"webhook": url, "alert": body, "failed_at": datetime.now(UTC).isoformat()}
        )
        with self.dead_letter.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        logger.error("alert %s dead-lettered to %s", body["alert_id"], self.dead_letter)

    async def drain(self) -> None:
        """Wait for deliveries in flight."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish deliveries and close the HTTP client."""
        await self.drain()
        await self._client.aclose()
