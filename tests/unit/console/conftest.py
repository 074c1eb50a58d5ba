"""A gateway with the console over a store holding one 120-account campaign and its scan."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.app.ingest import ingest_log
from distillguard.config import Settings
from distillguard.evidence.testing import CAMPAIGN, EMAIL, write_scan
from distillguard.gateway import NullScorer
from distillguard.gateway.app import Gateway
from distillguard.gateway.testing import ADMIN_TOKEN, BASE_URL, make_settings
from distillguard.ledger import Ledger
from distillguard.records import Message
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log

N_CAMPAIGN = 120


@dataclass
class World:
    """The console's world: settings, gateway, campaign accounts."""

    settings: Settings
    gateway: Gateway
    campaign: list[str]
    others: list[str]


def load_world(
    tmp_path: Path, *, store_url: str | None = None
) -> tuple[Settings, list[str], list[str]]:
    """Settings whose store holds the campaign's log and whose console shows its scan."""
    kwargs = {"store_url": store_url} if store_url else {}
    settings = make_settings(tmp_path, **kwargs)
    campaign = [f"acct-c{i:03d}" for i in range(N_CAMPAIGN)]
    others = [f"acct-o{i:03d}" for i in range(10)]
    accounts = [make_account(a, payment_fingerprint="card-shared") for a in campaign] + [
        make_account(a) for a in others
    ]
    exchanges = [
        make_exchange(
            f"ex-{a}-{j}",
            account_id=a,
            offset_s=60.0 * (3 * i + j),
            ip=f"198.51.100.{i % 200}" if a in campaign else f"203.0.{i}.9",
            messages=(Message("user", f"Explain step by step; mail {EMAIL} ({a} {j})"),),
        )
        for i, a in enumerate(campaign + others)
        for j in range(3)
    ]
    log = write_log(tmp_path / "log", accounts, exchanges)
    with open_store(settings.store_url) as store:
        Ledger.attach(store)
        ingest_log(store, log)
    settings.console.scan_results = write_scan(tmp_path / "scan", campaign, others)
    return settings, campaign, others


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The world on the embedded SQLite store."""
    settings, campaign, others = load_world(tmp_path)
    gw = create_gateway(settings, scorer=NullScorer())
    try:
        yield World(settings, gw, campaign, others)
    finally:
        gw.close_sync()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None, "no CSRF field on the page"
    return m.group(1)


async def login(
    c: httpx.AsyncClient, *, token: str = ADMIN_TOKEN, analyst: str = "ana"
) -> httpx.Response:
    """Log in through the form (pre-login cookie, CSRF) and return the answer."""
    form = await c.get("/console/login")
    return await c.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "token": token, "analyst": analyst, "next": ""},
    )


def browser(world: World) -> httpx.AsyncClient:
    """A browser-like client of the gateway (cookies kept), not logged in."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=world.gateway), base_url=BASE_URL)


__all__ = ["CAMPAIGN", "N_CAMPAIGN", "World", "browser", "csrf_of", "load_world", "login"]
