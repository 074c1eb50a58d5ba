"""Console routes over the ASGI transport: auth, CSRF, pages, pagination, filters, actions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from distillguard.evidence.testing import EMAIL

from .conftest import CAMPAIGN, N_CAMPAIGN, World, browser, csrf_of, login


def run(
    fn: Callable[[httpx.AsyncClient], Awaitable[Any]], world: World, *, logged_in: bool = True
) -> Any:
    async def main() -> Any:
        async with browser(world) as c:
            if logged_in:
                r = await login(c)
                assert r.status_code == 303, r.text
            return await fn(c)

    return asyncio.run(main())


def _admin_token(world: World) -> str:
    token = world.settings.gateway.admin_token
    assert token is not None, "the console tests configure an admin token"
    return token.get_secret_value()


def rows(html: str) -> list[str]:
    return re.findall(r'<tr><td><a href="/console/accounts/([^"]+)">', html)


def test_pages_need_a_session(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        for path in (
            "/console/",
            "/console/campaigns",
            f"/console/campaigns/{CAMPAIGN}",
            "/console/accounts/acct-c001",
            "/console/ledger",
            "/console/results",
            "/console/audit",
            "/console/live",
        ):
            r = await c.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/console/login?next=")
        r = await c.get("/console/live", headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/console/login")
        r = await c.post("/console/accounts/acct-c001/action", data={"action": "block"})
        assert r.status_code == 401
        # a forged cookie is no session
        c.cookies.set("dg_console", "eyJhIjoiYW5hIiwiZSI6OTk5OTk5OTk5OSwibiI6IngifQ.AAAA")
        assert (await c.get("/console/")).status_code == 303

    run(go, world, logged_in=False)


def test_login_needs_the_admin_token_and_csrf(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        r = await login(c, token="wrong-token")
        assert r.status_code == 401 and "Wrong admin token" in r.text
        assert "dg_console=" not in r.headers.get("set-cookie", "").replace("dg_console_pre", "")
        form = await c.get("/console/login")
        r = await c.post("/console/login", data={"csrf": "forged", "token": "x", "analyst": "a"})
        assert r.status_code == 401 and "expired" in r.text
        del form
        r = await login(c)
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("dg_console="))
        low = cookie.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/console" in low
        page = await c.get("/console/")
        assert page.status_code == 200 and "Traffic overview" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]

    run(go, world, logged_in=False)


def test_state_changes_need_the_csrf_token(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        data = {"action": "block", "reason": "test", "confirm": "yes"}
        r = await c.post("/console/accounts/acct-c001/action", data=data)
        assert r.status_code == 403
        r = await c.post("/console/accounts/acct-c001/action", data={**data, "csrf": "nope"})
        assert r.status_code == 403
        page = await c.get("/console/accounts/acct-c001")
        assert "tag-block" not in page.text
        r = await c.post("/console/logout", data={})
        assert r.status_code == 403

    run(go, world)


def test_campaign_accounts_are_paginated_and_filtered(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        base = f"/console/campaigns/{CAMPAIGN}"
        first = await c.get(base)
        assert first.status_code == 200
        ids = rows(first.text)
        assert ids == world.campaign[:50]  # score order (write_scan scores fall with the index)
        assert f"{N_CAMPAIGN} matching" in first.text and "page 1 of 3" in first.text
        last = await c.get(base, params={"page": 3})
        assert rows(last.text) == world.campaign[100:]
        beyond = await c.get(base, params={"page": 99})
        assert rows(beyond.text) == world.campaign[100:]
        found = await c.get(base, params={"q": "C01"})
        assert rows(found.text) == [a for a in world.campaign if "c01" in a]
        scored = await c.get(base, params={"min_score": "0.85"})
        assert rows(scored.text) == world.campaign[:6]  # 0.90, 0.89, ... 0.85
        by_id = await c.get(base, params={"sort": "account_id", "page": 2})
        assert rows(by_id.text) == sorted(world.campaign)[50:100]
        # htmx asks for the table only
        frag = await c.get(
            base, params={"q": "c11"}, headers={"HX-Request": "true", "HX-Target": "accounts"}
        )
        assert frag.text.lstrip().startswith('<section id="accounts"')
        assert rows(frag.text) == [a for a in world.campaign if "c11" in a]
        bad = await c.get(base, params={"min_score": "banana", "page": "x"})
        assert bad.status_code == 200 and rows(bad.text) == world.campaign[:50]
        assert (await c.get("/console/campaigns/nope")).status_code == 404

    run(go, world)


def test_campaign_page_shows_graph_timeline_signals_redacted_samples(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = (await c.get(f"/console/campaigns/{CAMPAIGN}")).text
        assert '<svg class="graph"' in page and "card-shared" in page
        assert '<svg class="chart"' in page
        assert "synchrony_p" in page and "elicitation_share" in page
        assert "[EMAIL]" in page and EMAIL not in page
        listing = (await c.get("/console/campaigns")).text
        assert CAMPAIGN in listing and '<svg class="spark"' in listing

    run(go, world)


def test_action_needs_confirmation_then_applies_and_is_audited(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = await c.get("/console/accounts/acct-c007")
        token = csrf_of(page.text)
        data = {"csrf": token, "action": "block", "reason": "hydra cluster"}
        confirm = await c.post("/console/accounts/acct-c007/action/confirm", data=data)
        assert confirm.status_code == 200 and "You are about to" in confirm.text
        assert world.gateway.core.policy.override("acct-c007") is None  # nothing yet
        r = await c.post("/console/accounts/acct-c007/action", data=data)
        assert r.status_code == 400  # not confirmed
        r = await c.post("/console/accounts/acct-c007/action", data={**data, "confirm": "yes"})
        assert r.status_code == 303
        o = world.gateway.core.policy.override("acct-c007")
        assert o is not None and o.action.value == "block" and o.actor == "ana"
        text = (await c.get("/console/accounts/acct-c007")).text
        assert "tag-block" in text and "hydra cluster" in text
        audit = (await c.get("/console/audit")).text
        assert "acct-c007" in audit and "hydra cluster" in audit and ">ana<" in audit
        # filter the campaign by the action now set
        blocked = await c.get(f"/console/campaigns/{CAMPAIGN}", params={"action": "block"})
        assert rows(blocked.text) == ["acct-c007"]
        # the admin API sees the same override
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.gateway),
            base_url="http://gateway.test",
            headers={"authorization": f"Bearer {_admin_token(world)}"},
        ) as admin:
            acct = (await admin.get("/admin/accounts/acct-c007")).json()
            assert acct["action"] == "block" and acct["override"]["actor"] == "ana"
        # clear it
        r = await c.post(
            "/console/accounts/acct-c007/action", data={**data, "action": "clear", "confirm": "yes"}
        )
        assert r.status_code == 303 and world.gateway.core.policy.override("acct-c007") is None
        bad = await c.post(
            "/console/accounts/acct-c007/action/confirm", data={**data, "action": "nuke"}
        )
        assert bad.status_code == 400
        empty = await c.post(
            "/console/accounts/acct-c007/action/confirm", data={**data, "reason": " "}
        )
        assert empty.status_code == 400

    run(go, world)


def test_account_exchanges_keyset_pages_and_unknown_account(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = await c.get("/console/accounts/acct-c005")
        assert page.status_code == 200
        ids = re.findall(r"<code>(ex-acct-c005-\d)</code>", page.text)
        assert ids == ["ex-acct-c005-2", "ex-acct-c005-1", "ex-acct-c005-0"]
        assert EMAIL not in page.text and "card-shared" in page.text
        assert (await c.get("/console/accounts/nobody")).status_code == 404

    run(go, world)


def test_overview_and_live_fragment(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = (await c.get("/console/")).text
        assert 'hx-trigger="every 5s"' in page
        assert rows(page)[:3] == world.campaign[:3]  # top accounts by risk
        frag = await c.get("/console/live", headers={"HX-Request": "true"})
        assert frag.text.lstrip().startswith('<section id="live"')
        # 3 exchanges per account, one a minute: the last minute of the window has 1
        assert re.search(r'id="rpm">1<', frag.text)

    run(go, world)


def test_ledger_checkpoint_and_audit(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = await c.get("/console/ledger")
        assert page.status_code == 200 and 'id="tree-size">390<' in page.text
        token = csrf_of(page.text)
        assert (await c.post("/console/ledger/checkpoint", data={"csrf": token})).status_code == 303
        assert (await c.post("/console/ledger/audit", data={"csrf": token})).status_code == 303
        text = (await c.get("/console/ledger")).text
        assert "consistent" in text and "No checkpoint published yet" not in text

    run(go, world)


def test_results_upload_and_bad_files(world: World, tmp_path: Any) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        page = await c.get("/console/results")
        token = csrf_of(page.text)
        good = {
            "method": "kgw-green-fraction",
            "statistic": 7.5,
            "p_value": 3e-14,
            "n_scored": 4096,
            "suspect": "student-7",
            "curve": [
                {"n_scored": 1024, "statistic": 3.0, "p_value": 1e-3},
                {"n_scored": 4096, "statistic": 7.5, "p_value": 3e-14},
            ],
        }
        r = await c.post(
            "/console/results/upload",
            data={"csrf": token},
            files={"file": ("radio.json", orjson.dumps(good), "application/json")},
        )
        assert r.status_code == 303
        attribution = {
            "suspect": "s",
            "verdict": "fam-a",
            "alpha": 0.01,
            "method": "dc",
            "ranking": [{"family": "fam-a", "statistic": 5.0, "p_value": 1e-6}],
        }
        r = await c.post(
            "/console/results/upload",
            data={"csrf": token},
            files={"file": ("attr.json", orjson.dumps(attribution), "application/json")},
        )
        assert r.status_code == 303
        for bad in (
            b"not json",
            b"[1, 2]",
            orjson.dumps({"method": "x", "p_value": 2.0, "statistic": 1}),
        ):
            r = await c.post(
                "/console/results/upload",
                data={"csrf": token},
                files={"file": ("bad.json", bad, "application/json")},
            )
            assert r.status_code == 422, bad
        r = await c.post(
            "/console/results/upload", files={"file": ("x.json", b"{}", "application/json")}
        )
        assert r.status_code == 403
        text = (await c.get("/console/results")).text
        assert "student-7" in text and "3e-14" in text and "fam-a" in text
        assert text.count('class="result"') == 2

    run(go, world)


def test_static_assets_are_bundled(world: World) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        js = await c.get("/console/static/htmx.min.js")
        assert js.status_code == 200 and len(js.content) > 10_000
        assert (await c.get("/console/static/htmx.LICENSE")).status_code == 200
        assert (await c.get("/console/static/../app.py")).status_code == 404
        assert (await c.get("/console/static/app.py")).status_code == 404
        page = (await c.get("/console/login")).text
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in page

    run(go, world, logged_in=False)


def test_revoke_passport_takes_effect_at_once(world: World) -> None:
    from distillguard.gateway.agents import AgentFactory
    from distillguard.gateway.testing import chat_body, client

    agent = AgentFactory.from_settings(world.settings).issue("acct-c003")

    async def go(c: httpx.AsyncClient) -> None:
        async with client(world.gateway, agent) as api:
            assert (await api.post("/v1/chat/completions", json=chat_body())).status_code == 200
            page = await c.get("/console/accounts/acct-c003")
            pid = agent.passport_id if hasattr(agent, "passport_id") else None
            found = re.search(r"<code>(pp_[^<]+)</code>", page.text)
            assert found is not None and (pid is None or found.group(1) == pid)
            data = {"csrf": csrf_of(page.text), "reason": "leaked key"}
            path = f"/console/passports/{found.group(1)}/revoke"
            assert (await c.post(path + "/confirm", data=data)).status_code == 200
            assert (await c.post(path, data=data)).status_code == 400  # not confirmed
            assert (await c.post(path, data={**data, "confirm": "yes"})).status_code == 303
            refused = await api.post("/v1/chat/completions", json=chat_body())
            assert (
                refused.status_code == 403 and refused.json()["error"]["code"] == "revoked_passport"
            )
            text = (await c.get("/console/audit")).text
            assert "revoke_passport" in text and "leaked key" in text
            missing = await c.post("/console/passports/pp_nope/revoke/confirm", data=data)
            assert missing.status_code == 404

    run(go, world)


def test_vendored_htmx_is_the_recorded_version() -> None:
    from importlib import resources

    from distillguard.console import HTMX_VERSION

    js = resources.files("distillguard.console").joinpath("static", "htmx.min.js").read_text()
    assert f'version:"{HTMX_VERSION}"' in js
