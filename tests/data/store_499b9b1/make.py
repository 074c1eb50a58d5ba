# mypy: ignore-errors
# Runs with the code of commit 499b9b1 (see below), not with this tree.
"""Make the "previous release" store fixture: run with the code of commit 499b9b1 (the release
before schema migrations), so that the store is exactly what that release wrote.

    git worktree add /tmp/rel 499b9b1
    PYTHONPATH=/tmp/rel/src python tests/data/store_499b9b1/make.py tests/data/store_499b9b1

Writes ``store.sql`` (the SQLite store as SQL text, ``iterdump``), ``ledger_keys.json`` (the
ledger's public keys, to audit its checkpoints and tombstones) and ``expected.json`` (what the
store holds, read back with the same code). The keyring itself is thrown away.
"""

# ruff: noqa: I001
# (this script runs with the 499b9b1 release: it imports modules that no longer exist here, which
# ruff's import sorting would classify as third-party or first-party depending on its cache)
from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distillguard.privacy.retention import erase_account
from distillguard.store.ingest import ingest_log

from distillguard.console.data import ConsoleQueries
from distillguard.fingerprint.canaries import CanaryFact, CanaryRegistry
from distillguard.gateway.policy import ActionRecord, ensure_action_tables, insert_action
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger
from distillguard.monitor.feedback import record_label
from distillguard.passport.registry import StorePassportRegistry
from distillguard.privacy.holds import LegalHolds
from distillguard.records.model import Message
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="dg-499b9b1-"))
    accounts = [
        make_account(
            f"acct-{i:02d}",
            created_at=T0 - timedelta(days=30 - i),
            payment_fingerprint="card-shared" if i < 3 else f"card-{i}",
            tier="free" if i % 2 else "pro",
        )
        for i in range(8)
    ]
    exchanges = []
    for i in range(8):
        for j in range(5):
            ip = f"2001:db8:{i}::{j + 1}" if i == 7 else f"198.51.{100 + i}.{j + 1}"
            exchanges.append(
                make_exchange(
                    f"ex-{i:02d}-{j}",
                    account_id=f"acct-{i:02d}",
                    ts=T0 + timedelta(minutes=10 * i + j),
                    ip=ip,
                    asn=64500 + i % 3,
                    messages=(
                        Message("system", "You are helpful."),
                        Message("user", f"Explain step by step how to do task {i}.{j}"),
                    ),
                    response=f"Step 1 ... answer {i}.{j}",
                    completion_tokens=10 + j,
                )
            )
    log = write_log(work / "log", accounts, exchanges)
    ring = Keyring.create(work / "keyring.json")
    key = ring.signing_key(KeyPurpose.LEDGER)
    db = work / "store.sqlite"
    store = open_store(f"sqlite:///{db}")
    ledger = Ledger.attach(store)
    ledger.signing_key = key
    result = ingest_log(store, log)
    assert result.reconciles and result.exchanges.inserted == 40
    ledger.publish_checkpoint(key)
    # an erasure of an account's content (a signed tombstone leaf), a hold, another checkpoint
    erase_account(
        store,
        account_id="acct-05",
        reason="gdpr art. 17",
        actor="dpo@example.org",
        scope="content",
        ledger=ledger,
        signing_key=key,
        now=T0 + timedelta(days=2),
    )
    LegalHolds(store).place(
        scope="account",
        target="acct-01",
        reason="litigation",
        actor="legal@example.org",
        now=T0 + timedelta(days=3),
    )
    ledger.publish_checkpoint(key)
    # the other components' tables
    ensure_action_tables(store)
    with store.transaction() as cur:
        insert_action(
            store,
            cur,
            ActionRecord(
                action_id="act-1",
                ts=T0 + timedelta(hours=2),
                account_id="acct-00",
                exchange_id="ex-00-1",
                action="throttle",
                reason="campaign risk 0.91",
                source="online",
                risk=0.91,
                cluster_id="cl-1",
            ),
        )
        cur.execute(
            store.q(
                "INSERT INTO gateway_overrides (account_id, action, reason, actor, set_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (
                "acct-02",
                "block",
                "confirmed campaign",
                "analyst@example.org",
                int((T0 + timedelta(hours=3)).timestamp() * 1e6),
                None,
            ),
        )
    console = ConsoleQueries(store)
    console.ensure_tables()
    console.record_audit(
        analyst="analyst@example.org",
        action="block",
        target="acct-02",
        reason="confirmed campaign",
        outcome="ok",
    )
    passports = StorePassportRegistry(store)
    passports._run(
        "INSERT INTO passports VALUES (?,?,?,?,?,?,?,?,?)",
        (
            "pp-1",
            "acct-03",
            "org-1",
            "agent-kid-1",
            json.dumps(
                {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
            ),
            "issuer-kid-1",
            1_793_000_000,
            1_800_000_000,
            json.dumps({"scope": ["chat"]}),
        ),
        fetch=False,
    )
    passports.revoke("pp-1", reason="key compromised", now=1_794_000_000)
    CanaryRegistry(store).record(
        CanaryFact(
            canary_id="can-1",
            entity="Veltrane",
            value="42817",
            sentence="The Veltrane constant is 42817.",
            question="What is the Veltrane constant?",
        ),
        account_id="acct-04",
        kid="wm-1",
        index=0,
        at=T0 + timedelta(hours=5),
    )
    record_label(
        store,
        "acct-00",
        "campaign",
        actor="analyst@example.org",
        note="shared card",
        at=T0 + timedelta(days=1),
    )
    head = ledger.head()
    with store.transaction() as cur:
        cur.execute("SELECT count(*) FROM ledger_checkpoints")
        checkpoints = int(cur.fetchone()[0])
        cur.execute("SELECT count(*) FROM console_audit")
        audited = int(cur.fetchone()[0])
    expected = {
        "accounts": store.count("accounts"),
        "exchanges": store.count("exchanges"),
        "ledger_size": head.size,
        "ledger_root_hex": head.root_hash.hex(),
        "checkpoints": checkpoints,
        "erased_account": "acct-05",
        "held_account": "acct-01",
        "console_audit": audited,
    }
    store.close()
    con = sqlite3.connect(db)
    (out / "store.sql").write_text("\n".join(con.iterdump()) + "\n", encoding="utf-8")
    con.close()
    (out / "ledger_keys.json").write_text(json.dumps(ring.public_jwks(), indent=2) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
