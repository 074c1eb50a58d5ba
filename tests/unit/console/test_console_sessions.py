"""Issue 24: console sessions end at logout and at an admin token change; odd account ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from distillguard.app import create_gateway
from distillguard.app.ingest import ingest_log
from distillguard.gateway import NullScorer
from distillguard.gateway.app import Gateway
from distillguard.gateway.testing import BASE_URL
from distillguard.records import Message
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log

from .conftest import World, browser, csrf_of, login


def _with_cookie(gateway: Gateway, cookie: str) -> httpx.AsyncClient:
    """Another browser replaying a captured session cookie."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway),
        base_url=BASE_URL,
        cookies={"dg_console": cookie},
    )


def test_a_cookie_captured_before_logout_is_refused_after_it(world: World) -> None:
    async def go() -> None:
        async with browser(world) as c:
            assert (await login(c)).status_code == 303
            captured = c.cookies.get("dg_console")
            assert captured
            page = await c.get("/console/")
            assert page.status_code == 200
            async with _with_cookie(world.gateway, captured) as thief:
                assert (await thief.get("/console/")).status_code == 200  # valid until logout
            r = await c.post("/console/logout", data={"csrf": csrf_of(page.text)})
            assert r.status_code == 303
            async with _with_cookie(world.gateway, captured) as thief:
                r = await thief.get("/console/")
                assert r.status_code == 303 and "/console/login" in r.headers["location"]
                r = await thief.post("/console/ledger/checkpoint", data={})
                assert r.status_code == 401

    asyncio.run(go())


def test_sessions_of_an_old_admin_token_are_refused(world: World) -> None:
    async def go() -> str:
        async with browser(world) as c:
            assert (await login(c)).status_code == 303
            cookie = c.cookies.get("dg_console")
            assert cookie
            return cookie

    cookie = asyncio.run(go())
    rotated = world.settings.model_copy(deep=True)
    rotated.gateway.admin_token = SecretStr("a-brand-new-admin-token-0123456789")
    new_gateway = create_gateway(rotated, scorer=NullScorer())

    async def replay(gateway: Gateway) -> int:
        async with _with_cookie(gateway, cookie) as thief:
            return (await thief.get("/console/")).status_code

    try:
        assert asyncio.run(replay(new_gateway)) == 303
        # a replica still running with the old token also refuses it: the session row is gone
        assert asyncio.run(replay(world.gateway)) == 303
    finally:
        new_gateway.close_sync()


ODD_IDS = ["org/team/acct-1", "acct%41", "acct?x=1&y", "comptes/élève-ü", "a b/..", "acct#frag"]


@pytest.mark.parametrize("account_id", ODD_IDS)
def test_account_ids_with_slashes_and_odd_characters(
    world: World, tmp_path: Path, account_id: str
) -> None:
    """An account id with '/', '%', '?', unicode or spaces has a working page and actions."""
    log = write_log(
        tmp_path / "odd",
        [make_account(account_id)],
        [make_exchange("ex-odd-1", account_id=account_id, messages=(Message("user", "hi"),))],
    )
    with open_store(world.settings.store_url) as store:
        ingest_log(store, log)
    path = "/console/accounts/" + quote(account_id, safe="")

    async def go() -> Any:
        async with browser(world) as c:
            assert (await login(c)).status_code == 303
            page = await c.get(path)
            assert page.status_code == 200, page.text
            assert "ex-odd-1" in page.text
            data = {"csrf": csrf_of(page.text), "action": "watermark", "reason": "odd id"}
            confirm = await c.post(path + "/action/confirm", data=data)
            assert confirm.status_code == 200, confirm.text
            r = await c.post(path + "/action", data={**data, "confirm": "yes"})
            assert r.status_code == 303, r.text
            back = await c.get(r.headers["location"])
            assert back.status_code == 200
            return world.gateway.core.policy.override(account_id)

    override = asyncio.run(go())
    assert override is not None and override.action.value == "watermark"
