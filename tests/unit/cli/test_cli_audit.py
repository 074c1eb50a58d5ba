"""The CLI's state-changing commands go through the operations service: each leaves an audit
row (``operations_audit``) with door ``cli``, like the admin API and the console (issue 20)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

import pytest

from distillguard.app.operations import AuditEntry, Operations
from distillguard.cli.main import main
from distillguard.passport import open_registry
from distillguard.store import open_store


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> str:
    """An isolated home whose passports live in the store (a SQLite file, then PostgreSQL)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DISTILLGUARD_STORE__URL", store_url)
    monkeypatch.setenv("DISTILLGUARD_PASSPORT__REGISTRY", "store")
    return store_url


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def trail(store_url: str) -> list[AuditEntry]:
    """The audit trail, oldest first."""
    from distillguard.config import Settings

    store = open_store(store_url)
    registry = open_registry(Settings())
    ops = Operations(store=store, registry=registry, ledger_origin="t", close_registry=True)
    try:
        return list(reversed(ops.audit_trail(limit=1000)))
    finally:
        ops.close()


def test_passport_issue_and_revoke_are_audited(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "init"]) == 0
    code, issued = run_json(
        capsys,
        *("passport", "issue", "--account", "acct_1", "--org", "org_1"),
        *("--new-agent-key", "agent.pem", "--out", "agent.passport"),
    )
    assert code == 0 and issued["ok"]
    pid = issued["passport"]["jti"]
    assert issued["passport"]["scope"]["endpoints"] == ["*"]  # the CLI's default, unchanged
    code, revoked = run_json(capsys, "passport", "revoke", pid, "--reason", "campaign C-1")
    assert code == 0 and revoked["known"] and revoked["reason"] == "campaign C-1"
    # an id this registry never issued: warned about, revoked all the same, audited
    code, other = run_json(capsys, "passport", "revoke", "pp_elsewhere", "--reason", "leak")
    assert code == 0 and not other["known"]
    rows = [(e.door, e.actor, e.action, e.target, e.reason, e.outcome) for e in trail(env)]
    user = getpass.getuser()
    assert rows == [
        ("cli", user, "issue_passport", "acct_1", pid, "issued"),
        ("cli", user, "revoke_passport", "acct_1", f"{pid}: campaign C-1", "revoked"),
        (
            "cli",
            user,
            "revoke_passport",
            "pp_elsewhere",
            "pp_elsewhere: leak",
            "revoked (unknown id)",
        ),
    ]


def test_issue_without_a_keyring_writes_nothing(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            *("passport", "issue", "--account", "acct_1", "--org", "org_1"),
            *("--new-agent-key", "agent.pem", "--out", "agent.passport"),
        ]
    )
    assert code == 3  # a configuration error, as before
    assert not (tmp_path / "agent.pem").exists() and not (tmp_path / "agent.passport").exists()


def test_holds_placed_and_released_are_audited(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, placed = run_json(
        capsys,
        *("retention", "hold", "add", "--account", "acct-a", "--account", "acct-b"),
        *("--reason", "campaign c-7", "--actor", "analyst"),
    )
    assert code == 0 and [h["target"] for h in placed] == ["acct-a", "acct-b"]
    code, ex = run_json(
        capsys,
        *("retention", "hold", "add", "--exchange", "ex-1", "--reason", "bundle b-7"),
        *("--actor", "me", "--store", env),
    )
    assert code == 0 and ex[0]["created_by"] == "me"
    hold_id = placed[0]["hold_id"]
    code, released = run_json(capsys, "retention", "hold", "release", hold_id, "--actor", "counsel")
    assert code == 0 and released[0]["released_by"] == "counsel"
    code, _ = run_json(capsys, "retention", "hold", "release", hold_id, "--actor", "counsel")
    assert code == 4  # already released: refused as before, nothing audited
    rows = [(e.door, e.actor, e.action, e.target, e.reason, e.outcome) for e in trail(env)]
    assert rows == [
        ("cli", "analyst", "hold_account", "acct-a", "campaign c-7", hold_id),
        ("cli", "analyst", "hold_account", "acct-b", "campaign c-7", placed[1]["hold_id"]),
        ("cli", "me", "hold_exchange", "ex-1", "bundle b-7", ex[0]["hold_id"]),
        ("cli", "counsel", "release_hold", "acct-a", "-", hold_id),
    ]


def test_ledger_checkpoint_is_audited(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init"]) == 0
    code, cp = run_json(capsys, "ledger", "checkpoint", "--out", "cp.txt")
    assert code == 0 and cp["note"] == Path("cp.txt").read_text(encoding="utf-8")
    assert main(["ledger", "checkpoint", "--every", "0.1", "--count", "2"]) == 0
    rows = [(e.door, e.actor, e.action, e.target, e.outcome) for e in trail(env)]
    assert rows == [("cli", getpass.getuser(), "ledger_checkpoint", "ledger", "size 0")] * 3


def test_ledger_checkpoint_without_a_keyring_is_refused(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "checkpoint"]) == 3
