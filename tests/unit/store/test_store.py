"""The store contract, run against every backend (SQLite file and the real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.config import RetentionSettings
from distillguard.errors import ConfigurationError, SchemaVersionError, StoreConnectionError
from distillguard.records import Message
from distillguard.store import Cursor, InsertHook, Store, StoredExchange, open_store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange


def _add(store: Store, ids: Sequence[str]) -> list[StoredExchange]:
    batch = [(make_exchange(i), s) for i, s in zip(ids, new_salts(len(ids)), strict=True)]
    with store.transaction() as cur:
        return store.add_exchanges(cur, batch, run_id="t", now_us=1)


def test_round_trip_is_exact(store: Store) -> None:
    ex = make_exchange(
        "ex-a",
        messages=(Message("user", "héllo \u2028 \x00 ✓"), Message("assistant", "")),
        tools=("search",),
        latency_ms=0.1 + 0.2,
        asn=2**40,
        reasoning="r",
        custom={"k": [1, 2.5, None, "x"]},
    )
    salt = new_salts(1)[0]
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account("acct-1", crm=7)], run_id="t")
        (stored,) = store.add_exchanges(cur, [(ex, salt)], run_id="t", now_us=5)
    got = store.get_exchange("ex-a")
    assert got is not None
    assert got.exchange == ex and got.exchange.to_dict() == ex.to_dict()
    assert got.salt == salt and len(salt) == 32
    assert got.seq == stored.seq
    account = store.get_account("acct-1")
    assert account is not None and account.extra["crm"] == 7
    assert store.get_exchange("nope") is None


def test_existing_ids_are_skipped_and_sequence_grows(store: Store) -> None:
    first = _add(store, ["e1", "e2", "e3"])
    again = _add(store, ["e2", "e4", "e3", "e5"])
    assert [s.exchange.exchange_id for s in again] == ["e4", "e5"]
    seqs = [s.seq for s in first + again]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert store.count("exchanges") == 5
    order = [s.exchange.exchange_id for b in store.iter_exchanges(batch_size=2) for s in b]
    assert order == ["e1", "e2", "e3", "e4", "e5"]


def test_batched_walks_page_by_key(store: Store) -> None:
    """iter_exchanges (from after_seq), iter_exchanges_checked and iter_accounts page by key."""
    added = _add(store, ["e1", "e2", "e3", "e4", "e5"])
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account(f"a{i}") for i in (3, 1, 5, 2, 4)], run_id="t")
    after = [
        [s.exchange.exchange_id for s in b]
        for b in store.iter_exchanges(batch_size=2, after_seq=added[1].seq)
    ]
    assert after == [["e3", "e4"], ["e5"]]
    checked = [
        [s.exchange.exchange_id for s in b if isinstance(s, StoredExchange)]
        for b in store.iter_exchanges_checked(batch_size=2)
    ]
    assert checked == [["e1", "e2"], ["e3", "e4"], ["e5"]]
    accounts = [[a.account_id for a in b] for b in store.iter_accounts(batch_size=2)]
    assert accounts == [["a1", "a2"], ["a3", "a4"], ["a5"]]


def test_insert_hooks_run_in_the_same_transaction(store: Store) -> None:
    seen: list[list[str]] = []

    def hook(cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        seen.append([s.exchange.exchange_id for s in inserted])
        if "boom" in seen[-1]:
            raise RuntimeError("hook failed")

    store.insert_hooks.register("test", hook)
    _add(store, ["a", "b"])
    _add(store, ["a"])  # nothing new: the hook is not called
    with pytest.raises(RuntimeError):
        _add(store, ["c", "boom"])
    assert seen == [["a", "b"], ["c", "boom"]]
    assert store.count("exchanges") == 2  # the failed batch rolled back entirely


def test_insert_hooks_are_named_and_run_in_registration_order(store: Store) -> None:
    calls: list[str] = []

    def hook(name: str) -> InsertHook:
        return lambda cur, inserted: calls.append(name)

    hooks = store.insert_hooks
    hooks.register("first", hook("first"))
    hooks.register("second", hook("second"), after=("first",))
    assert hooks.names() == ("first", "second") and "first" in hooks and len(hooks) == 2
    with pytest.raises(ConfigurationError, match="already registered"):
        hooks.register("first", hook("again"))
    with pytest.raises(ConfigurationError, match="'absent'"):
        hooks.register("third", hook("third"), after=("absent",))
    assert hooks.names() == ("first", "second")  # a refused registration leaves no trace
    _add(store, ["a"])
    assert calls == ["first", "second"]
    removed = hooks.unregister("first")
    assert removed is not None and hooks.unregister("first") is None
    _add(store, ["b"])
    assert calls == ["first", "second", "second"]


def test_the_ledger_and_minimiser_find_their_hooks_by_name(store: Store) -> None:
    from distillguard.ledger import Ledger
    from distillguard.privacy import Minimiser, RetentionPolicy

    ledger = Ledger.attach(store)
    assert Ledger.attach(store) is ledger and store.insert_hooks.get(Ledger.HOOK) is ledger
    policy = RetentionPolicy.from_settings(RetentionSettings(minimise="hash"))
    minimiser = Minimiser.attach(store, ledger=ledger, policy=policy)
    assert minimiser is not None
    assert Minimiser.attach(store, ledger=ledger, policy=policy) is minimiser
    assert store.insert_hooks.names() == (Ledger.HOOK, Minimiser.HOOK)


def test_a_foreign_hook_cannot_take_the_ledgers_name(store: Store) -> None:
    from distillguard.ledger import Ledger

    store.insert_hooks.register(Ledger.HOOK, lambda cur, inserted: None)
    with pytest.raises(ConfigurationError, match="already registered"):
        Ledger.attach(store)


def test_ensure_tables_is_idempotent_and_versioned(store: Store) -> None:
    ddl = ["CREATE TABLE IF NOT EXISTS widget (id {bigint} PRIMARY KEY, data {blob})"]
    store.ensure_tables("widget", 1, ddl)
    store.ensure_tables("widget", 2, ddl)
    with store.transaction() as cur:
        cur.execute(store.q("INSERT INTO widget (id, data) VALUES (?, ?)"), (1, b"\x00\x01"))
        cur.execute("SELECT data FROM widget")
        assert bytes(cur.fetchone()[0]) == b"\x00\x01"
    with pytest.raises(SchemaVersionError, match="newer than this"):
        store.ensure_tables("widget", 1, ddl)


def test_reopen_keeps_data(store_url: str) -> None:
    with open_store(store_url) as s:
        _add(s, ["x1"])
    with open_store(store_url) as s:
        assert s.count("exchanges") == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(max_size=50),
    tokens=st.integers(0, 2**62),
    latency=st.none() | st.floats(min_value=0, allow_infinity=False, allow_nan=False),
)
def test_any_valid_record_round_trips(
    store: Store, text: str, tokens: int, latency: float | None
) -> None:
    import uuid

    ex = make_exchange(
        uuid.uuid4().hex,
        messages=(Message("user", text),),
        response=text,
        prompt_tokens=tokens,
        latency_ms=latency,
    )
    with store.transaction() as cur:
        store.add_exchanges(cur, [(ex, b"s" * 32)])
    got = store.get_exchange(ex.exchange_id)
    assert got is not None and got.exchange == ex


def test_bad_urls(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="unsupported store URL"):
        open_store("mysql://x")
    with pytest.raises(StoreConnectionError, match="cannot open SQLite store"):
        open_store("sqlite:////proc/forbidden/dir/store.sqlite")


@pytest.mark.postgres
def test_postgres_unreachable_and_bad_schema() -> None:
    with pytest.raises(StoreConnectionError, match="cannot connect to PostgreSQL"):
        open_store("postgresql://root:secret@127.0.0.1:1/test")
    with pytest.raises(StoreConnectionError, match="invalid schema name"):
        open_store("postgresql://root@127.0.0.1:5432/test?schema=Robert';DROP")


@pytest.mark.postgres
def test_postgres_error_message_hides_password() -> None:
    with pytest.raises(StoreConnectionError) as info:
        open_store("postgresql://root:hunter2@127.0.0.1:1/test")
    assert "hunter2" not in str(info.value)
