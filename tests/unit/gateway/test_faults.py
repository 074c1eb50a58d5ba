"""Upstream faults through the gateway: clean 502/504, the exchange recorded with its failure,
nothing left stuck; webhook alerts with retries, dead letters and no duplicates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.alerts import Alerter
from distillguard.gateway.policy import RiskScore
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.gateway.upstream import CircuitBreaker, OpenAIUpstream, stub_app
from distillguard.records import Exchange
from distillguard.store import open_store


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _garbage(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b"\x00\x01 definitely not json"})


async def _down(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b"maintenance"})


@pytest.mark.parametrize(
    ("app", "status", "code"), [(_garbage, 502, "upstream_error"), (_down, 503, "upstream_error")]
)
def test_bad_upstream_gives_502_and_is_recorded(
    tmp_path: Path, app: Any, status: int, code: str
) -> None:
    settings = make_settings(tmp_path)
    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        retries=1,
        backoff_s=0.001,
        transport=httpx.ASGITransport(app=app),
    )
    gw = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-f")
    try:

        async def go() -> list[httpx.Response]:
            async with client(gw, agent) as c:
                return [
                    await c.post("/v1/chat/completions", json=chat_body(f"q{i}")) for i in range(3)
                ]

        rs = run(go())
        assert {r.status_code for r in rs} == {status}
        assert all(r.headers["content-type"] == "application/json" for r in rs)
        assert all(r.json()["error"]["code"] == code for r in rs)
        store = open_store(settings.store_url)
        try:
            rows = [e.exchange for b in store.iter_exchanges() for e in b]
        finally:
            store.close()
        assert len(rows) == 3
        assert all(e.status == status and e.response is None and e.extra["dg_error"] for e in rows)
    finally:
        gw.close_sync()


def test_slow_upstream_gives_504_and_no_stuck_request(tmp_path: Path) -> None:
    """A real silent socket: every request gets its 504 within the timeout, all recorded."""
    settings = make_settings(tmp_path)
    agent = AgentFactory.from_settings(settings).issue("acct-slow")

    async def go() -> tuple[list[int], float]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            await asyncio.sleep(10)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream = OpenAIUpstream(
            base_url=f"http://127.0.0.1:{port}/v1",
            models=["stub-1"],
            read_timeout_s=0.3,
            retries=0,
            breaker=CircuitBreaker(failures=100),
        )
        gw = create_gateway(settings, upstream=upstream)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            async with client(gw, agent) as c:
                rs = await asyncio.gather(
                    *(c.post("/v1/chat/completions", json=chat_body(f"q{i}")) for i in range(8))
                )
            elapsed = loop.time() - t0
            assert all(r.json()["error"]["code"] == "upstream_timeout" for r in rs)
            return [r.status_code for r in rs], elapsed
        finally:
            await gw.aclose()
            server.close()

    codes, elapsed = run(go())
    assert codes == [504] * 8
    assert elapsed < 5  # concurrent, bounded by the timeout: no request waited for another
    store = open_store(settings.store_url)
    try:
        assert store.count("exchanges") == 8
    finally:
        store.close()


def test_open_circuit_answers_at_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    calls = {"n": 0}

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        calls["n"] += 1
        await _down(scope, receive, send)

    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        retries=0,
        breaker=CircuitBreaker(failures=2, reset_s=60),
        transport=httpx.ASGITransport(app=counting),
    )
    gw = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-cb")
    try:

        async def go() -> list[Any]:
            async with client(gw, agent) as c:
                rs = [
                    await c.post("/v1/chat/completions", json=chat_body(f"q{i}")) for i in range(5)
                ]
                ready = await c.get("/readyz")
            return [r.json()["error"]["message"] for r in rs] + [ready.status_code]

        out = run(go())
        assert calls["n"] == 2
        assert all("circuit is open" in d for d in out[2:5])
        assert out[5] == 503
    finally:
        gw.close_sync()


def test_stream_upstream_failure_before_first_byte(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        retries=0,
        transport=httpx.ASGITransport(app=_down),
    )
    gw = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-s")
    try:

        async def go() -> httpx.Response:
            async with client(gw, agent) as c:
                return await c.post("/v1/chat/completions", json=chat_body(stream=True))

        r = run(go())
        assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_error"
    finally:
        gw.close_sync()


def test_openai_upstream_end_to_end_through_the_gateway(tmp_path: Path) -> None:
    """The gateway in front of a real OpenAI-compatible app (the stub served over HTTP)."""
    settings = make_settings(tmp_path)
    upstream = OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        transport=httpx.ASGITransport(app=stub_app()),
    )
    gw = create_gateway(settings, upstream=upstream)
    agent = AgentFactory.from_settings(settings).issue("acct-o")
    try:

        async def go() -> httpx.Response:
            async with client(gw, agent) as c:
                return await c.post("/v1/chat/completions", json=chat_body("hello", max_tokens=6))

        r = run(go())
        assert r.status_code == 200
        assert len(r.json()["choices"][0]["message"]["content"].split()) == 6
    finally:
        gw.close_sync()


# -- alerts ----------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver app: fails the first ``fail`` POSTs, records the rest."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        self.calls += 1
        status = 500 if self.calls <= self.fail else 204
        if status == 204:
            self.received.append(json.loads(body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _alerter(tmp_path: Path, receiver: Receiver, *, retries: int = 3) -> Alerter:
    return Alerter(
        store=open_store(f"sqlite:///{tmp_path / 'alerts.sqlite'}"),
        webhooks=["http://hooks.test/a"],
        level=0.8,
        retries=retries,
        backoff_s=0.001,
        dead_letter=tmp_path / "dead.jsonl",
        transport=httpx.ASGITransport(app=receiver),
    )


def test_alerts_retry_and_never_repeat_a_state(tmp_path: Path) -> None:
    receiver = Receiver(fail=2)
    alerter = _alerter(tmp_path, receiver)

    async def go() -> None:
        await alerter.observe("campaign:c-1", 0.5, ["low"])  # below the level
        await alerter.observe("campaign:c-1", 0.83, ["template reuse"])
        await alerter.observe("campaign:c-1", 0.86, ["template reuse"])  # same band 0.8
        await alerter.observe("campaign:c-1", 0.93, ["template reuse", "synchrony"])  # 0.9
        await alerter.drain()
        await alerter.aclose()

    run(go())
    assert sorted(a["state"] for a in receiver.received) == ["risk>=0.8", "risk>=0.9"]
    assert {(a["kind"], a["id"]) for a in receiver.received} == {("campaign", "c-1")}
    assert receiver.calls == 4  # two failures retried, then two deliveries
    assert not (tmp_path / "dead.jsonl").exists()
    # a second alerter on the same store (another replica) does not send it again
    other = Receiver()
    second = _alerter(tmp_path, other)

    async def again() -> None:
        await second.observe("campaign:c-1", 0.84, [])
        await second.drain()
        await second.aclose()

    run(again())
    assert other.received == []


def test_undeliverable_alert_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    receiver = Receiver(fail=100)
    alerter = _alerter(tmp_path, receiver, retries=2)

    async def go() -> None:
        await alerter.observe("account:a-1", 0.99, ["blocked"])
        await alerter.drain()
        await alerter.aclose()

    run(go())
    assert receiver.calls == 3
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(lines) == 1
    dead = json.loads(lines[0])
    assert dead["alert"]["id"] == "a-1" and dead["webhook"] == "http://hooks.test/a"


def test_gateway_alerts_when_the_scorer_crosses_the_level(tmp_path: Path) -> None:
    receiver = Receiver()

    class Rising:
        def __init__(self) -> None:
            self.n = 0

        def observe(self, exchange: Exchange) -> RiskScore:
            self.n += 1
            return RiskScore(
                account_risk=min(0.3 * self.n, 0.85),
                cluster_id="c-9",
                cluster_risk=0.3,
                reasons=("sweep",),
            )

        def score(self, account_id: str) -> RiskScore:
            return RiskScore()

    settings = make_settings(
        tmp_path, alerts={"webhooks": ["http://hooks.test/a"], "backoff_s": 0.01}
    )
    gw = create_gateway(
        settings, scorer=Rising(), alert_transport=httpx.ASGITransport(app=receiver)
    )
    agent = AgentFactory.from_settings(settings).issue("acct-r")

    async def go() -> None:
        async with client(gw, agent) as c:
            for i in range(5):
                assert (await c.post("/v1/chat/completions", json=chat_body(f"{i}"))).is_success
        for _ in range(100):
            if receiver.received:
                break
            await asyncio.sleep(0.02)
        await gw.aclose()
        assert 'distillguard_gateway_alerts_total{outcome="delivered"} 1.0' in (
            gw.metrics.exposition().decode()
        )

    run(go())
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["kind"] == "account" and alert["id"] == "acct-r"
    assert alert["reasons"] == ["sweep"]
