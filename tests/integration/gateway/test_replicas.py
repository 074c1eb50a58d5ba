"""Production mode: two gateway replicas sharing PostgreSQL (store, ledger, passports) and Redis
(rate limits, nonces), the real servers on 127.0.0.1, a fresh schema and key prefix per test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.gateway import Gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import BASE_URL, admin_client, chat_body, client, make_settings
from distillguard.keyring import KeyPurpose, open_keyring
from distillguard.ledger import Ledger, audit_ledger
from distillguard.store import open_store
from distillguard.testing import postgres_store_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


_factories: list[AgentFactory] = []


def factory(settings: Settings, **kwargs: Any) -> AgentFactory:
    """An agent factory closed (with its store registry's pool) when the test ends."""
    f = AgentFactory.from_settings(settings, **kwargs)
    _factories.append(f)
    return f


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[Settings, Gateway, Gateway]]:
    redis = pytest.importorskip("redis")
    r = redis.Redis(host="127.0.0.1", port=6379)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"dg:test:{uuid.uuid4().hex}:"
    with postgres_store_url() as url:
        settings = make_settings(
            tmp_path,
            store_url=url,
            rate_limits="redis",
            redis_prefix=prefix + "rl:",
            passport={
                "replay_cache": "redis",
                "redis_prefix": prefix + "nonce:",
                "registry": "store",
                "revocation_refresh_s": 0.2,
            },
        )
        a, b = create_gateway(settings), create_gateway(settings)
        try:
            yield settings, a, b
        finally:
            a.close_sync()
            b.close_sync()
            while _factories:
                _factories.pop().close()
            for key in r.scan_iter(prefix + "*"):
                r.delete(key)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_replicas_share_store_ledger_and_audit(production: Any) -> None:
    settings, a, b = production
    agents = [factory(settings).issue(f"acct-{i}") for i in range(3)]

    async def go() -> list[int]:
        async def one(i: int) -> int:
            gw = a if i % 2 else b
            async with client(gw, agents[i % 3]) as c:
                return (await c.post("/v1/chat/completions", json=chat_body(f"q {i}"))).status_code

        return list(await asyncio.gather(*(one(i) for i in range(30))))

    assert run(go()) == [200] * 30
    keyring = open_keyring(settings)
    store = open_store(settings.store_url)
    try:
        ledger = Ledger.open(store)
        assert store.count("exchanges") == 30 == ledger.size
        ledger.publish_checkpoint(keyring.signing_key(KeyPurpose.LEDGER))
        report = audit_ledger(
            ledger, public_keys=[k.public_key for k in keyring.verify_keys(KeyPurpose.LEDGER)]
        )
        assert report.ok
    finally:
        store.close()


def test_a_request_replayed_to_the_other_replica_is_refused(production: Any) -> None:
    settings, a, b = production
    agent = factory(settings).issue("acct-replay")
    body = httpx.Request("POST", BASE_URL + "/v1/chat/completions", json=chat_body()).content
    url = BASE_URL + "/v1/chat/completions"
    headers = {"content-type": "application/json", "host": "gateway.test"}
    headers |= agent.signer().signed_headers("POST", url, list(headers.items()), body)

    async def go() -> list[httpx.Response]:
        out = []
        for gw in (a, b):
            async with client(gw) as c:
                out.append(await c.post("/v1/chat/completions", content=body, headers=headers))
        return out

    first, second = run(go())
    assert first.status_code == 200
    assert second.status_code == 401 and second.json()["error"]["code"] == "replayed_nonce"


def test_rate_limits_are_shared(production: Any) -> None:
    settings, a, b = production
    agent = factory(settings, requests_per_minute=12).issue("acct-rl")

    async def go() -> list[int]:
        out = []
        for gw in (a, b, a, b):
            async with client(gw, agent) as c:
                out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
        return out

    # burst 2 for the passport, counted in Redis across both replicas
    assert run(go()) == [200, 200, 429, 429]


def test_revocation_on_one_replica_reaches_the_other(production: Any) -> None:
    settings, a, b = production
    agent = factory(settings).issue("acct-rev")

    async def go() -> list[int]:
        out = []
        async with client(b, agent) as c:
            out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
        async with admin_client(a) as adm:
            r = await adm.post(
                f"/admin/passports/{agent.passport_id}/revoke", json={"reason": "campaign"}
            )
            out.append(r.status_code)
        deadline = time.monotonic() + 5
        status = 200
        while time.monotonic() < deadline:
            async with client(b, agent) as c:
                status = (await c.post("/v1/chat/completions", json=chat_body())).status_code
            if status == 403:
                break
            await asyncio.sleep(0.1)
        out.append(status)
        return out

    assert run(go()) == [200, 200, 403]


def test_override_set_on_one_replica_applies_on_the_other(production: Any) -> None:
    settings, a, b = production
    agent = factory(settings).issue("acct-ov")

    async def go() -> list[Any]:
        out: list[Any] = []
        async with admin_client(a) as adm:
            r = await adm.put(
                "/admin/accounts/acct-ov/action", json={"action": "block", "reason": "campaign"}
            )
            out.append(r.status_code)
        b.core.policy.set_overrides(await asyncio.to_thread(b._load_overrides))  # the refresh
        async with client(b, agent) as c:
            out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
        return out

    assert run(go()) == [200, 403]
