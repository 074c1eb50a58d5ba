"""Tests of ``distillguard retention``, driven through :func:`distillguard.cli.main.main`."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger, verify_checkpoint
from distillguard.store import open_store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

NOW = "2026-06-01T00:00:00Z"
T_NOW = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = """
[retention]
content_days = 30
metadata_days = 365

[[retention.overrides]]
accounts = ["acct-b"]
content_days = 5
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a config, a keyring and a store of two accounts of aged exchanges."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    (tmp_path / "distillguard.toml").write_text(CONFIG)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / ".distillguard"))
    Keyring.create(tmp_path / ".distillguard" / "keyring.json")
    store = open_store(f"sqlite:///{tmp_path / '.distillguard' / 'store.sqlite'}")
    Ledger.attach(store)
    exchanges = [
        make_exchange(f"{a}-{d}", account_id=a, ts=T_NOW - timedelta(days=d, hours=1))
        for a in ("acct-a", "acct-b")
        for d in (1, 10, 100, 1000)
    ]
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account("acct-a"), make_account("acct-b")], run_id="t")
        store.add_exchanges(cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)))
    store.close()
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_dry_run_then_apply(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, dry = run_json(capsys, "retention", "apply", "--dry-run", "--now", NOW)
    assert code == 0 and dry["applied"] is False
    assert sorted(dry["plan"]["records"]) == ["acct-a-1000", "acct-b-1000"]
    assert sorted(dry["plan"]["content"]) == ["acct-a-100", "acct-b-10", "acct-b-100"]
    code, done = run_json(
        capsys, "retention", "apply", "--now", NOW, "--actor", "cron", "-o", "plan.json"
    )
    assert code == 0 and done["applied"] is True
    assert done["plan"]["records"] == dry["plan"]["records"]
    assert done["plan"]["content"] == dry["plan"]["content"]
    assert json.loads((env / "plan.json").read_text())["plan"] == done["plan"]
    assert done["receipt"]["counts"]["records"] == 2
    code, audit = run_json(capsys, "ledger", "audit")
    assert code == 0 and audit["ok"] is True
    assert {(e["exchange_id"], e["scope"], e["actor"]) for e in audit["erased"]} == {
        ("acct-a-1000", "record", "cron"),
        ("acct-b-1000", "record", "cron"),
        ("acct-a-100", "content", "cron"),
        ("acct-b-10", "content", "cron"),
        ("acct-b-100", "content", "cron"),
    }


def test_holds_and_erasure(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, placed = run_json(
        capsys, "retention", "hold", "add", "--account", "acct-a", "--reason", "campaign c-1",
        "--actor", "analyst",
    )  # fmt: skip
    assert code == 0 and placed[0]["target"] == "acct-a" and placed[0]["active"]
    hold_id = placed[0]["hold_id"]
    code, err = run_json(
        capsys, "retention", "erase", "--account", "acct-a", "--reason", "GDPR", "--actor", "dpo"
    )
    assert code == 1 and err["code"] == "DG600" and hold_id in err["message"]
    code, listed = run_json(capsys, "retention", "hold", "list")
    assert [h["hold_id"] for h in listed] == [hold_id]
    code, released = run_json(capsys, "retention", "hold", "release", hold_id, "--actor", "counsel")
    assert code == 0 and released[0]["released_by"] == "counsel"
    code, receipt = run_json(
        capsys, "retention", "erase", "--account", "acct-a", "--reason", "GDPR #9", "--actor",
        "dpo", "--receipt", "r.json",
    )  # fmt: skip
    assert code == 0 and receipt["counts"]["exchanges"] == 4
    path = env / "r.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["receipt_id"] == receipt["receipt_id"]
    assert sorted(x["leaf_index"] for x in saved["exchanges"]) == [0, 1, 2, 3]
    ring = Keyring.load(env / ".distillguard" / "keyring.json")
    keys = [k.public_key for k in ring.verify_keys(KeyPurpose.LEDGER)]
    # 8 records and a tombstone leaf per erased exchange, signed right after the erasure
    assert verify_checkpoint(saved["ledger"]["checkpoint"], public_keys=keys).size == 12
    code, audit = run_json(capsys, "ledger", "audit")
    assert code == 0 and audit["ok"], audit["findings"]
    assert sorted(e["leaf_index"] for e in audit["erased"]) == [0, 1, 2, 3]
    code, listed = run_json(capsys, "retention", "receipts")
    assert [r["receipt_id"] for r in listed] == [receipt["receipt_id"]]
    code, _ = run_json(capsys, "retention", "hold", "list", "--all")
    assert code == 0
    # the text form labels the root's encoding, as ingest and ledger head do (issue 25)
    capsys.readouterr()
    args = ["retention", "erase", "--account", "acct-b", "--reason", "GDPR #10", "--actor", "dpo"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    _, head = run_json(capsys, "ledger", "head")
    assert f"root (hex) {head['root_hash_hex']}" in out, out


def test_bad_input(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_json(capsys, "retention", "apply", "--now", "yesterday")
    assert code == 4 and "--now" in err["message"]
    code, err = run_json(
        capsys, "retention", "erase", "--account", "acct-a", "--reason", "r", "--actor", "a",
        "--scope", "everything",
    )  # fmt: skip
    assert code == 4
    code, err = run_json(capsys, "retention", "hold", "add", "--reason", "r", "--actor", "a")
    assert code == 4
    code, err = run_json(capsys, "retention", "hold", "release", "hold-x", "--actor", "a")
    assert code == 4 and "no legal hold" in err["message"]


def test_show_in_text(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retention", "show"]) == 0
    out = capsys.readouterr().out
    assert "30 days" in out and "365 days" in out and "acct-b" in out
    code, data = run_json(capsys, "retention", "show")
    assert code == 0 and data["overrides"][0]["content_days"] == 5
