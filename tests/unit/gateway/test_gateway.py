"""The gateway in embedded mode: OpenAI endpoints, verification, limits, records, the ledger."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.gateway import Gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.gateway.upstream import CompletionRequest, StubUpstream
from distillguard.keyring import open_keyring
from distillguard.ledger import Ledger, audit_ledger
from distillguard.store import open_store


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def stored(settings: Settings) -> list[Any]:
    store = open_store(settings.store_url)
    try:
        return [e for batch in store.iter_exchanges() for e in batch]
    finally:
        store.close()


def test_chat_completion_is_answered_and_recorded(
    gateway: Gateway, agents: AgentFactory, settings: Settings
) -> None:
    agent = agents.issue("acct-1")

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("what is a ledger?"))

    r = run(go())
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    expected = StubUpstream().answer(
        CompletionRequest(
            kind="chat", model="stub-1", messages=(("user", "what is a ledger?"),), max_tokens=256
        )
    )
    assert data["choices"][0]["message"] == {"role": "assistant", "content": expected.text}
    assert data["usage"]["completion_tokens"] == expected.completion_tokens
    rows = stored(settings)
    assert len(rows) == 1
    ex = rows[0].exchange
    assert ex.exchange_id == r.headers["x-distillguard-exchange-id"]
    assert ex.account_id == "acct-1"
    assert ex.agent_id == agent.signer().keyid  # the agent key thumbprint
    assert ex.api_key_id == agent.passport_id
    assert ex.response == expected.text and ex.status == 200
    assert ex.messages[0].content == "what is a ledger?"
    assert ex.endpoint == "/v1/chat/completions"
    store = open_store(settings.store_url)
    try:
        assert store.get_account("acct-1") is not None
        ledger = Ledger.open(store)
        assert ledger.size == 1
        assert ledger.leaf_for(ex.exchange_id) is not None
    finally:
        store.close()


def test_completions_and_models(gateway: Gateway, agents: AgentFactory) -> None:
    agent = agents.issue("acct-2")

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client(gateway, agent) as c:
            a = await c.post(
                "/v1/completions", json={"model": "stub-1", "prompt": "once upon", "max_tokens": 5}
            )
            b = await c.get("/v1/models")
            return a, b

    a, b = run(go())
    assert a.status_code == 200
    assert a.json()["object"] == "text_completion"
    assert len(a.json()["choices"][0]["text"].split()) == 5
    assert b.status_code == 200
    assert [m["id"] for m in b.json()["data"]] == ["stub-1"]


def _sse(text: str) -> list[Any]:
    events = []
    for block in text.strip().split("\n\n"):
        assert block.startswith("data: ")
        payload = block[6:]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_streaming_chat(gateway: Gateway, agents: AgentFactory, settings: Settings) -> None:
    agent = agents.issue("acct-3")

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post(
                "/v1/chat/completions",
                json=chat_body("stream me", stream=True, stream_options={"include_usage": True}),
            )

    r = run(go())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    usage = [e for e in events[:-1] if not e["choices"]]
    assert usage and usage[0]["usage"]["completion_tokens"] == len(text.split())
    rows = stored(settings)
    assert [row.exchange.response for row in rows] == [text]


def test_unsigned_request_is_refused_with_a_problem(gateway: Gateway) -> None:
    async def go() -> httpx.Response:
        async with client(gateway) as c:
            return await c.post("/v1/chat/completions", json=chat_body())

    r = run(go())
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "missing_signature"


def test_revoked_passport_is_refused(gateway: Gateway, agents: AgentFactory) -> None:
    agent = agents.issue("acct-4")
    from distillguard.passport import RequestVerifier, RevocationCache

    verifier = gateway.core.verifier
    assert isinstance(verifier, RequestVerifier)
    cache = verifier.revocations
    assert isinstance(cache, RevocationCache)
    cache.revoke(agent.passport_id, reason="test")

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body())

    r = run(go())
    assert r.status_code == 403 and r.json()["error"]["code"] == "revoked_passport"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"[]", 400, "invalid_request"),
        (json.dumps({"model": "stub-1"}).encode(), 400, "invalid_request"),
        (json.dumps({"model": "stub-1", "messages": []}).encode(), 400, "invalid_request"),
        (
            json.dumps({"model": "stub-1", "messages": [{"role": "x", "content": "a"}]}).encode(),
            400,
            "invalid_request",
        ),
        (json.dumps(chat_body(max_tokens=0)).encode(), 400, "invalid_request"),
        (json.dumps(chat_body(max_tokens="5")).encode(), 400, "invalid_request"),
        (json.dumps(chat_body(temperature=9)).encode(), 400, "invalid_request"),
        (json.dumps(chat_body(stream="yes")).encode(), 400, "invalid_request"),
        (json.dumps({**chat_body(), "model": "gpt-9"}).encode(), 404, "model_not_found"),
    ],
)
def test_bad_requests(
    gateway: Gateway, agents: AgentFactory, body: bytes, status: int, code: str
) -> None:
    agent = agents.issue("acct-bad")

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )

    r = run(go())
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


def test_oversized_body_is_refused_before_reading(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, max_body_bytes=2048)
    gw = create_gateway(settings)
    agent = AgentFactory.from_settings(settings).issue("acct-big")
    try:

        async def go() -> httpx.Response:
            async with client(gw, agent) as c:
                return await c.post("/v1/chat/completions", json=chat_body("x" * 5000))

        r = run(go())
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    finally:
        gw.close_sync()


def test_wrong_method(gateway: Gateway) -> None:
    async def go() -> httpx.Response:
        async with client(gateway) as c:
            return await c.get("/v1/chat/completions")

    assert run(go()).status_code == 405


def test_rate_limit_per_passport(tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings)
    agent = AgentFactory.from_settings(settings, requests_per_minute=12).issue("acct-rl")
    try:

        async def go() -> list[httpx.Response]:
            async with client(gw, agent) as c:
                return [
                    await c.post("/v1/chat/completions", json=chat_body(f"q{i}")) for i in range(4)
                ]

        rs = run(go())
        # rpm 12 -> burst of 2 (ten seconds' worth)
        assert [r.status_code for r in rs] == [200, 200, 429, 429]
        assert rs[2].json()["error"]["code"] == "rate_limited"
        assert "passport" in rs[2].json()["error"]["message"]
        assert 1 <= int(rs[2].headers["retry-after"]) <= 5
        assert len(stored(settings)) == 2  # refused requests never reached the model
    finally:
        gw.close_sync()


def test_tokens_are_limited(tmp_path: Any) -> None:
    """Completion tokens are charged after the answer: long answers exhaust the token budget."""
    settings = make_settings(tmp_path, account_tokens_per_minute=600)  # burst 100 tokens
    gw = create_gateway(settings)
    agent = AgentFactory.from_settings(settings).issue("acct-tok")
    try:

        async def go() -> list[int]:
            async with client(gw, agent) as c:
                out = []
                for i in range(8):
                    r = await c.post("/v1/chat/completions", json=chat_body(f"q{i}", max_tokens=16))
                    out.append(r.status_code)
                return out

        codes = run(go())
        # each exchange costs 1 prompt token at admission, then 16 completion tokens: six
        # fit in the burst of 100 (600 per minute refill 10 per second), then refusals
        assert codes[:6] == [200] * 6
        assert 429 in codes[6:]
    finally:
        gw.close_sync()


def test_aggregate_limit_on_subnet(tmp_path: Any) -> None:
    """Two accounts behind one /24 share the aggregate limit."""
    settings = make_settings(
        tmp_path,
        aggregate_limits=[{"key": "subnet24", "requests_per_minute": 1, "burst": 3}],
    )
    gw = create_gateway(settings)
    factory = AgentFactory.from_settings(settings)
    a, b = factory.issue("acct-n1"), factory.issue("acct-n2")
    try:

        async def go() -> list[int]:
            out = []
            for agent in (a, b, a, b, a):
                async with client(gw, agent) as c:
                    out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            return out

        assert run(go()) == [200, 200, 200, 429, 429]
    finally:
        gw.close_sync()


def test_ledger_audit_passes_after_traffic(
    gateway: Gateway, agents: AgentFactory, settings: Settings
) -> None:
    agent_list = [agents.issue(f"acct-{i}") for i in range(4)]

    async def go() -> list[int]:
        async def one(i: int) -> int:
            async with client(gateway, agent_list[i % 4]) as c:
                r = await c.post("/v1/chat/completions", json=chat_body(f"question {i}"))
                return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(40))))

    assert run(go()) == [200] * 40
    keyring = open_keyring(settings)
    from distillguard.keyring import KeyPurpose

    store = open_store(settings.store_url)
    try:
        ledger = Ledger.open(store)
        assert ledger.size == 40 == store.count("exchanges")
        ledger.publish_checkpoint(keyring.signing_key(KeyPurpose.LEDGER))
        report = audit_ledger(
            ledger, public_keys=[k.public_key for k in keyring.verify_keys(KeyPurpose.LEDGER)]
        )
        assert report.ok, report
    finally:
        store.close()
    assert gateway.core.recorder.stats.exchanges == 40


def test_aggregate_limits_on_payment_and_cluster(tmp_path: Any) -> None:
    """Accounts sharing a payment instrument, or a cluster of the online scorer, share a limit."""
    from distillguard.gateway.policy import RiskScore
    from distillguard.records import Exchange
    from distillguard.testing import make_account

    class Clusters:
        def observe(self, exchange: Exchange) -> RiskScore:
            return self.score(exchange.account_id)

        def score(self, account_id: str) -> RiskScore:
            return RiskScore(cluster_id="camp-1" if account_id.startswith("c-") else None)

    settings = make_settings(
        tmp_path,
        aggregate_limits=[
            {"key": "payment", "requests_per_minute": 1, "burst": 2},
            {"key": "cluster", "requests_per_minute": 1, "burst": 3},
        ],
    )
    store = open_store(settings.store_url)
    with store.transaction() as cur:
        store.add_accounts(
            cur,
            [
                make_account("p-1", payment_fingerprint="card-9"),
                make_account("p-2", payment_fingerprint="card-9"),
            ],
            run_id="test",
        )
    store.close()
    gw = create_gateway(settings, scorer=Clusters())
    factory = AgentFactory.from_settings(settings)
    pay = [factory.issue("p-1"), factory.issue("p-2")]
    camp = [factory.issue(f"c-{i}") for i in range(4)]
    try:

        async def go(agents: list[Any]) -> list[int]:
            out = []
            for agent in agents:
                async with client(gw, agent) as c:
                    out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            return out

        assert run(go([pay[0], pay[1], pay[0]])) == [200, 200, 429]
        assert run(go(camp)) == [200, 200, 200, 429]
    finally:
        gw.close_sync()
