"""Policy actions (automatic and set by analysts), the admin API, metrics, health."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.gateway import Gateway
from distillguard.gateway.agents import Agent, AgentFactory
from distillguard.gateway.policy import (
    Action,
    Policy,
    PolicyThresholds,
    RiskScore,
    payload_for,
)
from distillguard.gateway.testing import admin_client, chat_body, client, make_settings
from distillguard.gateway.watermarking import payload_key
from distillguard.keyring import open_keyring
from distillguard.ledger import verify_bundle
from distillguard.passport import Auth, agent_jwk
from distillguard.records import Exchange
from distillguard.store import open_store


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- policy decisions --------------------------------------------------------------------------


def _policy() -> Policy:
    return Policy(thresholds=PolicyThresholds(), secret=b"k" * 32)


@pytest.mark.parametrize(
    ("risk", "action"),
    [
        (0.0, Action.ALLOW),
        (0.49, Action.ALLOW),
        (0.5, Action.THROTTLE),
        (0.65, Action.WATERMARK),
        (0.7, Action.CANARY),
        (0.9, Action.REVERIFY),
        (0.99, Action.BLOCK),
    ],
)
def test_thresholds(risk: float, action: Action) -> None:
    d = _policy().decide("a", RiskScore(account_risk=risk, reasons=("template reuse",)))
    assert d.action == action
    if action != Action.ALLOW:
        assert "template reuse" in d.reason and f"{risk:.2f}" in d.reason
    assert (d.payload is not None) == (
        action in (Action.WATERMARK, Action.CANARY, Action.REVERIFY, Action.BLOCK)
    )


def test_cluster_risk_counts_and_is_named() -> None:
    d = _policy().decide("a", RiskScore(account_risk=0.1, cluster_id="c-7", cluster_risk=0.97))
    assert d.action == Action.BLOCK and "cluster c-7" in d.reason


def test_payload_is_keyed_and_stable() -> None:
    assert payload_for(b"k" * 32, "a") == payload_for(b"k" * 32, "a")
    assert payload_for(b"k" * 32, "a") != payload_for(b"j" * 32, "a")
    values = {payload_for(b"k" * 32, f"acct-{i}") for i in range(200)}
    assert len(values) > 190  # 16-bit payloads rarely collide
    assert all(0 <= v < 1 << 16 for v in values)


# -- through the gateway -------------------------------------------------------------------------


class FixedScorer:
    """A real OnlineScorer implementation with fixed risks per account (test double)."""

    def __init__(self, risks: dict[str, RiskScore]) -> None:
        self.risks = risks
        self.observed: list[Exchange] = []

    def observe(self, exchange: Exchange) -> RiskScore:
        self.observed.append(exchange)
        return self.score(exchange.account_id)

    def score(self, account_id: str) -> RiskScore:
        return self.risks.get(account_id, RiskScore())

    def clusters(self) -> list[dict[str, Any]]:
        return [{"cluster_id": "c-1", "risk": 0.9, "accounts": ["wm", "canary"]}]


@pytest.fixture
def scored(tmp_path: Any) -> Any:
    settings = make_settings(tmp_path)
    scorer = FixedScorer(
        {
            "wm": RiskScore(account_risk=0.65, reasons=("cot elicitation",)),
            "canary": RiskScore(account_risk=0.75),
            "reverify": RiskScore(account_risk=0.9),
            "blocked": RiskScore(cluster_id="c-1", cluster_risk=0.99),
        }
    )
    gw = create_gateway(settings, scorer=scorer)
    yield settings, gw, scorer, AgentFactory.from_settings(settings)
    gw.close_sync()


def _ask(gw: Gateway, agent: Agent, text: str = "tell me how you reason, step by step") -> Any:
    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body(text))

    return run(go())


def _actions(settings: Settings) -> list[tuple[str, str, str, str | None]]:
    store = open_store(settings.store_url)
    try:
        with store.transaction() as cur:
            cur.execute("SELECT account_id, action, source, exchange_id FROM gateway_actions")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        store.close()


def test_watermark_action_marks_the_answer(scored: Any) -> None:
    settings, gw, scorer, agents = scored
    r = _ask(gw, agents.issue("wm"))
    assert r.status_code == 200
    text = r.json()["choices"][0]["message"]["content"]
    store = open_store(settings.store_url)
    try:
        ex = store.get_exchange(r.headers["x-distillguard-exchange-id"]).exchange  # type: ignore[union-attr]
    finally:
        store.close()
    info = ex.extra["dg_watermark"]
    assert info["applied"] is True and info["scheme"] == "cater"
    key = open_keyring(settings).watermark_key()
    assert info["payload"] == payload_for(key.secret, "wm")
    assert ex.extra["dg_action"] == "watermark"
    assert ex.response == text
    # the payload key's keyed choices are in the text: it agrees with the keyed choice
    from distillguard.watermark import CaterConfig, CaterWatermark

    marked = CaterWatermark(CaterConfig(), key=payload_key(key, info["payload"]))
    assert marked.embed(text).text == text  # idempotent: every eligible word is the keyed one
    assert [a[:3] for a in _actions(settings)] == [("wm", "watermark", "policy")]
    assert gw.core.scoring is not None
    gw.core.scoring.join()  # scored off the event loop
    assert [e.account_id for e in scorer.observed] == ["wm"]


def test_canary_action_plants_the_accounts_canary(scored: Any) -> None:
    settings, gw, _, agents = scored
    r = _ask(gw, agents.issue("canary"))
    assert r.status_code == 200
    from distillguard.fingerprint.canaries import CanaryGenerator, CanaryRegistry

    key = open_keyring(settings).watermark_key()
    store = open_store(settings.store_url)
    try:
        ex = store.get_exchange(r.headers["x-distillguard-exchange-id"]).exchange  # type: ignore[union-attr]
        planted = CanaryRegistry(store).planted("canary")
    finally:
        store.close()
    # the keyed planter's canary (keyring watermark secret), recorded in the registry
    assert [p.canary_id for p in planted] == [ex.extra["dg_canary"]]
    fact = CanaryGenerator(secret=key.secret, kid=key.kid).fact(
        account_id="canary", index=planted[0].index
    )
    assert fact.canary_id == planted[0].canary_id
    assert r.json()["choices"][0]["message"]["content"].endswith(" " + fact.sentence)


@pytest.mark.parametrize(
    ("account", "status", "code"),
    [("reverify", 401, "reverification_required"), ("blocked", 403, "account_blocked")],
)
def test_refusing_actions_are_recorded(scored: Any, account: str, status: int, code: str) -> None:
    settings, gw, _, agents = scored
    r = _ask(gw, agents.issue(account))
    assert r.status_code == status and r.json()["error"]["code"] == code
    actions = _actions(settings)
    assert len(actions) == 1 and actions[0][0] == account
    store = open_store(settings.store_url)
    try:
        ex = store.get_exchange(actions[0][3]).exchange  # type: ignore[union-attr,arg-type]
    finally:
        store.close()
    assert ex.status == status and ex.response is None
    assert ex.extra["dg_action"] == actions[0][1]


def test_admin_needs_its_token(gateway: Gateway) -> None:
    async def go() -> list[int]:
        out = []
        async with client(gateway) as c:
            out.append((await c.get("/admin/accounts")).status_code)
        async with admin_client(gateway, token="wrong") as c:
            out.append((await c.get("/admin/accounts")).status_code)
        async with admin_client(gateway) as c:
            out.append((await c.get("/admin/accounts")).status_code)
        return out

    assert run(go()) == [401, 401, 200]


def test_admin_sets_and_clears_actions(
    gateway: Gateway, agents: AgentFactory, settings: Settings
) -> None:
    agent = agents.issue("acct-x")

    async def go() -> list[Any]:
        out: list[Any] = []
        async with client(gateway, agent) as c, admin_client(gateway) as a:
            out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            r = await a.put(
                "/admin/accounts/acct-x/action",
                json={"action": "block", "reason": "campaign C-17", "actor": "ana"},
            )
            out.append(r.status_code)
            r = await c.post("/v1/chat/completions", json=chat_body())
            out.append(r.json()["error"]["code"])
            acct = (await a.get("/admin/accounts/acct-x")).json()
            out.append((acct["action"], acct["override"]["actor"]))
            out.append((await a.delete("/admin/accounts/acct-x/action")).status_code)
            out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            out.append((await a.delete("/admin/accounts/acct-x/action")).status_code)
            acts = (await a.get("/admin/actions", params={"account_id": "acct-x"})).json()
            out.append(sorted((x["action"], x["source"]) for x in acts))
            out.append(
                (
                    await a.put(
                        "/admin/accounts/acct-x/action", json={"action": "explode", "reason": "x"}
                    )
                ).status_code
            )
        return out

    res = run(go())
    assert res[0] == 200 and res[1] == 200
    assert res[2] == "account_blocked"
    assert res[3] == ("block", "ana")
    assert res[4] == 200 and res[5] == 200 and res[6] == 404
    # the analyst's action and the refused request are both in the log, with the admin source
    assert res[7] == [("block", "admin"), ("block", "admin")]
    assert res[8] == 422


def test_admin_issues_and_revokes_passports(gateway: Gateway) -> None:
    key = Ed25519PrivateKey.generate()

    async def go() -> list[Any]:
        out: list[Any] = []
        async with admin_client(gateway) as a:
            r = await a.post(
                "/admin/passports",
                json={
                    "account_id": "acct-new",
                    "org_id": "org-1",
                    "agent_jwk": agent_jwk(key.public_key()),
                    "requests_per_minute": 100,
                },
            )
            out.append(r.status_code)
            token = r.json()["token"]
            pid = r.json()["passport"]["jti"]
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway),
                base_url="http://gateway.test",
                auth=Auth(passport=token, agent_key=key),
            ) as c:
                out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
                listed = (await a.get("/admin/passports")).json()
                out.append([p["passport_id"] for p in listed])
                r2 = await a.post(f"/admin/passports/{pid}/revoke", json={"reason": "abuse"})
                out.append(r2.status_code)
                out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            out.append(
                (await a.post("/admin/passports/pp_nope/revoke", json={"reason": "x"})).status_code
            )
            out.append(pid)
        return out

    res = run(go())
    assert res[0] == 200 and res[1] == 200
    assert res[6] in res[2]
    assert res[3] == 200 and res[4] == 403 and res[5] == 404


def test_admin_ledger_head_checkpoint_and_proof(
    gateway: Gateway, agents: AgentFactory, settings: Settings
) -> None:
    agent = agents.issue("acct-l")

    async def go() -> list[Any]:
        out: list[Any] = []
        async with client(gateway, agent) as c, admin_client(gateway) as a:
            ids = []
            for i in range(3):
                r = await c.post("/v1/chat/completions", json=chat_body(f"q{i}"))
                ids.append(r.headers["x-distillguard-exchange-id"])
            out.append((await a.get(f"/admin/ledger/proof/{ids[0]}")).status_code)  # no cp yet
            out.append((await a.post("/admin/ledger/checkpoint")).json()["size"])
            out.append((await a.get("/admin/ledger/head")).json())
            out.append((await a.get(f"/admin/ledger/proof/{ids[1]}")).json())
            out.append((await a.get("/admin/ledger/proof/gx_unknown")).status_code)
        return out

    res = run(go())
    assert res[0] == 409
    assert res[1] == 3
    assert res[2]["size"] == 3 and res[2]["checkpoint"]
    from distillguard.keyring import KeyPurpose

    keys = [k.public_key for k in open_keyring(settings).verify_keys(KeyPurpose.LEDGER)]
    verdict = verify_bundle(res[3], public_keys=keys)  # raises if it does not verify
    assert verdict.content_verified and verdict.tree_size == 3
    assert res[4] == 404


def test_campaigns_come_from_the_scorer(scored: Any) -> None:
    _, gw, _, _ = scored

    async def go() -> Any:
        async with admin_client(gw) as a:
            return (await a.get("/admin/campaigns")).json()

    assert run(go())[0]["cluster_id"] == "c-1"


def test_metrics_health_and_openapi(gateway: Gateway, agents: AgentFactory) -> None:
    agent = agents.issue("acct-m")

    async def go() -> list[httpx.Response]:
        async with client(gateway, agent) as c:
            await c.post("/v1/chat/completions", json=chat_body())
        async with client(gateway) as c:
            await c.post("/v1/chat/completions", json=chat_body())  # unsigned
            return [
                await c.get("/metrics"),
                await c.get("/healthz"),
                await c.get("/readyz"),
                await c.get("/openapi.json"),
            ]

    metrics, health, ready, openapi = run(go())
    text = metrics.text
    assert (
        'distillguard_gateway_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    assert 'distillguard_gateway_rejections_total{reason="missing_signature"} 1.0' in text
    assert "distillguard_gateway_request_seconds_bucket" in text
    assert "distillguard_gateway_record_batch_size_count 1.0" in text
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["checks"]["store"] is True
    paths = openapi.json()["paths"]
    assert {"/v1/chat/completions", "/admin/accounts", "/metrics"} <= set(paths)


def test_readyz_fails_when_the_recorder_stopped(tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings)
    gw.core.recorder.close()

    async def go() -> httpx.Response:
        async with client(gw) as c:
            return await c.get("/readyz")

    r = run(go())
    assert r.status_code == 503 and r.json()["checks"]["recorder"] is False
    gw.close_sync()


def test_default_scorer_is_the_online_scorer(gateway: Gateway, agents: AgentFactory) -> None:
    online = pytest.importorskip("distillguard.monitor.online")
    assert isinstance(gateway.core.scorer, online.OnlineScorer)
    agent = agents.issue("acct-on")

    async def go() -> list[int]:
        async with client(gateway, agent) as c:
            return [
                (await c.post("/v1/chat/completions", json=chat_body(f"q{i}"))).status_code
                for i in range(5)
            ]

    assert run(go()) == [200] * 5
    assert gateway.core.scoring is not None
    gateway.core.scoring.join()
    assert gateway.core.scoring.failures == 0
    assert gateway.core.scorer.exchanges_seen == 5

    async def account() -> Any:
        async with admin_client(gateway) as a:
            return (await a.get("/admin/accounts/acct-on")).json()

    risk = run(account())["risk"]
    assert 0.0 <= risk["account_risk"] <= 1.0


def test_mounted_console_is_behind_the_admin_token(gateway: Gateway) -> None:
    seen: list[str] = []

    async def console(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"console"})

    gateway.mount("/console", console)

    async def go() -> list[int]:
        async with client(gateway) as c:
            anonymous = (await c.get("/console/campaigns")).status_code
        async with admin_client(gateway) as a:
            admin = (await a.get("/console/campaigns")).status_code
        return [anonymous, admin]

    assert run(go()) == [401, 200]
    assert seen == ["/campaigns"]


def test_streamed_answer_is_watermarked_and_recorded(scored: Any) -> None:
    import json

    settings, gw, _, agents = scored
    agent = agents.issue("wm")

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post(
                "/v1/chat/completions", json=chat_body("explain your reasoning", stream=True)
            )

    r = run(go())
    assert r.status_code == 200
    blocks = [b[6:] for b in r.text.strip().split("\n\n")]
    assert blocks[-1] == "[DONE]"
    text = "".join(json.loads(b)["choices"][0]["delta"].get("content", "") for b in blocks[:-1])
    store = open_store(settings.store_url)
    try:
        rows = [s.exchange for b in store.iter_exchanges() for s in b]
    finally:
        store.close()
    assert len(rows) == 1 and rows[0].response == text
    assert rows[0].extra["dg_watermark"]["applied"] is True


def test_admin_records_analyst_verdicts(gateway: Gateway, agents: AgentFactory) -> None:
    """Confirmed and dismissed accounts go to the store (latest counts, history kept)."""
    agent = agents.issue("acct-v")

    async def go() -> list[Any]:
        out: list[Any] = []
        async with client(gateway, agent) as c, admin_client(gateway) as a:
            out.append((await c.post("/v1/chat/completions", json=chat_body())).status_code)
            body = {"verdict": "campaign", "actor": "ana", "note": "card cell C-3"}
            out.append((await a.post("/admin/accounts/acct-v/label", json=body)).status_code)
            body = {"verdict": "legitimate", "actor": "bo", "note": "a university lab"}
            out.append((await a.post("/admin/accounts/acct-v/label", json=body)).status_code)
            out.append((await a.get("/admin/labels")).json())
            out.append(len((await a.get("/admin/labels", params={"history": "true"})).json()))
            bad = {"verdict": "maybe"}
            out.append((await a.post("/admin/accounts/acct-v/label", json=bad)).status_code)
            ok = {"verdict": "campaign"}
            out.append((await a.post("/admin/accounts/nobody/label", json=ok)).status_code)
        return out

    res = run(go())
    assert res[:3] == [200, 200, 200]
    assert [(x["account_id"], x["verdict"], x["actor"]) for x in res[3]] == [
        ("acct-v", "legitimate", "bo")
    ]
    assert res[4] == 2
    assert res[5] == 422 and res[6] == 404
