"""Tests of ``distillguard ledger``, driven through :func:`distillguard.cli.main.main`."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger
from distillguard.records import Account, Exchange, Message
from distillguard.store import open_store
from distillguard.store.base import new_salts

T0 = datetime(2026, 2, 23, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated environment with a keyring and a store of 30 exchanges in tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "dg"))
    assert main(["keys", "init"]) == 0
    add(tmp_path, 0, 30)
    return tmp_path


def add(home: Path, start: int, count: int) -> None:
    with open_store(f"sqlite:///{home / 'dg' / 'store.sqlite'}") as store:
        Ledger.attach(store)
        batch = [
            Exchange(
                exchange_id=f"ex-{i}",
                ts=T0 + timedelta(seconds=i),
                account_id="a",
                ip="192.0.2.1",
                model="m",
                messages=(Message("user", f"question {i}"),),
                prompt_tokens=3,
                completion_tokens=5,
                status=200,
                response=f"answer {i}",
            )
            for i in range(start, start + count)
        ]
        with store.transaction() as cur:
            store.add_accounts(cur, [Account(account_id="a", created_at=T0)], run_id="t")
            store.add_exchanges(cur, list(zip(batch, new_salts(count), strict=True)), run_id="t")


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_head_checkpoint_prove_verify(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, head = run_json(capsys, "ledger", "head")
    assert code == 0 and head["size"] == 30 and head["latest_checkpoint"] is None

    code, cp = run_json(capsys, "ledger", "checkpoint", "--out", "old.txt")
    assert code == 0 and cp["size"] == 30
    assert (home / "old.txt").read_text().startswith("distillguard.local/ledger\n30\n")

    add(home, 30, 11)
    assert main(["ledger", "prove", "ex-35", "--out", "b.json"]) == 0  # signs a covering one
    bundle = json.loads((home / "b.json").read_text())
    assert bundle["leaf_index"] == 35 and bundle["record"]["exchange_id"] == "ex-35"
    assert main(["keys", "export-public", "--out", "jwks.json"]) == 0

    code, result = run_json(capsys, "ledger", "verify-inclusion", "b.json", "-k", "jwks.json")
    assert code == 0 and result["ok"] and result["tree_size"] == 41

    code, cp_new = run_json(capsys, "ledger", "checkpoint", "--out", "new.txt")
    assert code == 0 and cp_new["size"] == 41
    code, cons = run_json(
        capsys, "ledger", "verify-consistency", "old.txt", "new.txt", "-k", "jwks.json"
    )
    assert code == 0 and (cons["old_size"], cons["new_size"]) == (30, 41)
    # The same proof given from a file, checked without the store.
    (home / "proof.json").write_text(json.dumps({"proof": cons["proof"]}))
    code, _ = run_json(
        capsys,
        "ledger",
        "verify-consistency",
        "old.txt",
        "new.txt",
        "--proof",
        "proof.json",
        "-k",
        "jwks.json",
        "--store",
        "sqlite:///nonexistent/none.sqlite",
    )
    assert code == 0
    # Swapped: NEW does not extend OLD.
    code, err = run_json(capsys, "ledger", "verify-consistency", "new.txt", "old.txt")
    assert code == 5 and err["code"] == "DG310"

    code, report = run_json(capsys, "ledger", "audit", "--checkpoint", "new.txt")
    assert code == 0 and report["ok"] and report["checkpoints_checked"] == 4


def test_tampered_bundle_and_record_fail(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "prove", "ex-3", "--out", "b.json"]) == 0
    bundle = json.loads((home / "b.json").read_text())
    bundle["record"]["response"] = "answer 4"
    (home / "bad.json").write_text(json.dumps(bundle))
    code, err = run_json(capsys, "ledger", "verify-inclusion", "bad.json")
    assert code == 5 and err["code"] == "DG310"

    with open_store(f"sqlite:///{home / 'dg' / 'store.sqlite'}") as store, store.transaction() as c:
        c.execute("UPDATE exchanges SET status = 500 WHERE exchange_id = 'ex-7'")
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 1 and not report["ok"]
    assert report["first_bad_index"] == 7
    capsys.readouterr()
    assert main(["ledger", "audit"]) == 1
    assert "first bad leaf index 7" in capsys.readouterr().out


def test_checkpoint_schedule(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["ledger", "checkpoint", "--every", "0.1", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n30\n") == 3 and out.count("\u2014 distillguard.local/ledger ") == 3
    code, head = run_json(capsys, "ledger", "head")
    assert code == 0 and head["latest_checkpoint"]["checkpoint_no"] == 3


def test_bad_inputs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "junk.json").write_text("{not json")
    code, err = run_json(capsys, "ledger", "verify-inclusion", "junk.json")
    assert code == 4 and err["code"] == "DG200"
    code, err = run_json(capsys, "ledger", "verify-inclusion", "missing.json")
    assert code == 4
    (home / "cp.txt").write_text("not a checkpoint")
    code, err = run_json(capsys, "ledger", "verify-consistency", "cp.txt", "cp.txt")
    assert code == 5 and "malformed" in err["message"]
    code, err = run_json(capsys, "ledger", "prove", "ex-unknown")
    assert code == 4
    (home / "keys.txt").write_text("not+a+key\n")
    code, err = run_json(capsys, "ledger", "audit", "-k", "keys.txt")
    assert code == 4


def test_faked_erasure_fails_audit(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "checkpoint"]) == 0
    store_path = home / "dg" / "store.sqlite"
    with open_store(f"sqlite:///{store_path}") as store, store.transaction() as cur:
        # the insider's attack of issue 24: delete a record, add an erasure row for it
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-7'")
        cur.execute(
            "INSERT INTO ledger_erasures (leaf_index, exchange_id, scope, erased_at, reason, "
            "actor) VALUES (7, 'ex-7', 'record', 0, 'gdpr', 'dpo')"
        )
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 1 and not report["ok"]
    assert report["first_bad_index"] == 7
    assert [(f["kind"], f["exchange_id"]) for f in report["findings"]] == [
        ("erasure_unlogged", "ex-7")
    ]
    capsys.readouterr()
    assert main(["ledger", "audit"]) == 1
    assert "leaf 7" in capsys.readouterr().out


def test_real_erasure_is_signed_proven_and_passes(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = home / "dg" / "store.sqlite"
    key = Keyring.load(home / "dg" / "keyring.json").signing_key(KeyPurpose.LEDGER)
    with open_store(f"sqlite:///{store_path}") as store:
        ledger = Ledger.open(store)
        with store.transaction() as cur:
            ledger.record_erasure(
                cur, exchange_id="ex-7", scope="record", reason="GDPR #1", actor="dpo", key=key
            )
            cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-7'")
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 1 and report["findings"][0]["kind"] == "erasure_unsigned"
    assert main(["ledger", "prove", "ex-7", "--out", "gone.json"]) == 0  # signs a checkpoint
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 0 and [e["leaf_index"] for e in report["erased"]] == [7]
    code, result = run_json(capsys, "ledger", "verify-inclusion", "gone.json")
    assert code == 0 and result["record_erased"]
    assert [(t["scope"], t["reason"]) for t in result["erasures"]] == [("record", "GDPR #1")]
    capsys.readouterr()
    assert main(["ledger", "verify-inclusion", "gone.json"]) == 0
    assert "erased" in capsys.readouterr().out


def test_insider_erasure_without_the_keyring_fails_until_sealed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 24, gap of finding 1: someone with database access but not the keyring deletes an
    # exchange, appends a well-formed tombstone and erasure row, and lets the next scheduled
    # checkpoint sign the tree. The audit names the leaf; proofs refuse; only a reviewed
    # `ledger seal-erasures --yes` (which needs the keyring) makes it pass.
    with open_store(f"sqlite:///{home / 'dg' / 'store.sqlite'}") as store:
        ledger = Ledger.open(store)
        with store.transaction() as cur:
            ledger.record_erasure(
                cur, exchange_id="ex-9", scope="record", reason="cleanup", actor="insider"
            )
            cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-9'")
    assert main(["ledger", "checkpoint"]) == 0  # the scheduled checkpoint signs the tree
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 1 and not report["erased"]
    assert [(f["kind"], f["leaf_index"], f["exchange_id"]) for f in report["findings"]] == [
        ("tombstone_unsigned", 9, "ex-9")
    ]
    assert main(["ledger", "prove", "ex-9", "--out", "gone.json"]) != 0
    code, listed = run_json(capsys, "ledger", "seal-erasures", "--actor", "dpo")
    assert code == 0 and [e["leaf_index"] for e in listed["unsealed"]] == [9]
    assert not listed["sealed"]
    code, done = run_json(capsys, "ledger", "seal-erasures", "--actor", "dpo", "--yes")
    assert code == 0 and [e["signed_by"] is not None for e in done["sealed"]] == [True]
    code, report = run_json(capsys, "ledger", "audit")
    assert code == 0 and [e["leaf_index"] for e in report["erased"]] == [9]


def test_reingest_publishes_no_checkpoint_and_roots_are_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 25: identical data again adds no checkpoint at the same size; ``ingest`` and
    ``ledger head`` give the root in the same (labelled) encodings."""
    from distillguard.testing import make_account, make_exchange, write_log

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "dg"))
    assert main(["keys", "init"]) == 0
    log = write_log(
        tmp_path / "log",
        [make_account("acct-1")],
        [make_exchange(f"ex-{i}", account_id="acct-1") for i in range(5)],
    )
    code, first = run_json(capsys, "ingest", str(log))
    assert code == 0 and first["checkpoint"]["published"] is True
    code, again = run_json(capsys, "ingest", str(log))
    assert code == 0 and again["checkpoint"]["published"] is False
    assert again["checkpoint"]["size"] == first["checkpoint"]["size"] == 5
    code, head = run_json(capsys, "ledger", "head")
    assert head["latest_checkpoint"]["checkpoint_no"] == 1  # one checkpoint, not two
    assert head["root_hash"] == first["checkpoint"]["root_hash"]
    assert head["root_hash_hex"] == first["checkpoint"]["root_hash_hex"]
    assert main(["ingest", str(log)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"root (base64) {head['root_hash']}" in out and "none published" in out
    assert main(["ledger", "head"]) == 0
    out = capsys.readouterr().out
    assert f"{head['root_hash']} (base64)" in out and f"{head['root_hash_hex']} (hex)" in out
