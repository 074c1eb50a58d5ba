"""The PostgreSQL store's connection pool, on the real server: threads run at once, nested
transactions stay on their thread's connection, an exhausted pool says so."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from distillguard.errors import StoreConnectionError
from distillguard.store import open_store
from distillguard.store.base import new_salts
from distillguard.store.postgres import DEFAULT_POOL_SIZE, PostgresStore, split_pool_size
from distillguard.testing import make_exchange, postgres_store_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_store_url() as url:
        yield url


def test_pool_size_in_the_url() -> None:
    assert split_pool_size("postgresql://h/db?pool_size=3&sslmode=disable") == (
        "postgresql://h/db?sslmode=disable",
        3,
    )
    assert split_pool_size("postgresql://h/db") == ("postgresql://h/db", DEFAULT_POOL_SIZE)
    for bad in ("0", "x", "257", "-1"):
        with pytest.raises(StoreConnectionError, match="pool_size"):
            split_pool_size(f"postgresql://h/db?pool_size={bad}")


def test_threads_use_the_store_at_the_same_time(pg_url: str) -> None:
    """A transaction that sleeps does not hold up another thread's (one connection each)."""
    with open_store(pg_url + "&pool_size=4") as store:
        assert isinstance(store, PostgresStore) and store.pool_size == 4
        started = threading.Event()
        slow_done: list[float] = []

        def slow() -> None:
            with store.transaction() as cur:
                started.set()
                cur.execute("SELECT pg_sleep(0.5)")
            slow_done.append(time.perf_counter())

        t = threading.Thread(target=slow)
        t.start()
        assert started.wait(10)
        with store.transaction() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        fast_done = time.perf_counter()
        t.join()
        assert fast_done < slow_done[0]  # finished while the other transaction still slept


def test_concurrent_writers_store_everything_once(pg_url: str) -> None:
    with open_store(pg_url) as store:
        errors: list[BaseException] = []

        def write(k: int) -> None:
            try:
                for b in range(5):
                    batch = [make_exchange(f"ex-{k}-{b}-{i}") for i in range(20)]
                    with store.transaction() as cur:
                        store.add_exchanges(cur, list(zip(batch, new_salts(20), strict=True)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert store.count("exchanges") == 6 * 5 * 20
        with store.transaction() as cur:
            cur.execute("SELECT count(DISTINCT seq) FROM exchanges")
            assert cur.fetchone()[0] == 600


def test_a_nested_transaction_is_a_savepoint_on_the_same_connection(pg_url: str) -> None:
    with open_store(pg_url) as store:
        with store.transaction() as outer:
            outer.execute("SELECT pg_backend_pid()")
            pid = outer.fetchone()[0]
            store.add_exchanges(outer, [(make_exchange("kept"), new_salts(1)[0])])
            with pytest.raises(RuntimeError), store.transaction() as inner:
                inner.execute("SELECT pg_backend_pid()")
                assert inner.fetchone()[0] == pid
                store.add_exchanges(inner, [(make_exchange("rolled-back"), new_salts(1)[0])])
                raise RuntimeError("inner fails")
        assert store.get_exchange("kept") is not None
        assert store.get_exchange("rolled-back") is None


def test_an_exhausted_pool_raises_a_storage_error(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distillguard.store.postgres as pg

    monkeypatch.setattr(pg, "POOL_TIMEOUT_S", 0.5)
    with open_store(pg_url + "&pool_size=1") as store:
        hold = threading.Event()
        release = threading.Event()

        def holder() -> None:
            with store.transaction():
                hold.set()
                release.wait(10)

        t = threading.Thread(target=holder)
        t.start()
        try:
            assert hold.wait(10)
            busy = pytest.raises(StoreConnectionError, match="no PostgreSQL connection free")
            with busy as info, store.transaction():
                pass
            assert info.value.hint is not None and "pool_size" in info.value.hint
        finally:
            release.set()
            t.join()
        with store.transaction() as cur:  # free again
            cur.execute("SELECT 1")


def test_an_unreachable_server_is_named(pg_url: str) -> None:
    with pytest.raises(StoreConnectionError, match="cannot connect to PostgreSQL"):
        PostgresStore("postgresql://root@127.0.0.1:1/test?connect_timeout=2")
