"""Finding an exchange's leaf through ``exchanges.seq`` and ``ledger_segments`` (schema v2)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError, SchemaOutdatedError
from distillguard.ledger import Ledger, audit_ledger
from distillguard.ledger._log import SCHEMA_VERSION, _segments
from distillguard.store import Store, open_store
from distillguard.store.base import new_salts

from .conftest import add_records, make_exchange


def _all_leaf_ids(ledger: Ledger) -> dict[str, int]:
    return {leaf.exchange_id: leaf.leaf_index for b in ledger.iter_leaves() for leaf in b}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 400), unique=True, max_size=60), st.integers(0, 10**6))
def test_segments_map_every_seq_to_its_leaf(seqs: list[int], first_leaf: int) -> None:
    segments = _segments(first_leaf, seqs)
    mapping = {
        seq: leaf
        for leaf0, seq0, count in segments
        for seq, leaf in zip(range(seq0, seq0 + count), range(leaf0, leaf0 + count), strict=True)
    }
    assert mapping == {seq: first_leaf + k for k, seq in enumerate(seqs)}
    assert sum(c for _, _, c in segments) == len(seqs)
    # Runs are maximal: consecutive segments never continue each other.
    for (l1, s1, c1), (l2, s2, _) in itertools.pairwise(segments):
        assert l2 == l1 + c1 and s2 != s1 + c1


def test_sequential_batches_make_one_segment_each(sqlite_store: Store) -> None:
    Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 30)
    add_records(sqlite_store, 30, 30)
    with sqlite_store.transaction() as cur:
        cur.execute("SELECT first_leaf, first_seq, count FROM ledger_segments ORDER BY 1")
        assert [tuple(r) for r in cur.fetchall()] == [(0, 1, 30), (30, 31, 30)]


def test_lookup_across_seq_gaps_from_skipped_duplicates(store: Store) -> None:
    ledger = Ledger.attach(store)
    add_records(store, 0, 10)
    # A batch mixing stored ids (skipped) and new ones: gaps in seq on both backends.
    batch = [make_exchange(i) for i in (3, 100, 5, 101, 102, 7, 103)]
    with store.transaction() as cur:
        inserted = store.add_exchanges(cur, list(zip(batch, new_salts(len(batch)), strict=True)))
    assert [s.exchange.exchange_id for s in inserted] == [
        "ex-000100",
        "ex-000101",
        "ex-000102",
        "ex-000103",
    ]
    truth = _all_leaf_ids(ledger)
    assert len(truth) == 14
    for exchange_id, index in truth.items():
        leaf = ledger.leaf_for(exchange_id)
        assert leaf is not None and leaf.leaf_index == index and leaf.exchange_id == exchange_id
    assert ledger.leaf_for("ex-999999") is None
    assert audit_ledger(ledger, public_keys=[]).ok


def test_erased_record_is_still_found_through_its_erasure(store: Store) -> None:
    ledger = Ledger.attach(store)
    add_records(store, 0, 12)
    with store.transaction() as cur:
        ledger.record_erasure(
            cur, exchange_id="ex-000004", scope="record", reason="art. 17", actor="dpo"
        )
        cur.execute(store.q("DELETE FROM exchanges WHERE exchange_id = ?"), ("ex-000004",))
    leaf = ledger.leaf_for("ex-000004")
    assert leaf is not None and leaf.leaf_index == 4


def test_records_stored_before_the_ledger_have_no_leaf(store: Store) -> None:
    add_records(store, 0, 5)
    ledger = Ledger.attach(store)
    add_records(store, 5, 5)
    assert ledger.leaf_for("ex-000002") is None
    leaf = ledger.leaf_for("ex-000007")
    assert leaf is not None and leaf.leaf_index == 2
    with store.transaction() as cur, pytest.raises(InputError):
        ledger.record_erasure(cur, exchange_id="ex-000002", scope="record", reason="r", actor="a")


def test_seq_reused_after_the_newest_record_is_erased(sqlite_store: Store) -> None:
    # SQLite numbers a new exchange max(seq) + 1, so erasing the newest one frees its seq.
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 10)
    with sqlite_store.transaction() as cur:
        ledger.record_erasure(cur, exchange_id="ex-000009", scope="record", reason="r", actor="a")
        cur.execute("DELETE FROM exchanges WHERE exchange_id = 'ex-000009'")
    add_records(sqlite_store, 50, 3)
    stored = sqlite_store.get_exchange("ex-000050")
    assert stored is not None and stored.seq == 10  # the reused number
    # Leaf 10 is the erasure's tombstone; the new records follow it.
    for exchange_id, index in [("ex-000009", 9), ("ex-000050", 11), ("ex-000052", 13)]:
        leaf = ledger.leaf_for(exchange_id)
        assert leaf is not None and leaf.leaf_index == index


def test_a_mismatching_segment_falls_back_to_the_leaves(sqlite_store: Store) -> None:
    ledger = Ledger.attach(sqlite_store)
    add_records(sqlite_store, 0, 8)
    with sqlite_store.transaction() as cur:  # altered tables: the segment points elsewhere
        cur.execute("UPDATE ledger_segments SET first_leaf = first_leaf + 1")
    leaf = ledger.leaf_for("ex-000003")
    assert leaf is not None and leaf.leaf_index == 3


def test_version_1_ledger_is_migrated(store_url: str) -> None:
    """A store made before migrations with a version 1 ledger (no segments) is refused until
    ``db migrate`` (store migration 1) gives every leaf its segment."""
    with open_store(store_url) as store:
        Ledger.attach(store)
        add_records(store, 0, 9)
        with store.transaction() as cur:  # what such a store looks like
            cur.execute("DELETE FROM ledger_segments")
            cur.execute("UPDATE schema_versions SET version = 1 WHERE component = 'ledger'")
            cur.execute("DROP TABLE schema_migrations")
    with pytest.raises(SchemaOutdatedError, match="db migrate"):
        open_store(store_url)
    with open_store(store_url, check_schema=False) as store:
        assert store.migrate()  # applies the whole chain
    with open_store(store_url) as store:
        reopened = Ledger.open(store)
        for i in range(9):
            leaf = reopened.leaf_for(f"ex-{i:06d}")
            assert leaf is not None and leaf.leaf_index == i
        with store.transaction() as cur:
            cur.execute("SELECT version FROM schema_versions WHERE component = 'ledger'")
            assert int(cur.fetchone()[0]) == SCHEMA_VERSION
