"""Content tombstones commit to what the row holds after the erasure (issue 24, review gap 1).

An insider who can write the database but not read the ledger key writes made-up ``messages`` /
``response`` into a row whose content was really erased (or minimised at ingest); the audit must
name the leaf. Legitimate erasure, minimisation and minimisation followed by erasure still pass.
"""

from __future__ import annotations

import pytest

from distillguard.config import RetentionSettings
from distillguard.errors import InputError
from distillguard.keyring import SigningKey
from distillguard.ledger import Erasure, Ledger, Tombstone, verify_bundle
from distillguard.privacy import Minimiser, RetentionPolicy
from distillguard.records import Message
from distillguard.store import Store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

from .conftest import T0, add_records, signing_key
from .test_tombstones import _audit, _erase, _kinds, _sql

_FAKE = (
    "UPDATE exchanges SET messages = ?, response = ? WHERE exchange_id = ?",
    '[{"role":"user","content":"how do I build a bomb"}]',
    '"fabricated answer"',
)


def _fabricate(store: Store, exchange_id: str) -> None:
    _sql(store, _FAKE[0], (_FAKE[1], _FAKE[2], exchange_id))


def _ledger(store: Store) -> tuple[Ledger, SigningKey]:
    ledger = Ledger.attach(store)
    key = signing_key()
    ledger.signing_key = key
    add_records(store, 0, 10)
    ledger.publish_checkpoint(key)
    return ledger, key


def test_made_up_content_after_a_real_content_erasure_fails(store: Store) -> None:
    """/tmp/aud/v1.py: the audit passed this before content tombstones committed to NULL."""
    ledger, key = _ledger(store)
    _erase(ledger, "ex-000006", scope="content")
    ledger.publish_checkpoint(key)
    report = _audit(ledger, key)
    assert report.ok, _kinds(report)
    assert [(e.exchange_id, e.scope) for e in report.erased] == [("ex-000006", "content")]
    _fabricate(store, "ex-000006")
    report = _audit(ledger, key)
    assert _kinds(report) == [("record_changed", 6, "ex-000006")]
    assert "written after the erasure" in report.findings[0].message
    # the metadata stays checked as before
    _sql(store, "UPDATE exchanges SET account_id = 'acct-evil' WHERE exchange_id = 'ex-000006'")
    assert ("record_changed", 6, "ex-000006") in _kinds(_audit(ledger, key))


def test_content_tombstone_is_version_2_and_its_commitment_is_bound(store: Store) -> None:
    ledger, key = _ledger(store)
    _erase(ledger, "ex-000003", scope="content")
    ledger.publish_checkpoint(key)
    (erasure,) = ledger.erasures_of(3)
    assert erasure.content_after is not None and len(erasure.content_after) == 32
    leaf = ledger.leaf(3)
    assert leaf is not None
    stone = erasure.tombstone(leaf.leaf_hash)
    assert stone.to_dict()["v"] == 2 and Tombstone.from_dict(stone.to_dict()) == stone
    # a bundle of the content-erased exchange carries the version 2 tombstone and verifies
    verify_bundle(ledger.prove("ex-000003"), public_keys=[key.public_key()])
    # editing the stored commitment to match made-up content breaks the tombstone leaf
    _fabricate(store, "ex-000003")
    _sql(store, "UPDATE ledger_erasures SET content_after = ? WHERE leaf_index = 3", (b"\0" * 32,))
    kinds = {k for k, _, _ in _kinds(_audit(ledger, key))}
    assert "tombstone_mismatch" in kinds or "erasure_unverified" in kinds


def test_a_version_1_tombstone_stays_readable() -> None:
    old = {
        "type": "tombstone",
        "v": 1,
        "leaf_index": 3,
        "leaf_hash": "ab" * 32,
        "exchange_id": "ex-3",
        "scope": "content",
        "erased_at": "2026-06-01T00:00:00.000000Z",
        "reason": "r",
        "actor": "a",
    }
    stone = Tombstone.from_dict(old)
    assert stone.content_after is None and stone.to_dict() == old
    with pytest.raises(InputError):
        Tombstone.from_dict({**old, "content_after": "cd" * 32})  # v1 has no such member
    with pytest.raises(InputError):
        Tombstone.from_dict({**old, "v": 2})  # v2 must say what the row holds
    with pytest.raises(InputError):
        Tombstone.from_dict({**old, "v": 2, "scope": "record", "content_after": "cd" * 32})


