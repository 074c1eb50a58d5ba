"""The ledger kept in a real store: appends in the insert hook, proofs, checkpoints, erasure."""

from __future__ import annotations

import pytest

from distillguard.errors import InputError, ProofError, SignatureError
from distillguard.ledger import (
    Ledger,
    commit_exchange,
    verify_bundle,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from distillguard.ledger._compact_range import CompactRange
from distillguard.store import Store

from .conftest import add_records, signing_key


def test_every_stored_exchange_becomes_a_leaf(store: Store) -> None:
    ledger = Ledger.attach(store)
    assert Ledger.attach(store) is ledger  # one hook only
    ids = add_records(store, 0, 37) + add_records(store, 37, 64)
    head = ledger.head()
    assert head.size == 101 == store.count("exchanges")
    expected = CompactRange()
    for exchange_id in ids:
        stored = store.get_exchange(exchange_id)
        assert stored is not None
        expected.append([commit_exchange(stored.exchange, stored.salt).leaf_hash])
    assert head.root_hash == expected.root()
    assert ledger.root_hash(50) != head.root_hash
    # Storing the same exchanges again adds nothing.
    add_records(store, 0, 10)
    assert ledger.size == 101


def test_proofs_and_checkpoints(store: Store) -> None:
    ledger = Ledger.attach(store)
    key = signing_key()
    add_records(store, 0, 20)
    old = ledger.publish_checkpoint(key)
    add_records(store, 20, 13)
    new = ledger.publish_checkpoint(key)
    assert [c.size for c in ledger.checkpoints()] == [20, 33]
    pub = [key.public_key()]
    v_old = verify_checkpoint(old.note, public_keys=pub)
    v_new = verify_checkpoint(new.note, public_keys=pub, origin=ledger.origin)
    assert v_new.kid == key.kid
    proof = ledger.consistency_proof(size1=v_old.size, size2=v_new.size)
    verify_consistency(
        size1=20, size2=33, proof=proof, root1=v_old.root_hash, root2=v_new.root_hash
    )
    leaf = ledger.leaf_for("ex-000007")
    assert leaf is not None and leaf.leaf_index == 7
    verify_inclusion(
        leaf_hash=leaf.leaf_hash,
        index=7,
        size=33,
        proof=ledger.inclusion_proof(index=7, size=33),
        root=v_new.root_hash,
    )
    with pytest.raises(SignatureError):
        verify_checkpoint(new.note, public_keys=[signing_key().public_key()])


def test_bundle_verifies_offline_and_detects_changes(store: Store) -> None:
    ledger = Ledger.attach(store)
    key = signing_key()
    add_records(store, 0, 12)
    with pytest.raises(ProofError, match="no checkpoint"):
        ledger.prove("ex-000003")
    ledger.publish_checkpoint(key)
    bundle = ledger.prove("ex-000003").to_dict()
    result = verify_bundle(bundle, public_keys=[key.public_key()])
    assert (result.leaf_index, result.tree_size, result.exchange_id) == (3, 12, "ex-000003")
    assert result.content_verified

    changed = {**bundle, "record": {**bundle["record"], "prompt_tokens": 1}}
    with pytest.raises(ProofError):
        verify_bundle(changed, public_keys=[key.public_key()])
    changed = {**bundle, "record": {**bundle["record"], "response": "something else"}}
    with pytest.raises(ProofError):
        verify_bundle(changed, public_keys=[key.public_key()])
    with pytest.raises(SignatureError):
        verify_bundle(bundle, public_keys=[signing_key().public_key()])
    with pytest.raises(InputError):
        verify_bundle({**bundle, "leaf_index": "3"}, public_keys=[key.public_key()])
    with pytest.raises(InputError):
        ledger.prove("no-such-exchange")


def test_record_erasure(store: Store) -> None:
    ledger = Ledger.attach(store)
    add_records(store, 0, 5)
    with store.transaction() as cur:
        ledger.record_erasure(
            cur, exchange_id="ex-000002", scope="content", reason="gdpr art. 17", actor="dpo"
        )
        ledger.record_erasure(
            cur, exchange_id="ex-000002", scope="content", reason="again", actor="dpo"
        )
    erasures = ledger.erasures()
    assert list(erasures) == [2]
    assert [(e.scope, e.reason, e.actor) for e in erasures[2]] == [
        ("content", "gdpr art. 17", "dpo")
    ]
    with store.transaction() as cur, pytest.raises(InputError, match="not in the ledger"):
        ledger.record_erasure(cur, exchange_id="nope", scope="record", reason="r", actor="a")
    with store.transaction() as cur, pytest.raises(InputError, match="scope"):
        ledger.record_erasure(
            cur,
            exchange_id="ex-000001",
            scope="everything",  # type: ignore[arg-type]
            reason="r",
            actor="a",
        )


def test_rolled_back_transaction_leaves_tree_and_records_in_step(sqlite_store: Store) -> None:
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 5)
    with pytest.raises(RuntimeError), sqlite_store.transaction():
        add_records(sqlite_store, 5, 5)
        raise RuntimeError("crash before commit")
    assert ledger.size == 5 == sqlite_store.count("exchanges")
    add_records(sqlite_store, 5, 5)  # the cached frontier must not be the rolled-back one
    fresh = Ledger.open(sqlite_store)
    assert fresh.head() == ledger.head()
    assert ledger.head().size == 10


def test_proofs_from_the_store_at_many_sizes(sqlite_store: Store) -> None:
    ledger = Ledger.attach(sqlite_store)
    start = 0
    for count in (1, 2, 5, 16, 17, 33):
        add_records(sqlite_store, start, count)
        start += count
        size = ledger.size
        root = ledger.root_hash()
        for index in {0, size // 2, size - 1}:
            leaf = ledger.leaf(index)
            assert leaf is not None
            verify_inclusion(
                leaf_hash=leaf.leaf_hash,
                index=index,
                size=size,
                proof=ledger.inclusion_proof(index=index, size=size),
                root=root,
            )
        for old in {1, size // 3, size - 1}:
            if 0 < old < size:
                verify_consistency(
                    size1=old,
                    size2=size,
                    proof=ledger.consistency_proof(size1=old, size2=size),
                    root1=ledger.root_hash(old),
                    root2=root,
                )
