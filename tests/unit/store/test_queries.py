"""The shared reads over exchanges and accounts (store/_queries.py), on both backends."""

from __future__ import annotations

import pytest

from distillguard.store import (
    InfraUse,
    Store,
    _queries,
    account_exchange_count,
    account_exchanges,
    activity,
    infrastructure,
    one_exchange_per_account,
)
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

_MIN = 60_000_000  # one minute in microseconds


def _fill(store: Store) -> None:
    """a1: 3 exchanges over two /24s and one ASN, a card; a2: 2 exchanges (IPv6, one /48);
    a3: no exchange."""
    accounts = [
        make_account("a1", payment_fingerprint="card-1"),
        make_account("a2"),
        make_account("a3", payment_fingerprint="card-1"),
    ]
    exchanges = [
        make_exchange(
            "e1", account_id="a1", ip="198.51.100.7", asn=64500, offset_s=0, completion_tokens=5
        ),
        make_exchange(
            "e2",
            account_id="a1",
            ip="198.51.100.9",
            asn=64500,
            offset_s=30,
            completion_tokens=50,
            client_fingerprint="ja4-x",
        ),
        make_exchange("e3", account_id="a1", ip="203.0.113.1", offset_s=150, completion_tokens=7),
        make_exchange("e4", account_id="a2", ip="2001:db8::1", offset_s=60, completion_tokens=9),
        make_exchange(
            "e5", account_id="a2", ip="2001:0DB8:0:0::2", offset_s=61, completion_tokens=9
        ),
    ]
    with store.transaction() as cur:
        store.add_accounts(cur, accounts, run_id="t")
        store.add_exchanges(
            cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)), run_id="t"
        )


def test_infrastructure_counts_each_key_per_account(store: Store) -> None:
    _fill(store)
    got = infrastructure(store, ["a1", "a2", "a3", "nobody"])
    assert got == sorted(got, key=lambda u: (u.account_id, u.kind, u.key))
    assert set(got) == {
        InfraUse("a1", "asn", "AS64500", 2),
        InfraUse("a1", "client", "ja4-x", 1),
        InfraUse("a1", "net", "198.51.100.0/24", 2),
        InfraUse("a1", "net", "203.0.113.0/24", 1),
        InfraUse("a1", "payment", "card-1", 1),
        InfraUse("a2", "net", "2001:db8::/48", 2),
        InfraUse("a3", "payment", "card-1", 1),
    }
    assert infrastructure(store, []) == []


def test_queries_are_the_same_in_chunks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(store)
    ids = ["a1", "a2", "a3"]
    whole, act = infrastructure(store, ids), activity(store, ids, bucket_us=_MIN)
    monkeypatch.setattr(_queries, "CHUNK", 1)  # one account per query
    assert infrastructure(store, ids) == whole
    assert activity(store, ids, bucket_us=_MIN) == act


def test_activity_buckets_exchanges_and_accounts(store: Store) -> None:
    _fill(store)
    act = activity(store, ["a1", "a2"], bucket_us=_MIN)
    assert sum(act.exchanges) == 5
    assert list(act.starts_us) == sorted(act.starts_us)
    assert all(s % _MIN == 0 for s in act.starts_us)
    # every bucket has at least one active account and no more accounts than exchanges
    assert all(0 < a <= n for a, n in zip(act.accounts, act.exchanges, strict=True))
    assert activity(store, [], bucket_us=_MIN).starts_us == ()


def test_one_exchange_per_account_picks_latest_or_longest(store: Store) -> None:
    _fill(store)
    latest = one_exchange_per_account(store, ["a3", "a1", "a2"], limit=5, pick="latest")
    assert [s.exchange.exchange_id for s in latest] == ["e3", "e5"]  # a3 has none
    longest = one_exchange_per_account(store, ["a1", "a2"], limit=5, pick="longest")
    assert [s.exchange.exchange_id for s in longest] == ["e2", "e4"]  # tie on 9: smaller id
    assert len(one_exchange_per_account(store, ["a1", "a2"], limit=1, pick="latest")) == 1


def test_account_exchanges_pages_newest_first(store: Store) -> None:
    _fill(store)
    first = account_exchanges(store, "a1", before=None, limit=2)
    assert [s.exchange.exchange_id for s in first] == ["e3", "e2"]
    last = first[-1].exchange
    cursor = (int(last.ts.timestamp() * 1_000_000), last.exchange_id)
    rest = account_exchanges(store, "a1", before=cursor, limit=2)
    assert [s.exchange.exchange_id for s in rest] == ["e1"]
    assert account_exchange_count(store, "a1") == 3
    assert account_exchange_count(store, "a3") == 0
