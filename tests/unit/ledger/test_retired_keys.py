"""Retired ledger keys verify only what they signed before their retirement (issue 24, gap 2).

Through the keyring (the audit, ``ledger verify-*``) and offline through the JWK Set of
``keys export-public`` (:func:`load_public_keys`, ``verify-bundle``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from distillguard.errors import SignatureError
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import (
    Ledger,
    audit_ledger,
    load_public_keys,
    verify_bundle,
    verify_checkpoint,
)
from distillguard.store import Store

from .conftest import add_records


def test_checkpoint_signed_by_a_retired_key_after_retirement_is_refused(
    sqlite_store: Store, tmp_path: Path
) -> None:
    ring = Keyring.create(tmp_path / "keyring.json")
    leaked = ring.signing_key(KeyPurpose.LEDGER)  # the key an attacker copied
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 8)
    before = ledger.publish_checkpoint(leaked)  # legitimately signed while active
    ring.rotate(KeyPurpose.LEDGER)
    retired_at = next(k for k in ring.describe() if k.kid == leaked.kid).retired_at
    assert retired_at is not None
    add_records(sqlite_store, 8, 4)
    forged = ledger.publish_checkpoint(leaked, timestamp=retired_at + timedelta(seconds=1))
    keys = ring.verify_keys(KeyPurpose.LEDGER)
    assert verify_checkpoint(before.note, public_keys=keys).kid == leaked.kid
    with pytest.raises(SignatureError, match="retired"):
        verify_checkpoint(forged.note, public_keys=keys)
    # a bare public key has no time bound (what the code did before for every key)
    assert verify_checkpoint(forged.note, public_keys=[leaked.public_key()]).size == 12
    report = audit_ledger(ledger, public_keys=keys)
    assert [(f.kind, f.checkpoint) for f in report.findings] == [
        ("checkpoint_signature", "checkpoint #2")
    ]
    # offline: the JWK Set of `keys export-public` carries retired_at
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(ring.public_jwks()))
    offline = load_public_keys(jwks)
    assert {k.kid: k.retired_at for k in offline}[leaked.kid] == retired_at
    assert verify_checkpoint(before.note, public_keys=offline).kid == leaked.kid
    with pytest.raises(SignatureError, match="retired"):
        verify_checkpoint(forged.note, public_keys=offline)


def test_tombstone_signed_by_a_retired_key_after_retirement_is_refused(
    sqlite_store: Store, tmp_path: Path
) -> None:
    ring = Keyring.create(tmp_path / "keyring.json")
    leaked = ring.signing_key(KeyPurpose.LEDGER)
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 6)
    ring.rotate(KeyPurpose.LEDGER)
    active = ring.signing_key(KeyPurpose.LEDGER)
    ledger.publish_checkpoint(active)
    retired_at = next(k for k in ring.describe() if k.kid == leaked.kid).retired_at
    assert retired_at is not None
    # an erasure timed after the retirement, signed with the leaked retired key
    with sqlite_store.transaction() as cur:
        ledger.record_erasure(
            cur,
            exchange_id="ex-000002",
            scope="record",
            reason="x",
            actor="attacker",
            erased_at=retired_at + timedelta(seconds=5),
            key=leaked,
        )
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-000002'")
    ledger.publish_checkpoint(active)
    keys = ring.verify_keys(KeyPurpose.LEDGER)
    report = audit_ledger(ledger, public_keys=keys)
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("tombstone_signature", 2)]
    assert "retired" in report.findings[0].message
    bundle = ledger.prove_erasure("ex-000002").to_dict()
    with pytest.raises(SignatureError, match="retired"):
        verify_bundle(bundle, public_keys=keys)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(ring.public_jwks()))
    with pytest.raises(SignatureError, match="retired"):
        verify_bundle(bundle, public_keys=load_public_keys(jwks))


def test_backdated_tombstone_by_a_retired_key_is_caught_by_the_checkpoints(
    sqlite_store: Store, tmp_path: Path
) -> None:
    # erased_at is what the signer claims; a signed checkpoint that did not hold the tombstone
    # yet proves the signature is younger than that checkpoint.
    ring = Keyring.create(tmp_path / "keyring.json")
    leaked = ring.signing_key(KeyPurpose.LEDGER)
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 6)
    ring.rotate(KeyPurpose.LEDGER)
    active = ring.signing_key(KeyPurpose.LEDGER)
    ledger.publish_checkpoint(active)  # after the retirement, without the tombstone
    with sqlite_store.transaction() as cur:
        ledger.record_erasure(
            cur,
            exchange_id="ex-000003",
            scope="record",
            reason="x",
            actor="attacker",
            erased_at=leaked.created_at,  # back-dated before the retirement
            key=leaked,
        )
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-000003'")
    ledger.publish_checkpoint(active)
    report = audit_ledger(ledger, public_keys=ring.verify_keys(KeyPurpose.LEDGER))
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("tombstone_signature", 3)]


def test_erasure_signed_before_a_rotation_still_passes(sqlite_store: Store, tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keyring.json")
    old = ring.signing_key(KeyPurpose.LEDGER)
    ledger = Ledger.attach(sqlite_store)
    ledger.signing_key = old
    add_records(sqlite_store, 0, 6)
    with sqlite_store.transaction() as cur:
        ledger.record_erasure(cur, exchange_id="ex-000001", scope="record", reason="r", actor="a")
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-000001'")
    ledger.publish_checkpoint(old)
    bundle = ledger.prove_erasure("ex-000001").to_dict()
    ring.rotate(KeyPurpose.LEDGER)
    add_records(sqlite_store, 6, 2)
    ledger.publish_checkpoint(ring.signing_key(KeyPurpose.LEDGER))
    keys = ring.verify_keys(KeyPurpose.LEDGER)
    report = audit_ledger(ledger, public_keys=keys)
    assert report.ok, report.findings
    assert [e.leaf_index for e in report.erased] == [1]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(ring.public_jwks()))
    assert verify_bundle(bundle, public_keys=load_public_keys(jwks)).record_erased
