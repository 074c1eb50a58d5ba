"""Retention apply/dry-run, legal holds, erasure by account, receipts; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from distillguard.config import RetentionSettings
from distillguard.errors import InputError, LegalHoldError
from distillguard.ledger import Ledger, audit_ledger, verify_bundle, verify_checkpoint
from distillguard.privacy import (
    LegalHolds,
    RetentionPolicy,
    apply_retention,
    erase_account,
    list_receipts,
    plan_retention,
)
from distillguard.store import Store

from .conftest import AGES, NOW, World, exchange_id, populate

POLICY = RetentionPolicy.from_settings(
    RetentionSettings.model_validate(
        {
            "content_days": 30,
            "metadata_days": 365,
            "overrides": [
                {"accounts": ["acct-vip"], "content_days": "forever", "metadata_days": "forever"},
                {"tiers": ["enterprise"], "content_days": 7, "metadata_days": 90},
            ],
        }
    )
)


def _expected() -> tuple[set[str], set[str]]:
    """Which ids POLICY erases at NOW, derived from the ages by hand."""
    content = {exchange_id("acct-free", a) for a in AGES if 30 < a <= 365}
    content |= {exchange_id("acct-ent", a) for a in AGES if 7 < a <= 90}
    records = {exchange_id("acct-free", a) for a in AGES if a > 365}
    records |= {exchange_id("acct-ent", a) for a in AGES if a > 90}
    return content, records


def _audit_ok(w: World) -> list[tuple[int, str, str]]:
    report = audit_ledger(w.ledger, public_keys=[w.key.public_key()])
    assert report.ok, [f.message for f in report.findings]
    return [(e.leaf_index, e.exchange_id, e.scope) for e in report.erased]


def test_plan_follows_policy(world: World) -> None:
    plan = plan_retention(world.store, POLICY, now=NOW)
    content, records = _expected()
    assert set(plan.content) == content and set(plan.records) == records
    assert len(plan.content) == len(content)  # no duplicates
    assert plan.held_content == () and plan.held_records == ()
    # nothing changed
    for eid, original in world.originals.items():
        stored = world.store.get_exchange(eid)
        assert stored is not None and stored.exchange == original


def test_dry_run_reports_exactly_what_apply_erases(world: World) -> None:
    w = world
    dry = apply_retention(w.store, POLICY, now=NOW, actor="tester", dry_run=True)
    assert not dry.applied and dry.receipt is None
    done = apply_retention(
        w.store,
        POLICY,
        now=NOW,
        actor="tester",
        ledger=w.ledger,
        signing_key=w.key,
    )
    assert done.applied
    assert set(dry.plan.content) == set(done.plan.content)
    assert set(dry.plan.records) == set(done.plan.records)
    # ... and apply erased exactly that: check the store itself
    erased_records = {e for e in w.originals if w.store.get_exchange(e) is None}
    assert erased_records == set(dry.plan.records)
    erased_content = set()
    for eid, original in w.originals.items():
        stored = w.store.get_exchange(eid)
        if stored is None:
            continue
        ex = stored.exchange
        if ex.messages == () and ex.response is None and ex.reasoning is None:
            erased_content.add(eid)
            assert ex.account_id == original.account_id and ex.ts == original.ts  # meta kept
        else:
            assert ex == original
    assert erased_content == set(dry.plan.content)
    # the ledger names each erasure and the audit passes
    erased = _audit_ok(w)
    assert {(e, s) for _, e, s in erased} == {(e, "record") for e in dry.plan.records} | {
        (e, "content") for e in dry.plan.content
    }
    # a second run finds nothing left to do
    again = apply_retention(w.store, POLICY, now=NOW, actor="tester", dry_run=True)
    assert again.plan.empty


def test_legal_hold_wins_over_retention(world: World) -> None:
    w = world
    holds = LegalHolds(w.store)
    hold = holds.place(scope="account", target="acct-free", reason="campaign c-1", actor="analyst")
    single = holds.place(
        scope="exchange", target=exchange_id("acct-ent", 400), reason="bundle b-7", actor="analyst"
    )
    result = apply_retention(
        w.store,
        POLICY,
        now=NOW,
        actor="tester",
        ledger=w.ledger,
        signing_key=w.key,
    )
    content, records = _expected()
    held_free = {e for e in content | records if e.startswith("acct-free")}
    assert set(result.plan.held_content) | set(result.plan.held_records) == held_free | {
        exchange_id("acct-ent", 400)
    }
    for eid in held_free | {exchange_id("acct-ent", 400)}:
        stored = w.store.get_exchange(eid)
        assert stored is not None and stored.exchange == w.originals[eid]
    assert holds.is_held(exchange_id("acct-free", 800))
    # released holds no longer protect
    holds.release(hold.hold_id, actor="counsel")
    holds.release(single.hold_id, actor="counsel")
    later = apply_retention(
        w.store,
        POLICY,
        now=NOW,
        actor="tester",
        ledger=w.ledger,
        signing_key=w.key,
    )
    assert set(later.plan.records) == {e for e in records if e.startswith("acct-free")} | {
        exchange_id("acct-ent", 400)
    }
    assert {h.hold_id for h in holds.holds(include_released=True)} == {
        hold.hold_id,
        single.hold_id,
    }
    assert holds.holds() == []
    _audit_ok(w)


def test_hold_validation_and_release_errors(store: Store) -> None:
    holds = LegalHolds(store)
    with pytest.raises(InputError):
        holds.place(scope="account", target="a", reason=" ", actor="x")
    with pytest.raises(InputError):
        holds.place(scope="thing", target="a", reason="r", actor="x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no legal hold"):
        holds.release("hold-nope", actor="x")
    first = holds.place_many(scope="exchange", targets=["e1", "e2", "e1"], reason="r", actor="x")
    again = holds.place_many(scope="exchange", targets=["e2", "e3"], reason="r2", actor="y")
    assert len(first) == 2 and again[0] == first[1] and again[1].target == "e3"
    holds.release(first[0].hold_id, actor="x")
    with pytest.raises(InputError, match="already released"):
        holds.release(first[0].hold_id, actor="x")


def test_erase_account_receipt_and_ledger(world: World) -> None:
    w = world
    before: dict[str, int] = {}
    for e in w.originals:
        leaf = w.ledger.leaf_for(e)
        assert leaf is not None
        before[e] = leaf.leaf_index
    target_ids = [exchange_id("acct-free", a) for a in AGES]
    receipt = erase_account(
        w.store,
        account_id="acct-free",
        reason="GDPR art. 17 request #42",
        actor="dpo@example.com",
        now=NOW,
        ledger=w.ledger,
        signing_key=w.key,
    )
    assert receipt.counts["exchanges"] == len(AGES) == receipt.counts["in_ledger"]
    assert receipt.counts["account_rows"] == 1
    assert [x["exchange_id"] for x in receipt.exchanges] == target_ids
    assert [x["leaf_index"] for x in receipt.exchanges] == [before[e] for e in target_ids]
    assert w.store.get_account("acct-free") is None
    assert all(w.store.get_exchange(e) is None for e in target_ids)
    # the checkpoint in the receipt is signed after the erasure and covers the whole tree
    cp = verify_checkpoint(receipt.ledger["checkpoint"], public_keys=[w.key.public_key()])
    # (the records' leaves and a tombstone leaf per erased exchange)
    assert cp.size == len(w.originals) + len(target_ids) == receipt.ledger["tree_size"]
    assert receipt.ledger["root_hash_hex"] == cp.root_hash.hex()
    assert list_receipts(w.store)[0]["receipt_id"] == receipt.receipt_id
    erased = _audit_ok(w)
    assert sorted(e for _, e, _ in erased) == sorted(target_ids)
    with pytest.raises(InputError, match="no account"):
        erase_account(w.store, account_id="acct-free", reason="again", actor="x", ledger=w.ledger)


def test_legal_hold_wins_over_erasure_unless_forced(world: World) -> None:
    w = world
    holds = LegalHolds(w.store)
    hold = holds.place(
        scope="exchange", target=exchange_id("acct-ent", 10), reason="evidence", actor="a"
    )
    with pytest.raises(LegalHoldError, match=hold.hold_id):
        erase_account(
            w.store, account_id="acct-ent", reason="request", actor="dpo", ledger=w.ledger
        )
    assert all(w.store.get_exchange(exchange_id("acct-ent", a)) is not None for a in AGES)
    assert w.store.get_account("acct-ent") is not None
    receipt = erase_account(
        w.store,
        account_id="acct-ent",
        reason="court order",
        actor="dpo",
        force=True,
        ledger=w.ledger,
    )
    assert receipt.forced_holds == (hold.hold_id,)
    assert all(w.store.get_exchange(exchange_id("acct-ent", a)) is None for a in AGES)


def test_content_erasure_keeps_metadata_provable(world: World) -> None:
    w = world
    erase_account(
        w.store, account_id="acct-vip", scope="content", reason="minimise", actor="dpo",
        ledger=w.ledger, signing_key=w.key,
    )  # fmt: skip
    assert w.store.get_account("acct-vip") is not None
    eid = exchange_id("acct-vip", 10)
    stored = w.store.get_exchange(eid)
    assert stored is not None and stored.exchange.messages == ()
    assert stored.exchange.ip == w.originals[eid].ip
    bundle = w.ledger.prove(eid)
    assert not bundle.content_included
    result = verify_bundle(bundle.to_dict(), public_keys=[w.key.public_key()])
    assert result.exchange_id == eid and not result.content_verified
    assert {s for _, _, s in _audit_ok(w)} == {"content"}


def test_erasure_keeps_other_proofs_and_old_bundles_valid(world: World) -> None:
    w = world
    victim = exchange_id("acct-free", 40)
    old_bundle = w.ledger.prove(victim).to_dict()
    neighbour_bundles = {e: w.ledger.prove(e).to_dict() for e in w.originals if e != victim}
    erase_account(
        w.store, account_id="acct-free", reason="request", actor="dpo", ledger=w.ledger,
        signing_key=w.key,
    )  # fmt: skip
    keys = [w.key.public_key()]
    # a bundle handed out before the erasure still verifies offline
    assert verify_bundle(old_bundle, public_keys=keys).exchange_id == victim
    # fresh proofs of every remaining record verify against the new checkpoint
    for eid in w.originals:
        if eid.startswith("acct-free"):
            with pytest.raises(InputError, match="erased"):
                w.ledger.prove(eid)
            continue
        assert verify_bundle(w.ledger.prove(eid).to_dict(), public_keys=keys).exchange_id == eid
        assert verify_bundle(neighbour_bundles[eid], public_keys=keys).exchange_id == eid
    erased = _audit_ok(w)
    assert (w.ledger.leaf_for(victim).leaf_index, victim, "record") in erased  # type: ignore[union-attr]


def test_records_stored_before_the_ledger_are_erased_and_counted(store: Store) -> None:
    w = populate(store, attach=False)
    result = apply_retention(store, POLICY, now=NOW, actor="t", ledger=Ledger.open(store))
    assert result.not_in_ledger == len(result.plan.content) + len(result.plan.records) > 0
    assert all(store.get_exchange(e) is None for e in result.plan.records)
    assert w.originals


def test_apply_needs_reason_and_actor(world: World) -> None:
    with pytest.raises(InputError, match="actor"):
        apply_retention(world.store, POLICY, now=NOW, actor=" ")
    with pytest.raises(InputError, match="reason"):
        apply_retention(world.store, POLICY, now=NOW, actor="a", reason="")


def test_limits_count_from_now(world: World) -> None:
    # one day later, the 365-day limit has not moved any 400-day record out of range
    later = plan_retention(world.store, POLICY, now=NOW + timedelta(days=1))
    assert set(later.records) == _expected()[1]
    # 500 days later everything but the VIP's is past its metadata limit
    far = plan_retention(world.store, POLICY, now=NOW + timedelta(days=500))
    assert {e.split("-d")[0] for e in far.records} == {"acct-free", "acct-ent"}
    assert not any(e.startswith("acct-vip") for e in far.content + far.records)