def test_a_version_1_content_tombstone_cannot_vouch_for_the_content(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the docs say: an old content tombstone checks the metadata only."""
    ledger, key = _ledger(store)
    monkeypatch.setattr(Ledger, "_content_after", lambda *a: {})  # as before version 2
    _erase(ledger, "ex-000004", scope="content")
    monkeypatch.undo()
    ledger.publish_checkpoint(key)
    (erasure,) = ledger.erasures_of(4)
    assert erasure.content_after is None
    _fabricate(store, "ex-000004")
    assert _audit(ledger, key).ok


# -- minimised at ingest --------------------------------------------------------------------------


def _minimising(store: Store) -> tuple[Ledger, SigningKey]:
    ledger = Ledger.attach(store)
    key = signing_key()
    ledger.signing_key = key
    policy = RetentionPolicy.from_settings(
        RetentionSettings.model_validate(
            {"overrides": [{"tiers": ["enterprise"], "minimise": "truncate:8"}]}
        )
    )
    assert Minimiser.attach(store, ledger=ledger, policy=policy) is not None
    exchanges = [
        make_exchange(
            f"ent-{i}",
            account_id="acct-ent",
            offset_s=i,
            messages=(Message("system", "Be terse."), Message("user", "a long secret prompt")),
            response="a long secret answer",
            reasoning="think hard" if i else None,
        )
        for i in range(3)
    ]
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account("acct-ent", tier="enterprise")], run_id="t")
        store.add_exchanges(cur, list(zip(exchanges, new_salts(3), strict=True)))
    ledger.publish_checkpoint(key)
    return ledger, key


def test_made_up_content_in_a_row_minimised_at_ingest_fails(store: Store) -> None:
    ledger, key = _minimising(store)
    report = _audit(ledger, key)
    assert report.ok, _kinds(report)
    assert len(report.erased) == 3
    stored = store.get_exchange("ent-1")
    assert stored is not None and stored.exchange.messages[1].content == "a long s"
    _fabricate(store, "ent-1")
    assert _kinds(_audit(ledger, key)) == [("record_changed", 1, "ent-1")]


def test_minimised_then_erased_passes_and_keeps_both_tombstones(store: Store) -> None:
    """A later content erasure (retention) of a minimised row supersedes its tombstone."""
    ledger, key = _minimising(store)
    size = ledger.size
    _erase(ledger, "ent-2", scope="content")
    ledger.publish_checkpoint(key)
    assert ledger.size == size + 1  # a new tombstone: the row now holds NULL, not the minimised
    report = _audit(ledger, key)
    assert report.ok, _kinds(report)
    (current,) = ledger.erasures_of(2)
    assert current.reason == "GDPR art. 17" and current.tombstone_index == size
    with store.transaction() as cur:
        cur.execute("SELECT tombstone_leaf, reason FROM ledger_superseded_erasures")
        assert [(int(r[0]), str(r[1])) for r in cur.fetchall()] == [(5, "minimisation: truncate:8")]
    verify_bundle(ledger.prove("ent-2"), public_keys=[key.public_key()])
    # writing the minimised text back (or anything else) is named
    _fabricate(store, "ent-2")
    assert _kinds(_audit(ledger, key)) == [("record_changed", 2, "ent-2")]
    # erasing the NULL row again changes nothing
    _sql(store, "UPDATE exchanges SET messages = NULL, response = NULL WHERE exchange_id = 'ent-2'")
    _erase(ledger, "ent-2", scope="content")
    assert ledger.size == size + 1 and _audit(ledger, key).ok


def test_erasure_to_dict_names_the_commitment() -> None:
    e = Erasure(1, "ex", "content", T0, "r", "a", 2, None, b"\1" * 32)
    assert e.to_dict()["content_after"] == "01" * 32
