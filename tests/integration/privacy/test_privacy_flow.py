"""Privacy end to end on each store backend: ingest with minimisation, prove, erase, audit,
verify a bundle made before the erasure offline, through the library and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from distillguard.app.ingest import ingest_log
from distillguard.cli.main import main
from distillguard.config import RetentionSettings
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger, audit_ledger
from distillguard.privacy import Minimiser, RetentionPolicy
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log


def _log(tmp_path: Path) -> Path:
    accounts = [
        make_account("acct-0", tier="free"),
        make_account("acct-1", tier="enterprise"),
        make_account("acct-2", tier="free"),
    ]
    exchanges = [
        make_exchange(f"ex-{i}", account_id=f"acct-{i % 3}", offset_s=i) for i in range(30)
    ]
    return write_log(tmp_path / "log", accounts, exchanges)


def test_ingest_with_minimisation(store_url: str, tmp_path: Path) -> None:
    policy = RetentionPolicy.from_settings(
        RetentionSettings.model_validate(
            {"overrides": [{"tiers": ["enterprise"], "minimise": "truncate:8"}]}
        )
    )
    ring = Keyring.create(tmp_path / "keyring.json")
    with open_store(store_url) as store:
        ledger = Ledger.attach(store)
        ledger.signing_key = ring.signing_key(KeyPurpose.LEDGER)  # as `ingest` does
        minimiser = Minimiser.attach(store, ledger=ledger, policy=policy)
        assert minimiser is not None
        result = ingest_log(store, _log(tmp_path), batch_size=7)
        assert result.exchanges.inserted == 30 and minimiser.minimised == 10
        kept = store.get_exchange("ex-0")
        cut = store.get_exchange("ex-1")
        assert kept is not None and cut is not None
        assert len(kept.exchange.messages[1].content) > 8
        assert [len(m.content) <= 8 for m in cut.exchange.messages] == [True, True]
        key = ring.signing_key(KeyPurpose.LEDGER)
        ledger.publish_checkpoint(key)
        report = audit_ledger(ledger, public_keys=[key.public_key()])
        assert report.ok, [f.message for f in report.findings]
        assert sorted(e.exchange_id for e in report.erased) == sorted(
            f"ex-{i}" for i in range(1, 30, 3)
        )


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_cli_erasure_flow(
    store_url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = cli_env
    store = ["--store", store_url]
    assert main(["keys", "init"]) == 0
    assert main(["keys", "export-public", "--out", str(tmp / "jwks.json")]) == 0
    code, _ = _run(capsys, "ingest", str(_log(tmp)), *store)
    assert code == 0
    # evidence handed out before the erasure
    assert main(["ledger", "prove", "ex-3", *store, "--out", str(tmp / "ex-3.json")]) == 0
    assert main(["ledger", "prove", "ex-4", *store, "--out", str(tmp / "ex-4.json")]) == 0
    code, receipt = _run(
        capsys, "retention", "erase", "--account", "acct-0", "--reason", "GDPR art. 17",
        "--actor", "dpo", *store,
    )  # fmt: skip
    assert code == 0 and receipt["counts"]["exchanges"] == 10
    assert "ex-3" in {x["exchange_id"] for x in receipt["exchanges"]}
    # the audit passes and names the erased leaves
    code, audit = _run(capsys, "ledger", "audit", *store)
    assert code == 0 and audit["ok"] is True
    assert sorted(e["exchange_id"] for e in audit["erased"]) == sorted(
        f"ex-{i}" for i in range(0, 30, 3)
    )
    assert {e["reason"] for e in audit["erased"]} == {"GDPR art. 17"}
    # bundles made before the erasure still verify offline, erased record included
    for name in ("ex-3.json", "ex-4.json"):
        code, result = _run(
            capsys, "ledger", "verify-inclusion", str(tmp / name), "--public-key",
            str(tmp / "jwks.json"),
        )  # fmt: skip
        assert code == 0, result
    # a fresh proof of a remaining record verifies against the checkpoint signed after erasure
    assert main(["ledger", "prove", "ex-4", *store, "--out", str(tmp / "ex-4b.json")]) == 0
    bundle = json.loads((tmp / "ex-4b.json").read_text())
    assert bundle["checkpoint"] == receipt["ledger"]["checkpoint"]
    assert receipt["ledger"]["checkpoint_signed_after_erasure"] is True
    code, _ = _run(
        capsys, "ledger", "verify-inclusion", str(tmp / "ex-4b.json"), "--public-key",
        str(tmp / "jwks.json"),
    )  # fmt: skip
    assert code == 0
    # the erased record cannot be proved any more: its proof shows the erasure instead
    code, gone = _run(capsys, "ledger", "prove", "ex-3", *store)
    assert code == 0 and gone["format"] == "distillguard/erasure-bundle/v1"
    (tmp / "ex-3-gone.json").write_text(json.dumps(gone))
    code, result = _run(
        capsys, "ledger", "verify-inclusion", str(tmp / "ex-3-gone.json"), "--public-key",
        str(tmp / "jwks.json"),
    )  # fmt: skip
    assert code == 0 and result["record_erased"]
    assert [(t["scope"], t["reason"], t["actor"]) for t in result["erasures"]] == [
        ("record", "GDPR art. 17", "dpo")
    ]
