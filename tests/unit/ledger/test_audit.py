"""`audit_ledger` on a clean ledger, after erasures, and against each kind of tampering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from distillguard.keyring import SigningKey
from distillguard.ledger import AuditReport, Ledger, audit_ledger, commit_exchange, sign_checkpoint
from distillguard.ledger._compact_range import CompactRange
from distillguard.store import Store, open_store

from .conftest import add_records, signing_key


def _setup(store: Store) -> tuple[Ledger, SigningKey]:
    """24 records; checkpoints at sizes 10 and 24; erasures through it are signed with the key."""
    ledger = Ledger.attach(store)
    key = signing_key()
    ledger.signing_key = key
    add_records(store, 0, 10)
    ledger.publish_checkpoint(key)
    add_records(store, 10, 14)
    ledger.publish_checkpoint(key)
    return ledger, key


def _audit(ledger: Ledger, key: SigningKey, **kw: object) -> AuditReport:
    keys: list[Ed25519PublicKey] = [key.public_key()]
    return audit_ledger(ledger, public_keys=keys, **kw)  # type: ignore[arg-type]


def _sql(store: Store, sql: str, params: tuple[object, ...] = ()) -> None:
    with store.transaction() as cur:
        cur.execute(store.q(sql), params)


def test_clean_ledger_passes(store: Store) -> None:
    ledger, key = _setup(store)
    report = _audit(ledger, key)
    assert report.ok, report.findings
    assert (report.tree_size, report.leaves_checked, report.checkpoints_checked) == (24, 24, 2)
    assert report.erased == []


def test_changed_byte_in_one_record(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(
        store, "UPDATE exchanges SET response = ? WHERE exchange_id = ?", ('"Step 2"', "ex-000013")
    )
    report = _audit(ledger, key)
    assert not report.ok
    assert report.first_bad_index == 13
    assert report.findings[0].kind == "record_changed"
    assert report.findings[0].exchange_id == "ex-000013"
    # The checkpoint signed after the change no longer matches; the earlier one still does.
    assert report.first_bad_checkpoint == "checkpoint #2"
    assert "checkpoint #1" not in {f.checkpoint for f in report.findings}


def test_metadata_change_is_detected(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(store, "UPDATE exchanges SET prompt_tokens = prompt_tokens + 1 WHERE seq = 3")
    report = _audit(ledger, key)
    assert report.first_bad_index == 2 and report.findings[0].kind == "record_changed"


def test_deleted_record(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(store, "DELETE FROM exchanges WHERE exchange_id = ?", ("ex-000007",))
    report = _audit(ledger, key)
    assert report.first_bad_index == 7
    assert report.findings[0].kind == "record_missing"


def test_reordered_records(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(store, "UPDATE ledger_leaves SET exchange_id = 'tmp' WHERE leaf_index = 4")
    _sql(store, "UPDATE ledger_leaves SET exchange_id = 'ex-000004' WHERE leaf_index = 16")
    _sql(store, "UPDATE ledger_leaves SET exchange_id = 'ex-000016' WHERE leaf_index = 4")
    report = _audit(ledger, key)
    assert report.first_bad_index == 4
    assert [f.leaf_index for f in report.findings if f.kind == "record_changed"] == [4, 16]


def test_truncated_log(store: Store) -> None:
    ledger, key = _setup(store)
    # A careful attacker drops the last 6 records and rewinds the tree consistently.
    _sql(store, "DELETE FROM exchanges WHERE seq > 18")
    _sql(store, "DELETE FROM ledger_leaves WHERE leaf_index >= 18")
    _sql(store, "DELETE FROM ledger_nodes WHERE node_id >= 36")
    _sql(store, "UPDATE ledger_state SET size = 18, root = ? WHERE id = 1", (ledger.root_hash(18),))
    report = _audit(Ledger.open(store), key)
    assert not report.ok
    assert [f.kind for f in report.findings] == ["checkpoint_beyond_tree"]
    assert report.first_bad_checkpoint == "checkpoint #2"


def test_forged_checkpoint(store: Store) -> None:
    ledger, key = _setup(store)
    forger = signing_key()
    forged = sign_checkpoint(
        origin=ledger.origin, size=24, root_hash=bytes(32), key=forger, timestamp=None
    )
    _sql(
        store,
        "INSERT INTO ledger_checkpoints (checkpoint_no, size, root, created_at, kid, note) "
        "VALUES (3, 24, ?, 0, ?, ?)",
        (bytes(32), key.kid, forged.note),
    )
    report = _audit(ledger, key)
    assert [f.kind for f in report.findings] == ["checkpoint_signature"]
    assert report.first_bad_checkpoint == "checkpoint #3"


def test_rewritten_history_is_caught_by_signed_checkpoints(store: Store) -> None:
    _, key = _setup(store)
    # Change a record, then rebuild leaves, nodes and state so that they agree with it.
    _sql(store, "UPDATE exchanges SET model = 'other' WHERE exchange_id = 'ex-000005'")
    tree = CompactRange()
    for batch in store.iter_exchanges():
        for s in batch:
            h = commit_exchange(s.exchange, s.salt).leaf_hash
            index = tree.size
            _sql(store, "UPDATE ledger_leaves SET leaf_hash = ? WHERE leaf_index = ?", (h, index))
            for nid, node in tree.append([h], include_leaves=False):
                _sql(store, "UPDATE ledger_nodes SET hash = ? WHERE node_id = ?", (node, nid))
    _sql(store, "UPDATE ledger_state SET root = ? WHERE id = 1", (tree.root(),))
    report = _audit(Ledger.open(store), key)
    kinds = {f.kind for f in report.findings}
    assert "record_changed" not in kinds  # the leaves were rewritten to match...
    assert kinds == {"checkpoint_root"}  # ...but the signed roots were not
    assert report.first_bad_checkpoint == "checkpoint #1"  # record 5 is in the tree of size 10
    assert [f.checkpoint for f in report.findings] == ["checkpoint #1", "checkpoint #2"]


def test_broken_stored_node_is_named(sqlite_store: Store) -> None:
    ledger, key = _setup(sqlite_store)
    _sql(sqlite_store, "UPDATE ledger_nodes SET hash = ? WHERE node_id = 15", (bytes(32),))
    report = _audit(ledger, key)
    assert [f.kind for f in report.findings] == ["node_mismatch"]
    assert report.first_bad_index == 0  # node 15 = level 4, index 0: leaves 0..15


def test_rollback_to_an_older_copy(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(store)
    key = signing_key()
    add_records(store, 0, 10)
    ledger.publish_checkpoint(key)
    store.close()
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in tmp_path.glob("store.sqlite*"):
        shutil.copy(f, backup / f.name)
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(store)
    add_records(store, 10, 10)
    witnessed = ledger.publish_checkpoint(key)  # handed to a third party
    store.close()
    for f in backup.iterdir():
        shutil.copy(f, tmp_path / f.name)
    store = open_store(f"sqlite:///{path}")
    try:
        rolled = Ledger.open(store)
        assert rolled.size == 10
        assert _audit(rolled, key).ok  # consistent in itself...
        report = _audit(rolled, key, external_checkpoints=[("witness.txt", witnessed.note)])
        assert [f.kind for f in report.findings] == ["checkpoint_beyond_tree"]
        assert report.first_bad_checkpoint == "witness.txt"
    finally:
        store.close()


def test_inserted_record_without_leaf(sqlite_store: Store) -> None:
    ledger, key = _setup(sqlite_store)
    sqlite_store.insert_hooks.unregister(Ledger.HOOK)
    add_records(sqlite_store, 100, 1)
    report = _audit(ledger, key)
    assert [f.kind for f in report.findings] == ["record_not_in_ledger"]
    assert report.findings[0].exchange_id == "ex-000100"


def test_erased_records_are_reported_as_erased(store: Store) -> None:
    ledger, key = _setup(store)
    with store.transaction() as cur:
        ledger.record_erasure(
            cur, exchange_id="ex-000003", scope="record", reason="gdpr", actor="dpo@x"
        )
        cur.execute(store.q("DELETE FROM exchanges WHERE exchange_id = ?"), ("ex-000003",))
        ledger.record_erasure(
            cur, exchange_id="ex-000011", scope="content", reason="retention", actor="policy"
        )
        cur.execute(
            store.q(
                "UPDATE exchanges SET messages = '[]', response = NULL, reasoning = NULL "
                "WHERE exchange_id = ?"
            ),
            ("ex-000011",),
        )
    # The erasures are tombstone leaves 24 and 25; until a signed checkpoint covers them the
    # audit does not take them as evidence.
    unsigned = _audit(ledger, key)
    assert [(f.kind, f.leaf_index) for f in unsigned.findings] == [
        ("erasure_unsigned", 3),
        ("erasure_unsigned", 11),
    ]
    assert ledger.size == 26
    ledger.publish_checkpoint(key)
    report = _audit(ledger, key)
    assert report.ok, report.findings
    assert [(e.leaf_index, e.scope, e.actor) for e in report.erased] == [
        (3, "record", "dpo@x"),
        (11, "content", "policy"),
    ]
    # Metadata of a content-erased record is still checked.
    _sql(store, "UPDATE exchanges SET ip = '198.51.100.1' WHERE exchange_id = 'ex-000011'")
    assert _audit(ledger, key).first_bad_index == 11


@pytest.mark.parametrize("batch_size", [1, 5, 7, 10, 24, 10_000])
def test_batch_size_does_not_change_the_findings(sqlite_store: Store, batch_size: int) -> None:
    # Checkpoints at 10 and 24 fall inside, at the start and at the end of batches.
    ledger, key = _setup(sqlite_store)
    _sql(sqlite_store, "UPDATE exchanges SET status = 500 WHERE exchange_id = 'ex-000003'")
    with sqlite_store.transaction() as cur:
        ledger.record_erasure(cur, exchange_id="ex-000012", scope="record", reason="r", actor="a")
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-000012'")
    ledger.publish_checkpoint(key)  # covers the erasure's tombstone (leaf 24)
    _sql(sqlite_store, "DELETE FROM exchanges WHERE exchange_id = 'ex-000020'")
    report = _audit(ledger, key, batch_size=batch_size)
    assert [(f.kind, f.leaf_index, f.checkpoint) for f in report.findings] == [
        ("record_changed", 3, None),
        ("record_missing", 20, None),
        ("checkpoint_root", None, "checkpoint #1"),
        ("checkpoint_root", None, "checkpoint #2"),
        ("checkpoint_root", None, "checkpoint #3"),
        ("state_mismatch", None, None),
    ]
    assert [e.leaf_index for e in report.erased] == [12]
    assert report.leaves_checked == 25
