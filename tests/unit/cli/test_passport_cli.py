"""``distillguard passport issue|list|revoke|inspect`` over both registries (file and store)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.config import Settings
from distillguard.passport import StorePassportRegistry


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


def test_issue_list_revoke_inspect_through_the_store(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "init"]) == 0
    code, issued = run_json(
        capsys,
        "passport",
        "issue",
        "--account",
        "acct_1",
        "--org",
        "org_1",
        "--new-agent-key",
        "agent.pem",
        "--out",
        "agent.passport",
    )
    assert code == 0 and issued["ok"]
    pid = issued["passport"]["jti"]
    code, listed = run_json(capsys, "passport", "list")
    assert [p["passport_id"] for p in listed["passports"]] == [pid]
    assert listed["passports"][0]["status"] == "active"
    code, revoked = run_json(capsys, "passport", "revoke", pid, "--reason", "campaign C-1")
    assert code == 0 and revoked["known"] and revoked["reason"] == "campaign C-1"
    code, inspected = run_json(capsys, "passport", "inspect", "agent.passport")
    assert code == 0 and inspected["status"] == "revoked"
    # it is the store that holds them, where other replicas read them
    registry = StorePassportRegistry.open(env)
    try:
        assert registry.is_revoked(pid)
        assert not Settings().passport_registry_path.exists()  # the file registry is unused
    finally:
        registry.close()
