"""The canary action end to end: planted by the gateway, recorded, and found in a suspect."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from distillguard.app import create_gateway
from distillguard.fingerprint.canaries import (
    CanaryFact,
    CanaryGenerator,
    CanaryRegistry,
    probe_canaries,
)
from distillguard.fingerprint.testing import SuspectApp
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.canaries import GatewayCanaries
from distillguard.gateway.policy import RiskScore
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.keyring import open_keyring
from distillguard.records import Exchange
from distillguard.store import open_store


class _Risky:
    """An OnlineScorer with fixed risks (test double of the real interface)."""

    def __init__(self, risks: dict[str, RiskScore]) -> None:
        self.risks = risks

    def observe(self, exchange: Exchange) -> RiskScore:
        return self.score(exchange.account_id)

    def score(self, account_id: str) -> RiskScore:
        return self.risks.get(account_id, RiskScore())


def _suspect(known: list[CanaryFact]) -> SuspectApp:
    """A suspect model trained on the harvested answers: it states the facts it saw."""

    def answer(prompt: str) -> str:
        for fact in known:
            if fact.entity in prompt:
                return fact.sentence
        return "I do not know that one."

    return SuspectApp(answer=answer)


def test_gateway_plants_recorded_canaries_that_probe_canaries_finds(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings, scorer=_Risky({"harvester": RiskScore(account_risk=0.75)}))
    agents = AgentFactory.from_settings(settings)
    prompts = [f"explain topic number {i} step by step" for i in range(12)]

    async def go() -> tuple[list[httpx.Response], httpx.Response]:
        async with client(gw, agents.issue("harvester")) as c:
            rs = [await c.post("/v1/chat/completions", json=chat_body(p)) for p in prompts]
        async with client(gw, agents.issue("bystander")) as c:
            clean = await c.post("/v1/chat/completions", json=chat_body(prompts[0]))
        return rs, clean

    try:
        responses, clean = asyncio.run(go())
    finally:
        gw.close_sync()
    assert all(r.status_code == 200 for r in responses) and clean.status_code == 200
    answers = [r.json()["choices"][0]["message"]["content"] for r in responses]
    key = open_keyring(settings).watermark_key()
    generator = CanaryGenerator(secret=key.secret, kid=key.kid)
    store = open_store(settings.store_url)
    try:
        planted = CanaryRegistry(store).planted("harvester")
        assert CanaryRegistry(store).planted("bystander") == []
        ids = [
            store.get_exchange(r.headers["x-distillguard-exchange-id"]).exchange.extra["dg_canary"]  # type: ignore[union-attr]
            for r in responses
        ]
    finally:
        store.close()
    # every answer carries one of the account's canaries, and each one is in the registry
    assert {p.canary_id for p in planted} == set(ids)
    assert len(planted) >= 4  # harvesting spreads over the account's 8 canaries
    by_id = {p.canary_id: p for p in planted}
    for text, cid in zip(answers, ids, strict=True):
        assert text.endswith(" " + by_id[cid].fact.sentence)
        assert by_id[cid].kid == key.kid
        assert by_id[cid].fact == generator.fact(account_id="harvester", index=by_id[cid].index)
    assert not any(p.fact.sentence in clean.text for p in planted)

    facts = [p.fact for p in planted]
    # a suspect distilled from the harvested answers recalls what was planted
    result = probe_canaries(
        endpoint="http://suspect.test/v1",
        model="suspect",
        planted=facts,
        generator=generator,
        transport=httpx.ASGITransport(app=_suspect(facts)),
        seed=3,
    )
    assert result.verdict and result.p_value < 0.01
    assert result.planted_hits == len(facts) and result.decoy_hits == 0
    # an independent model that never saw them is not flagged
    independent = probe_canaries(
        endpoint="http://other.test/v1",
        model="other",
        planted=facts,
        generator=generator,
        transport=httpx.ASGITransport(app=_suspect([])),
        seed=3,
    )
    assert not independent.verdict and independent.p_value == 1.0


def test_registry_failure_plants_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    key = open_keyring(settings).watermark_key()
    canaries = GatewayCanaries.open(store_url=settings.store_url, key=key)
    text, cid = canaries.plant("an answer.", "acct")
    assert cid is not None and text.startswith("an answer. ")
    canaries.close()  # the registry can no longer be written
    other: Any = canaries.plant("another answer entirely.", "acct-2")
    assert other == ("another answer entirely.", None)
    assert key.secret.hex() not in repr(canaries)
