"""The key-compromise runbook of docs/keys.md, step by step, with the real CLI and the gateway.

A passport issuer key leaks. The runbook: rotate it (if it is still active), mark it
compromised, restart the gateways, re-issue the passports it signed. Checked here at each step:
a passport minted with the leaked key after its rotation is refused (with any id, ten-year
lifetime, or an iat back-dated before the rotation); passports it signed before the rotation
stay valid until the key is marked compromised, then everything it signed is refused; passports
re-issued under the new key are accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.cli.main import main
from distillguard.config import Settings, load_settings
from distillguard.gateway.agents import Agent
from distillguard.gateway.testing import ADMIN_TOKEN, chat_body, client
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.passport import PassportIssuer, load_agent_key


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("DISTILLGUARD_HOME", str(home))
    monkeypatch.setenv("DISTILLGUARD_GATEWAY__ADMIN_TOKEN", ADMIN_TOKEN)
    # the public URL the clients call: its host is the only accepted @authority
    monkeypatch.setenv("DISTILLGUARD_GATEWAY__PUBLIC_URL", "http://gateway.test")
    yield home


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def issue(capsys: pytest.CaptureFixture[str], account: str, key_args: list[str]) -> Agent:
    out = f"{account}-{time.monotonic_ns()}.passport"
    code, data = cli(
        capsys, "passport", "issue", "--account", account, "--org", "org-1", *key_args, "--out", out
    )
    assert code == 0, data
    key_file = Path(key_args[1])
    return Agent(
        account_id=account,
        passport_id=data["passport"]["jti"],
        token=Path(out).read_text().strip(),
        key=load_agent_key(key_file),
    )


def status_and_code(settings: Settings, agent: Agent) -> tuple[int, str | None]:
    """One chat request through a freshly started gateway (what a restart gives)."""
    gateway = create_gateway(settings)

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("hello"))

    try:
        r = asyncio.run(go())
    finally:
        gateway.close_sync()
    # the OpenAI endpoints answer errors in the OpenAI shape: {"error": {"code": ...}}
    code = r.json()["error"]["code"] if r.status_code != 200 else None
    return r.status_code, code


def forge(leaked: Any, agent: Agent, *, iat: int, pid: str) -> Agent:
    """What an attacker holding the leaked key does: mint a passport of their own."""
    passport = PassportIssuer(key=leaked).issue(
        account_id="attacker",
        org_id="org-x",
        agent_public_jwk={"kty": "OKP", "crv": "Ed25519", "x": _x(agent)},
        ttl_s=10 * 365 * 86400,
        now=iat,
        passport_id=pid,
    )
    return Agent(account_id="attacker", passport_id=pid, token=passport.token, key=agent.key)


def _x(agent: Agent) -> str:
    from distillguard.passport import agent_jwk

    return agent_jwk(agent.key.public_key())["x"]


def test_key_compromise_runbook(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init"]) == 0
    settings = load_settings()
    before = issue(capsys, "acct-1", ["--new-agent-key", "acct-1.pem"])
    assert status_and_code(settings, before) == (200, None)
    leaked = Keyring.load(settings.keyring_path).signing_key(KeyPurpose.PASSPORT)
    issued_before_rotation = int(time.time())
    time.sleep(1.1)  # iat has whole seconds: the rotation falls in a later second

    # Step 1: rotate the leaked key (the attacker keeps a copy).
    code, rotated = cli(capsys, "keys", "rotate", "passport")
    assert code == 0 and rotated["retired"] == leaked.kid
    attacker = forge(leaked, before, iat=int(time.time()) + 1, pid="pp_invented")
    assert status_and_code(settings, attacker) == (401, "retired_issuer_key")
    code, _ = cli(capsys, "passport", "inspect", attacker.token)
    assert code == 5
    # back-dating iat before the rotation gets past the retirement check, not the registry
    backdated = forge(leaked, before, iat=issued_before_rotation, pid="pp_backdated")
    assert status_and_code(settings, backdated) == (401, "unregistered_passport")
    # what stays valid: the passports the key issued before the rotation
    assert status_and_code(settings, before) == (200, None)

    # Step 2: mark the leaked key compromised: everything it signed is refused.
    code, marked = cli(
        capsys, "keys", "compromised", leaked.kid, "--reason", "found in a public bucket", "--yes"
    )
    assert code == 0 and marked["key"]["status"] == "compromised"
    assert marked["new_kid"] is None  # already retired in step 1
    assert status_and_code(settings, before) == (401, "compromised_issuer_key")
    assert status_and_code(settings, attacker)[1] == "compromised_issuer_key"
    code, listed = cli(capsys, "keys", "list")
    assert {k["kid"]: k["status"] for k in listed["keys"]}[leaked.kid] == "compromised"
    code, _ = cli(capsys, "keys", "export-public", "--out", "jwks.json")
    exported = {k["kid"]: k for k in json.loads(Path("jwks.json").read_text())["keys"]}
    assert exported[leaked.kid]["status"] == "compromised"

    # Step 3: re-issue the affected passports under the new key (same agent key): accepted.
    code, listed = cli(capsys, "passport", "list")
    affected = [p for p in listed["passports"] if p["issuer_kid"] == leaked.kid]
    assert [p["passport_id"] for p in affected] == [before.passport_id]
    after = issue(capsys, "acct-1", ["--agent-key", "acct-1.pem"])
    assert status_and_code(settings, after) == (200, None)
    code, _ = cli(capsys, "passport", "revoke", before.passport_id, "--reason", "key compromise")
    assert code == 0


def test_ledger_key_compromise_runbook(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Step 5 of the runbook (issue 24 review gap 2), with the real CLI: a ledger key leaks
    after it signed checkpoints and the tombstones of legitimate erasures. Mark it compromised,
    sign a checkpoint with the new key, review and re-sign the tombstones: the audit passes,
    naming the old checkpoints as distrusted; a checkpoint forged with the leaked key over a
    tree no trusted checkpoint covers still fails it."""
    from distillguard.ledger import Ledger, sign_checkpoint
    from distillguard.records import Account
    from distillguard.store import open_store
    from distillguard.store.base import new_salts
    from distillguard.testing import make_exchange

    assert main(["keys", "init"]) == 0
    settings = load_settings()
    store = open_store(settings.store_url)
    ledger = Ledger.attach(store, origin=settings.ledger.origin)
    exchanges = [make_exchange(f"ex-{i}", account_id="acct-1", offset_s=i) for i in range(6)]
    with store.transaction() as cur:
        account = Account(account_id="acct-1", created_at=exchanges[0].ts)
        store.add_accounts(cur, [account], run_id="t")
        store.add_exchanges(cur, list(zip(exchanges, new_salts(6), strict=True)))
    store.close()
    assert cli(capsys, "ledger", "checkpoint")[0] == 0
    # a legitimate erasure, signed by the ledger key, and a checkpoint after it
    code, _ = cli(
        capsys, "retention", "erase", "--account", "acct-1", "--scope", "content",
        "--reason", "GDPR art. 17", "--actor", "dpo@example.com",
    )  # fmt: skip
    assert code == 0
    code, audit = cli(capsys, "ledger", "audit")
    assert code == 0 and len(audit["erased"]) == 6, audit
    leaked = Keyring.load(settings.keyring_path).signing_key(KeyPurpose.LEDGER)

    # Step 1: mark the ledger key compromised (a new ledger key is made).
    code, marked = cli(capsys, "keys", "compromised", leaked.kid, "--reason", "leak", "--yes")
    assert code == 0 and marked["new_kid"] not in (None, leaked.kid)
    code, audit = cli(capsys, "ledger", "audit")
    assert code == 1  # every old checkpoint and tombstone is now untrusted
    kinds = {f["kind"] for f in audit["findings"]}
    assert {"tombstone_signature", "checkpoint_signature"} <= kinds, audit

    # Step 5a: sign a checkpoint with the new key: the old checkpoints become warnings.
    code, _ = cli(capsys, "ledger", "checkpoint")
    assert code == 0
    code, audit = cli(capsys, "ledger", "audit")
    assert code == 1
    assert {f["kind"] for f in audit["findings"]} == {"tombstone_signature"}, audit
    assert {w["kind"] for w in audit["warnings"]} == {"checkpoint_distrusted"}
    assert len(audit["warnings"]) == 2  # the checkpoint before and the one after the erasure

    # Step 5b: review the tombstones the leaked key signed, then re-sign them.
    code, listed = cli(capsys, "ledger", "seal-erasures", "--resign", leaked.kid, "--actor", "sec")
    assert code == 0 and len(listed["signed_by_kid"]) == 6 and listed["resigned"] == []
    code, done = cli(
        capsys, "ledger", "seal-erasures", "--resign", leaked.kid, "--actor", "sec", "--yes"
    )
    assert code == 0 and len(done["resigned"]) == 6 and done["checkpoint"] is not None
    assert {e["signed_by"] for e in done["resigned"]} == {marked["new_kid"]}
    code, audit = cli(capsys, "ledger", "audit")
    assert code == 0 and audit["ok"] and len(audit["erased"]) == 6, audit
    assert {w["kind"] for w in audit["warnings"]} == {"checkpoint_distrusted"}
    # ... and the same from the exported JWK Set (what an outside auditor holds)
    assert cli(capsys, "keys", "export-public", "--out", "jwks.json")[0] == 0
    code, audit = cli(capsys, "ledger", "audit", "--public-key", "jwks.json")
    assert code == 0 and len(audit["warnings"]) == 2, audit

    # The attacker's checkpoint, signed with the leaked key over a tree nobody trusted signs
    # (a record rewritten after the last checkpoint), is still a failure.
    store = open_store(settings.store_url)
    ledger = Ledger.open(store)
    with store.transaction() as cur:
        cur.execute("UPDATE exchanges SET account_id = 'acct-x' WHERE exchange_id = 'ex-2'")
    exchanges = [make_exchange("ex-9", account_id="acct-1", offset_s=9)]
    with store.transaction() as cur:
        store.add_exchanges(cur, list(zip(exchanges, new_salts(1), strict=True)))
    head = ledger.head()
    forged = sign_checkpoint(
        origin=ledger.origin, size=head.size, root_hash=head.root_hash, key=leaked
    )
    store.close()
    Path("forged.txt").write_text(forged.note)
    code, audit = cli(capsys, "ledger", "audit", "--checkpoint", "forged.txt")
    assert code == 1
    bad = [f for f in audit["findings"] if f["checkpoint"] == "forged.txt"]
    assert [f["kind"] for f in bad] == ["checkpoint_signature"], audit
    # a resign with the key that is still trusted is refused
    code, _ = cli(
        capsys, "ledger", "seal-erasures", "--resign", marked["new_kid"], "--actor", "x", "--yes"
    )
    assert code != 0
