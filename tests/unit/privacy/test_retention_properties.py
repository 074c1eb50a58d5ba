"""Property: for any records, holds, policy and time, a dry run lists exactly what apply erases."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.config import RetentionSettings
from distillguard.ledger import Ledger
from distillguard.privacy import LegalHolds, RetentionPolicy, apply_retention
from distillguard.store import open_store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

from .conftest import NOW

_days = st.one_of(st.just("forever"), st.integers(min_value=0, max_value=60))
_records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=90)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=_records,
    content=_days,
    metadata=_days,
    override=_days,
    held=st.lists(st.integers(min_value=0, max_value=24), max_size=4),
    held_account=st.sampled_from([None, "a", "b"]),
    shift=st.integers(min_value=-30, max_value=30),
)
def test_dry_run_equals_apply(
    records: list[tuple[str, int]],
    content: int | str,
    metadata: int | str,
    override: int | str,
    held: list[int],
    held_account: str | None,
    shift: int,
) -> None:
    policy = RetentionPolicy.from_settings(
        RetentionSettings.model_validate(
            {
                "content_days": content,
                "metadata_days": metadata,
                "overrides": [{"tiers": ["pro"], "content_days": override}],
            }
        )
    )
    store = open_store("sqlite://")
    try:
        ledger = Ledger.attach(store)
        exchanges = [
            make_exchange(f"e{i}", account_id=acct, ts=NOW - timedelta(days=age, seconds=i))
            for i, (acct, age) in enumerate(records)
        ]
        with store.transaction() as cur:
            store.add_accounts(
                cur,
                [make_account("a"), make_account("b", tier="pro"), make_account("c")],
                run_id="t",
            )
            store.add_exchanges(cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)))
        holds = LegalHolds(store)
        ids = [e.exchange_id for e in exchanges]
        targets = sorted({ids[i] for i in held if i < len(ids)})
        if targets:
            holds.place_many(scope="exchange", targets=targets, reason="r", actor="t")
        if held_account:
            holds.place(scope="account", target=held_account, reason="r", actor="t")
        now = NOW + timedelta(days=shift)
        dry = apply_retention(store, policy, now=now, actor="t", dry_run=True)
        done = apply_retention(store, policy, now=now, actor="t", ledger=ledger)
        assert dry.plan.to_dict() == done.plan.to_dict()
        gone = {i for i in ids if store.get_exchange(i) is None}
        assert gone == set(done.plan.records)
        emptied = set()
        for i in ids:
            s = store.get_exchange(i)
            if s is not None and s.exchange.messages == () and s.exchange.response is None:
                emptied.add(i)
        assert emptied == set(done.plan.content)
        protected = set(done.plan.held_content) | set(done.plan.held_records)
        assert not protected & (gone | emptied)
        for i in targets:
            assert i in protected or i not in gone | emptied
        assert apply_retention(store, policy, now=now, actor="t", dry_run=True).plan.empty
    finally:
        store.close()
