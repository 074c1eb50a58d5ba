"""Regression (issue 20): an action taken through the admin API and one taken through the
console are recorded alike: one audit trail (the console's page and ``/admin/audit`` show both
doors), and the override, its action-log row and its audit entry carry the same microsecond
whichever door it came through. Before the operations service, ``/admin`` wrote no audit row,
and the two doors converted the time differently (float seconds in the console)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from distillguard.gateway.testing import ADMIN_TOKEN, BASE_URL
from distillguard.store import open_store

from .conftest import World, browser, csrf_of, login


def _admin(world: World) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.gateway),
        base_url=BASE_URL,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )


def _instants(world: World, account_id: str) -> tuple[int, int, int]:
    """(override set_at, its gateway_actions ts, its audit ts) in µs, read from the store."""
    store = open_store(world.settings.store_url)
    try:
        with store.transaction() as cur:
            cur.execute(
                store.q("SELECT set_at FROM gateway_overrides WHERE account_id = ?"),
                (account_id,),
            )
            (set_at,) = cur.fetchone()
            cur.execute(
                store.q(
                    "SELECT MAX(ts) FROM gateway_actions WHERE account_id = ? AND source = 'admin'"
                ),
                (account_id,),
            )
            (logged,) = cur.fetchone()
            cur.execute(
                store.q("SELECT MAX(ts) FROM operations_audit WHERE target = ?"), (account_id,)
            )
            (audited,) = cur.fetchone()
    finally:
        store.close()
    return int(set_at), int(logged), int(audited)


def test_both_doors_audit_alike_with_one_instant(world: World) -> None:
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with _admin(world) as admin:
            r = await admin.put(
                "/admin/accounts/acct-c001/action",
                json={"action": "block", "reason": "via the api", "actor": "bo"},
            )
            assert r.status_code == 200, r.text
            out["admin_instants"] = _instants(world, "acct-c001")
        async with browser(world) as c:
            assert (await login(c)).status_code == 303
            token = csrf_of((await c.get("/console/accounts/acct-c002")).text)
            r = await c.post(
                "/console/accounts/acct-c002/action",
                data={
                    "csrf": token,
                    "action": "throttle",
                    "reason": "via the console",
                    "confirm": "yes",
                },
            )
            assert r.status_code == 303
            out["console_instants"] = _instants(world, "acct-c002")
            out["page"] = (await c.get("/console/audit")).text
        async with _admin(world) as admin:
            out["api"] = (await admin.get("/admin/audit", params={"limit": 10})).json()
            out["admin_only"] = (await admin.get("/admin/audit", params={"door": "admin"})).json()
        return out

    out = asyncio.run(go())
    for door in ("admin_instants", "console_instants"):
        set_at, logged, audited = out[door]
        assert set_at == logged == audited, (door, out[door])
    # the console's audit page shows the action taken through the admin API, and vice versa
    assert "via the api" in out["page"] and "(admin)" in out["page"]
    assert "via the console" in out["page"] and "(console)" in out["page"]
    actions = {(e["door"], e["actor"], e["action"], e["target"]) for e in out["api"]}
    assert ("admin", "bo", "block", "acct-c001") in actions
    assert ("console", "ana", "throttle", "acct-c002") in actions
    assert ("console", "ana", "login", "console") in actions
    assert [e["target"] for e in out["admin_only"]] == ["acct-c001"]


def test_revocations_and_checkpoints_are_audited_through_the_admin_api(world: World) -> None:
    async def go() -> list[Any]:
        async with _admin(world) as admin:
            out: list[Any] = []
            out.append((await admin.post("/admin/ledger/checkpoint")).status_code)
            out.append(
                (
                    await admin.post(
                        "/admin/holds",
                        json={"scope": "account", "target": "acct-c003", "reason": "case 9"},
                    )
                ).json()
            )
            hold_id = out[-1]["hold_id"]
            out.append(
                (
                    await admin.post(f"/admin/holds/{hold_id}/release", json={"actor": "cy"})
                ).status_code
            )
            out.append((await admin.post(f"/admin/holds/{hold_id}/release", json={})).status_code)
            out.append((await admin.post("/admin/holds/hold-nope/release", json={})).status_code)
            out.append((await admin.get("/admin/holds", params={"include_released": True})).json())
            out.append((await admin.get("/admin/audit")).json())
            return out

    checkpoint, hold, released, again, missing, holds, audit = asyncio.run(go())
    assert checkpoint == 200 and released == 200 and again == 404 and missing == 404
    assert hold["target"] == "acct-c003" and hold["created_by"] == "admin"
    assert [h["released_by"] for h in holds] == ["cy"]
    assert [(e["action"], e["actor"], e["door"]) for e in audit] == [
        ("release_hold", "cy", "admin"),
        ("hold_account", "admin", "admin"),
        ("ledger_checkpoint", "admin", "admin"),
    ]
