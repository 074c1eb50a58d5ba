"""Erasures as tombstone leaves: a faked erasure fails the audit, a real one passes and proves.

The attacks are those of issue 24, finding 1, done as an insider with write access to the
database but not to the ledger signing key.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from distillguard.errors import InputError, ProofError
from distillguard.keyring import SigningKey
from distillguard.ledger import AuditReport, Ledger, Tombstone, audit_ledger, verify_bundle
from distillguard.ledger._bundle import ERASURE_BUNDLE_FORMAT, InclusionBundle
from distillguard.ledger._hashing import leaf_hash
from distillguard.store import Store

from .conftest import T0, add_records, signing_key

_INSERT_ERASURE = (
    "INSERT INTO ledger_erasures (leaf_index, exchange_id, scope, erased_at, reason, actor) "
    "VALUES (?, ?, ?, 0, 'gdpr', 'dpo')"
)


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


def _audit(ledger: Ledger, key: SigningKey) -> AuditReport:
    keys: list[Ed25519PublicKey] = [key.public_key()]
    return audit_ledger(ledger, public_keys=keys)


def _sql(store: Store, sql: str, params: tuple[object, ...] = ()) -> None:
    with store.transaction() as cur:
        cur.execute(store.q(sql), params)


def _kinds(report: AuditReport) -> list[tuple[str, int | None, str | None]]:
    return [(f.kind, f.leaf_index, f.exchange_id) for f in report.findings]


def _erase(ledger: Ledger, exchange_id: str, scope: str = "record") -> None:
    """A legitimate erasure through the ledger, as retention and erase-account do it."""
    store = ledger.store
    with store.transaction() as cur:
        ledger.record_erasure(
            cur,
            exchange_id=exchange_id,
            scope=scope,  # type: ignore[arg-type]
            reason="GDPR art. 17",
            actor="dpo@example.com",
        )
        if scope == "record":
            cur.execute(store.q("DELETE FROM exchanges WHERE exchange_id = ?"), (exchange_id,))
        else:
            cur.execute(
                store.q(
                    "UPDATE exchanges SET messages = NULL, response = NULL, reasoning = NULL "
                    "WHERE exchange_id = ?"
                ),
                (exchange_id,),
            )


# -- the attacks of finding 1 -------------------------------------------------------------------


def test_deleted_record_with_a_fake_record_erasure_row_fails(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(store, "DELETE FROM exchanges WHERE exchange_id = 'ex-000007'")
    _sql(store, _INSERT_ERASURE, (7, "ex-000007", "record"))
    report = _audit(ledger, key)
    assert not report.ok
    assert _kinds(report) == [("erasure_unlogged", 7, "ex-000007")]
    assert "missing" in report.findings[0].message
    assert report.first_bad_index == 7
    assert report.erased == []


def test_rewritten_messages_with_a_fake_content_erasure_row_fails(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(
        store,
        "UPDATE exchanges SET messages = ? WHERE exchange_id = 'ex-000013'",
        ('[{"role":"user","content":"something the account never asked"}]',),
    )
    _sql(store, _INSERT_ERASURE, (13, "ex-000013", "content"))
    report = _audit(ledger, key)
    assert _kinds(report) == [("erasure_unlogged", 13, "ex-000013")]
    assert "content only" in report.findings[0].message
    assert report.first_bad_index == 13


def test_fake_row_pointing_at_an_existing_leaf_as_its_tombstone_fails(store: Store) -> None:
    ledger, key = _setup(store)
    _sql(store, "DELETE FROM exchanges WHERE exchange_id = 'ex-000004'")
    _sql(
        store,
        "INSERT INTO ledger_erasures (leaf_index, exchange_id, scope, erased_at, reason, actor, "
        "tombstone_leaf) VALUES (4, 'ex-000004', 'record', 0, 'gdpr', 'dpo', 20)",
    )
    report = _audit(ledger, key)
    assert _kinds(report) == [("erasure_unverified", 4, "ex-000004")]


def test_a_tombstone_written_without_the_signing_key_is_not_accepted(store: Store) -> None:
    # The insider runs the erasure code itself (tombstone leaf, erasure row, nodes, state all
    # consistent) without the keyring: the audit says the tombstone is unsigned, at the erased
    # leaf, and keeps saying so after the next scheduled checkpoint signs the tree holding it.
    ledger, key = _setup(store)
    ledger.signing_key = None
    _erase(ledger, "ex-000009")
    report = _audit(ledger, key)
    assert _kinds(report) == [("tombstone_unsigned", 9, "ex-000009")]
    assert "leaf 24" in report.findings[0].message
    ledger.publish_checkpoint(key)  # the checkpoint signer signs whatever tree it finds
    report = _audit(Ledger.open(store), key)
    assert _kinds(report) == [("tombstone_unsigned", 9, "ex-000009")]
    assert not report.erased
    with pytest.raises(ProofError, match="not signed"):
        ledger.prove_erasure("ex-000009")


def test_deleting_the_tombstone_too_is_caught(store: Store) -> None:
    ledger, key = _setup(store)
    _erase(ledger, "ex-000005")
    ledger.publish_checkpoint(key)  # checkpoint #3 signs the tombstone at leaf 24
    assert _audit(ledger, key).ok
    # The insider now removes the tombstone leaf and the erasure row and rewinds the tree.
    root24 = ledger.root_hash(24)
    _sql(store, "DELETE FROM ledger_leaves WHERE leaf_index = 24")
    _sql(store, "DELETE FROM ledger_erasures WHERE leaf_index = 5")
    _sql(store, "UPDATE ledger_state SET size = 24, root = ? WHERE id = 1", (root24,))
    report = _audit(Ledger.open(store), key)
    assert ("record_missing", 5, "ex-000005") in _kinds(report)
    assert any(f.kind == "checkpoint_beyond_tree" for f in report.findings)
    # ...and deleting the signed checkpoint as well leaves the record missing, unexplained.
    _sql(store, "DELETE FROM ledger_checkpoints WHERE checkpoint_no = 3")
    assert _kinds(_audit(Ledger.open(store), key)) == [("record_missing", 5, "ex-000005")]


def test_editing_a_real_erasure_is_caught(store: Store) -> None:
    ledger, key = _setup(store)
    _erase(ledger, "ex-000002")
    ledger.publish_checkpoint(key)
    _sql(store, "UPDATE ledger_erasures SET reason = 'retention' WHERE leaf_index = 2")
    report = _audit(ledger, key)
    kinds = {(f.kind, f.leaf_index) for f in report.findings}
    assert ("tombstone_mismatch", 24) in kinds
    assert ("erasure_unverified", 2) in kinds
    assert report.first_bad_checkpoint == "checkpoint #3"


def test_a_content_tombstone_does_not_excuse_a_deleted_record(store: Store) -> None:
    ledger, key = _setup(store)
    _erase(ledger, "ex-000006", scope="content")
    ledger.publish_checkpoint(key)
    assert _audit(ledger, key).ok
    _sql(store, "DELETE FROM exchanges WHERE exchange_id = 'ex-000006'")
    assert ("record_missing", 6, "ex-000006") in _kinds(_audit(ledger, key))


def test_a_tombstone_of_another_leaf_cannot_be_relabelled(store: Store) -> None:
    # Mark a record's leaf as a tombstone (empty content hash) so that it is not recomputed.
    ledger, key = _setup(store)
    _sql(store, "UPDATE ledger_leaves SET content_hash = ? WHERE leaf_index = 11", (b"",))
    report = _audit(ledger, key)
    assert ("tombstone_mismatch", 11, "ex-000011") in _kinds(report)
    assert report.first_bad_checkpoint == "checkpoint #2"


# -- legitimate erasures ------------------------------------------------------------------------


def test_legitimate_erasures_pass_and_prove(store: Store) -> None:
    ledger, key = _setup(store)
    _erase(ledger, "ex-000003")
    _erase(ledger, "ex-000017", scope="content")
    ledger.publish_checkpoint(key)
    report = _audit(ledger, key)
    assert report.ok, report.findings
    assert [(e.leaf_index, e.scope, e.tombstone_index) for e in report.erased] == [
        (3, "record", 24),
        (17, "content", 25),
    ]
    keys = [key.public_key()]
    # the erased record: an erasure bundle with the tombstone and its inclusion proof
    gone = ledger.prove_erasure("ex-000003").to_dict()
    assert gone["format"] == ERASURE_BUNDLE_FORMAT
    result = verify_bundle(gone, public_keys=keys)
    assert result.record_erased and not result.content_verified
    assert [(t.scope, t.reason, t.actor) for t in result.erasures] == [
        ("record", "GDPR art. 17", "dpo@example.com")
    ]
    with pytest.raises(InputError, match="not an inclusion bundle"):
        InclusionBundle.from_dict(gone)  # what a verifier that knows no tombstones reads
    with pytest.raises(InputError, match="erased"):
        ledger.prove("ex-000003")
    # the content-erased record: metadata proven, the content erasure shown and proven
    meta = ledger.prove("ex-000017").to_dict()
    assert [t["tombstone"]["scope"] for t in meta["tombstones"]] == ["content"]
    result = verify_bundle(meta, public_keys=keys)
    assert not result.content_verified and not result.record_erased
    assert [t.leaf_index for t in result.erasures] == [17]
    # a tombstone altered in the bundle no longer leads to the signed root
    meta["tombstones"][0]["tombstone"]["reason"] = "routine"
    with pytest.raises(ProofError):
        verify_bundle(meta, public_keys=keys)
    # an erasure bundle whose tombstone names another leaf is refused
    gone["tombstones"][0]["tombstone"]["leaf_index"] = 4
    with pytest.raises(ProofError, match="another leaf"):
        verify_bundle(gone, public_keys=keys)


def test_every_other_proof_still_verifies_after_an_erasure(store: Store) -> None:
    ledger, key = _setup(store)
    before = ledger.prove("ex-000008").to_dict()
    _erase(ledger, "ex-000008")
    ledger.publish_checkpoint(key)
    keys = [key.public_key()]
    assert verify_bundle(before, public_keys=keys).exchange_id == "ex-000008"
    for i in range(24):
        if i != 8:
            eid = f"ex-{i:06d}"
            assert verify_bundle(ledger.prove(eid).to_dict(), public_keys=keys).exchange_id == eid


def test_proofs_wait_for_a_checkpoint_covering_the_tombstone(store: Store) -> None:
    ledger, key = _setup(store)
    _erase(ledger, "ex-000001", scope="content")
    with pytest.raises(ProofError, match="tombstone"):
        ledger.prove("ex-000001")
    assert ledger.needed_size("ex-000001") == 25
    ledger.publish_checkpoint(key)
    assert ledger.prove("ex-000001").tombstones


def test_erasing_twice_keeps_the_first_tombstone(store: Store) -> None:
    ledger, _ = _setup(store)
    with store.transaction() as cur:
        first = ledger.record_erasure(
            cur, exchange_id="ex-000002", scope="content", reason="r1", actor="a"
        )
        again = ledger.record_erasure(
            cur, exchange_id="ex-000002", scope="content", reason="r2", actor="b"
        )
    assert first == again and first.tombstone_index == 24 and ledger.size == 25


def test_unsealed_rows_can_be_sealed_after_review(store: Store) -> None:
    # A store upgraded from before tombstones has bare erasure rows: the audit names them until
    # an operator seals them, which puts them in the log; a signed checkpoint then vouches.
    ledger, key = _setup(store)
    _sql(store, "DELETE FROM exchanges WHERE exchange_id = 'ex-000010'")
    _sql(store, _INSERT_ERASURE, (10, "ex-000010", "record"))
    assert [e.leaf_index for e in ledger.unsealed_erasures()] == [10]
    sealed = ledger.seal_erasures(actor="operator", key=key)
    assert [(e.leaf_index, e.tombstone_index) for e in sealed] == [(10, 24)]
    assert sealed[0].actor == "dpo (sealed by operator)"
    assert _kinds(_audit(ledger, key)) == [("erasure_unsigned", 10, "ex-000010")]
    ledger.publish_checkpoint(key)
    assert _audit(ledger, key).ok


def test_tombstone_leaf_data_is_canonical_and_distinct_from_a_record_leaf() -> None:
    t = Tombstone(
        leaf_index=3,
        leaf_hash=bytes(range(32)),
        exchange_id="ex-3",
        scope="record",
        erased_at=T0,
        reason="gdpr ✓",
        actor="dpo",
    )
    assert t.leaf_data.startswith(b'{"actor":"dpo","erased_at":"2026-02-23T14:05:09.123000Z"')
    assert b'"type":"tombstone"' in t.leaf_data
    assert t.tombstone_hash == leaf_hash(t.leaf_data)
    assert Tombstone.from_dict(t.to_dict()) == t
    with pytest.raises(InputError):
        Tombstone.from_dict({**t.to_dict(), "type": "record"})
    with pytest.raises(InputError):
        Tombstone.from_dict({**t.to_dict(), "leaf_hash": "AB" * 32})
