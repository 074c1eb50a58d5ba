"""Replaying a simulated log through the gateway: time order, agents per account, forwarded
client attributes, pacing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.replay import replay_log
from distillguard.gateway.testing import make_settings
from distillguard.records import read_log
from distillguard.sim import load_scenario, simulate
from distillguard.store import open_store


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "log"
    simulate(load_scenario("tiny"), out=out, seed=3, instructions="grammar")
    return out


def test_replay_sends_the_first_exchanges_in_time_order(tmp_path: Path, log_dir: Path) -> None:
    settings = make_settings(tmp_path, trust_forwarded_for=True)
    gw = create_gateway(settings)
    try:
        result = replay_log(
            log_dir,
            target="http://gateway.test",
            factory=AgentFactory.from_settings(settings),
            rate=2000,
            limit=40,
            concurrency=1,  # one at a time: the store order is the send order
            model="stub-1",
            transport=httpx.ASGITransport(app=gw),
        )
    finally:
        gw.close_sync()
    assert result.sent == 40 and result.errors == 0
    assert result.ok == 40, result.statuses
    expected = sorted(
        (e for b in read_log(log_dir).exchanges() for e in b), key=lambda e: (e.ts, e.exchange_id)
    )[:40]
    store = open_store(settings.store_url)
    try:
        got = [s.exchange for b in store.iter_exchanges() for s in b]
    finally:
        store.close()
    assert [g.account_id for g in got] == [e.account_id for e in expected]
    assert [g.messages[-1].content for g in got] == [e.messages[-1].content for e in expected]
    assert [g.ip for g in got] == [e.ip for e in expected]  # forwarded by the trusted proxy
    assert [g.asn for g in got] == [e.asn for e in expected]
    assert result.accounts == len({e.account_id for e in expected})
    # each account has its own agent key
    assert len({g.agent_id for g in got}) == result.accounts


def test_replay_is_paced(tmp_path: Path, log_dir: Path) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings)
    try:
        result = replay_log(
            log_dir,
            target="http://gateway.test",
            factory=AgentFactory.from_settings(settings),
            rate=20,
            limit=10,
            model="stub-1",
            transport=httpx.ASGITransport(app=gw),
        )
    finally:
        gw.close_sync()
    assert result.ok == 10
    assert result.seconds >= 9 / 20 - 0.01  # the 10th request is due after 0.45 s


def test_replay_validates_arguments(log_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ValueError):
        replay_log(log_dir, target="http://x", factory=AgentFactory.from_settings(settings), rate=0)
