"""Failure mode open: the local spool, the recorder's fallback to it and its ordered, exactly-once
replay, and the per-replica fallbacks of the rate limits and the nonce cache."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import StorageError
from distillguard.gateway import recorder as recorder_module
from distillguard.gateway.failover import FailoverNonceCache
from distillguard.gateway.policy import ActionRecord, ActionRow, ensure_action_tables
from distillguard.gateway.ratelimit import (
    Check,
    FailoverRateLimiter,
    Limit,
    MemoryRateLimiter,
)
from distillguard.gateway.recorder import SPOOLED, ExchangeRecorder, store_unreachable
from distillguard.gateway.spool import ExchangeSpool, SpoolFullError, claim_spool
from distillguard.ledger import Ledger
from distillguard.passport import MemoryNonceCache
from distillguard.store import Store, open_store
from distillguard.testing import make_account, make_exchange

# -- the spool ----------------------------------------------------------------------------------


def test_records_come_back_in_order_across_segments_and_reopening(tmp_path: Path) -> None:
    spool = ExchangeSpool(tmp_path / "s", segment_bytes=64)
    payloads = [f"record-{i}".encode() * (1 + i % 3) for i in range(40)]
    for i in range(0, 40, 4):
        spool.append(payloads[i : i + 4])
    assert spool.pending_records == 40
    assert len(list((tmp_path / "s").glob("*.spool"))) > 3  # rotated
    got, cursor = spool.read(15)
    assert got == payloads[:15]
    spool.advance(cursor, len(got))
    spool.close()

    again = ExchangeSpool(tmp_path / "s", segment_bytes=64)  # the cursor survived
    assert again.pending_records == 25
    rest, cursor = again.read(100)
    assert rest == payloads[15:]
    again.advance(cursor, len(rest))
    assert again.empty and again.pending_bytes == 0
    assert len(list((tmp_path / "s").glob("*.spool"))) <= 1  # replayed segments deleted
    again.append([b"after"])
    assert again.read()[0] == [b"after"]


def test_a_record_torn_by_a_crash_is_cut_off(tmp_path: Path) -> None:
    spool = ExchangeSpool(tmp_path)
    spool.append([b"one", b"two"])
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    with segment.open("ab") as fh:  # a crash in the middle of the third record's write
        fh.write(b"\x00\x00\x00\x09\x12\x34")
    reopened = ExchangeSpool(tmp_path)
    assert reopened.read()[0] == [b"one", b"two"]
    reopened.append([b"three"])
    assert reopened.read()[0] == [b"one", b"two", b"three"]


def test_a_full_spool_refuses_and_writes_nothing(tmp_path: Path) -> None:
    spool = ExchangeSpool(tmp_path, max_bytes=1 << 16)
    spool.append([b"x" * 30_000])
    with pytest.raises(SpoolFullError, match="full"):
        spool.append([b"y" * 40_000])
    assert spool.read()[0] == [b"x" * 30_000]
    _, cursor = spool.read()
    spool.advance(cursor, 1)
    spool.append([b"y" * 40_000])  # room again once replayed


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.lists(st.binary(max_size=40), min_size=1, max_size=5)),
            st.tuples(st.just("replay"), st.integers(1, 6)),
            st.tuples(st.just("reopen"), st.none()),
        ),
        max_size=30,
    )
)
def test_every_record_is_replayed_once_in_order(ops: list[tuple[str, Any]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spool = ExchangeSpool(Path(tmp), segment_bytes=100)
        written: list[bytes] = []
        replayed: list[bytes] = []
        for op, arg in ops:
            if op == "append":
                spool.append(arg)
                written += arg
            elif op == "replay":
                got, cursor = spool.read(arg)
                spool.advance(cursor, len(got))
                replayed += got
            else:
                spool.close()
                spool = ExchangeSpool(Path(tmp), segment_bytes=100)
            assert spool.pending_records == len(written) - len(replayed)
        got, cursor = spool.read(10_000)
        replayed += got
        spool.close()
        assert replayed == written


def test_each_process_claims_its_own_slot(tmp_path: Path) -> None:
    a = claim_spool(tmp_path)
    b = claim_spool(tmp_path)
    assert a.path != b.path
    a.append([b"left behind"])
    a.close()
    c = claim_spool(tmp_path)  # a restarted worker takes the free slot and finds its records
    assert c.path == a.path and c.read()[0] == [b"left behind"]
    b.close()
    c.close()


# -- the recorder's fallback ----------------------------------------------------------------------


class _Flaky:
    """A store whose transactions fail as an unreachable server's while ``down``."""

    down = False

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        if _Flaky.down:
            raise ConnectionRefusedError("the store is down")
        with self._inner.transaction() as cur:
            yield cur


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = open_store
    monkeypatch.setattr(recorder_module, "open_store", lambda url: _Flaky(real(url)))
    _Flaky.down = False
    yield
    _Flaky.down = False


def _action(exchange_id: str) -> ActionRow:
    from datetime import UTC, datetime

    return ActionRow(
        ActionRecord(
            action_id="act_" + exchange_id,
            ts=datetime.now(UTC),
            account_id="acct-0",
            exchange_id=exchange_id,
            action="throttle",
            reason="test",
            source="policy",
            risk=0.7,
            cluster_id=None,
        )
    )


def _actions(store: Store) -> int:
    with store.transaction() as cur:
        cur.execute("SELECT count(*) FROM gateway_actions")
        return int(cur.fetchone()[0])


def _recorder(url: str, spool: ExchangeSpool | None) -> ExchangeRecorder:
    return ExchangeRecorder(
        store_url=url,
        max_batch=8,
        spool=spool,
        row_decoders={ActionRow.KIND: ActionRow.decode},
        replay_interval_s=0.05,
        prepare=ensure_action_tables,
    )


def test_exchanges_spooled_while_the_store_is_down_are_replayed_in_order_once(
    tmp_path: Path, flaky: None
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    spool = ExchangeSpool(tmp_path / "spool")
    rec = _recorder(url, spool)
    before = [make_exchange(f"a-{i}", account_id=f"acct-{i % 3}") for i in range(5)]
    during = [make_exchange(f"b-{i}", account_id=f"acct-{i % 3}") for i in range(30)]

    async def record(exchanges: list[Any], rows: bool = False) -> list[int]:
        out = []
        for e in exchanges:  # one at a time: the order of arrival is the order of answers
            done = await rec.record(
                e,
                account=make_account(e.account_id),
                rows=(_action(e.exchange_id),) if rows else (),
            )
            out.append(done.seq)
        return out

    assert asyncio.run(record(before)) == [1, 2, 3, 4, 5]
    _Flaky.down = True
    assert asyncio.run(record(during, rows=True)) == [SPOOLED] * 30  # acknowledged
    assert rec.spooling and spool.pending_records == 30
    _Flaky.down = False
    assert rec.wait_replayed(10)
    after = asyncio.run(record([make_exchange("c-0", account_id="acct-9")]))
    assert after == [36]
    rec.close()
    assert rec.stats.spooled == 30 and rec.stats.replayed == 30

    store = open_store(url)
    try:
        ids = [s.exchange.exchange_id for batch in store.iter_exchanges() for s in batch]
        assert ids == [e.exchange_id for e in before + during] + ["c-0"]  # in order, once
        assert Ledger.open(store).size == 36
        assert _actions(store) == 30
        stored = store.get_exchange("b-7")
        assert stored is not None and stored.exchange.messages == during[7].messages
    finally:
        store.close()


def test_a_replay_interrupted_before_its_cursor_moved_adds_nothing_twice(
    tmp_path: Path, flaky: None
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    spool = ExchangeSpool(tmp_path / "spool")
    rec = _recorder(url, spool)
    exchanges = [make_exchange(f"x-{i}", account_id="acct-0") for i in range(6)]
    _Flaky.down = True

    async def go() -> None:
        for e in exchanges:
            await rec.record(e, account=make_account("acct-0"), rows=(_action(e.exchange_id),))

    asyncio.run(go())
    _Flaky.down = False
    assert rec.wait_replayed(10)
    rec.close()
    # the crash: the records were committed but the cursor file still points before them
    (tmp_path / "spool" / "cursor").unlink()
    again = ExchangeSpool(tmp_path / "spool")
    assert again.pending_records == 6
    rec2 = _recorder(url, again)
    # rec2 starts spooling and replays at once (it may have finished before we look: no race on
    # rec2.spooling); what counts is that it replayed the records and that none went in twice
    assert rec2.wait_replayed(10)
    assert again.pending_records == 0
    rec2.close()
    store = open_store(url)
    try:
        assert store.count("exchanges") == 6 and Ledger.open(store).size == 6
        assert _actions(store) == 6
    finally:
        store.close()


def test_without_a_spool_an_unreachable_store_fails_the_request(
    tmp_path: Path, flaky: None
) -> None:
    rec = _recorder(f"sqlite:///{tmp_path / 'store.sqlite'}", None)
    _Flaky.down = True
    with pytest.raises(StorageError, match="could not be recorded"):
        asyncio.run(rec.record(make_exchange("e-0"), account=make_account("acct-0")))
    rec.close()


def test_a_full_spool_fails_the_request_instead_of_answering_it_unrecorded(
    tmp_path: Path, flaky: None
) -> None:
    spool = ExchangeSpool(tmp_path / "spool", max_bytes=1 << 16)
    rec = _recorder(f"sqlite:///{tmp_path / 'store.sqlite'}", spool)
    _Flaky.down = True

    async def go() -> int:
        acknowledged = 0
        for i in range(200):
            try:
                await rec.record(make_exchange(f"e-{i}"), account=make_account("acct-0"))
            except StorageError:
                return acknowledged
            acknowledged += 1
        return acknowledged

    acknowledged = asyncio.run(go())
    assert 0 < acknowledged < 200 and spool.pending_records == acknowledged
    rec.close()


def test_what_counts_as_unreachable() -> None:
    import psycopg

    assert store_unreachable(psycopg.OperationalError("server closed the connection"))
    assert store_unreachable(ConnectionRefusedError())
    assert not store_unreachable(psycopg.errors.UniqueViolation("dup"))
    assert not store_unreachable(ValueError("bad value"))


# -- limits and nonces ----------------------------------------------------------------------------


class _Down:
    """A limiter or nonce cache whose backend does not answer while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.inner = MemoryRateLimiter()
        self.nonces = MemoryNonceCache()

    async def aacquire(self, checks: Any) -> Any:
        if self.down:
            raise StorageError("redis down")
        return await self.inner.aacquire(checks)

    async def acharge(self, checks: Any) -> None:
        if self.down:
            raise StorageError("redis down")
        await self.inner.acharge(checks)

    async def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        if self.down:
            raise StorageError("redis down")
        return self.nonces.check_and_store(key, ttl_s=ttl_s)


def test_limits_fall_back_to_the_replicas_own_and_back() -> None:
    primary = _Down()
    states: list[bool] = []
    now = [0.0]
    limiter = FailoverRateLimiter(
        primary,  # type: ignore[arg-type]
        retry_s=1.0,
        on_state=states.append,
        clock=lambda: now[0],
    )
    check = Check("rpm", "k", Limit(rate=60, period_s=60, burst=2))

    async def decide(n: int) -> list[bool]:
        return [(await limiter.aacquire([check])).allowed for _ in range(n)]

    assert asyncio.run(decide(4)) == [True, True, False, False]  # enforced locally
    assert states == [True] and limiter.degraded
    primary.down = False
    assert asyncio.run(decide(1)) == [False]  # not retried before retry_s
    now[0] = 1.5
    assert asyncio.run(decide(3)) == [True, True, False]  # the primary's own budget
    assert states == [True, False] and not limiter.degraded


def test_nonces_fall_back_to_the_replicas_own_cache() -> None:
    primary = _Down()
    primary.down = False
    states: list[bool] = []
    now = [0.0]
    cache = FailoverNonceCache(
        primary, MemoryNonceCache(), retry_s=1.0, on_state=states.append, clock=lambda: now[0]
    )

    async def check(key: str) -> bool:
        return await cache.check_and_store(key, ttl_s=60)

    assert asyncio.run(check("n1"))
    primary.down = True
    assert not asyncio.run(check("n1"))  # seen before the outage: still a replay
    assert asyncio.run(check("n2")) and not asyncio.run(check("n2"))
    assert states == [True]
    primary.down = False
    now[0] = 2.0
    assert asyncio.run(check("n3")) and states == [True, False]


# -- through the gateway --------------------------------------------------------------------------


def _gateway(tmp_path: Path, mode: str, **kwargs: Any) -> tuple[Any, Any, str]:
    from distillguard.app import create_gateway
    from distillguard.gateway.agents import AgentFactory
    from distillguard.gateway.testing import make_settings

    settings = make_settings(tmp_path, failure_mode=mode, spool_retry_s=0.05)
    gw = create_gateway(settings, **kwargs)
    return gw, AgentFactory.from_settings(settings).issue("acct-fm"), settings.store_url


def test_open_mode_answers_while_the_store_is_down_and_replays_after(
    tmp_path: Path, flaky: None
) -> None:
    import httpx

    from distillguard.gateway.testing import chat_body, client

    gw, agent, url = _gateway(tmp_path, "open")

    async def go() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with client(gw, agent) as c:
            _Flaky.down = True
            answers = [
                await c.post("/v1/chat/completions", json=chat_body(f"q{i}")) for i in range(5)
            ]
            ready = await c.get("/readyz")
            metrics = await c.get("/metrics")
            return answers, ready, metrics

    try:
        answers, ready, metrics = asyncio.run(go())
        assert [r.status_code for r in answers] == [200] * 5
        assert ready.status_code == 200 and ready.json()["checks"]["spooling"] is True
        assert metrics.status_code == 200
        sample = gw.metrics.registry.get_sample_value
        assert sample("distillguard_gateway_spool_records") == 5
        assert sample("distillguard_gateway_spooled_total") == 5
        assert sample("distillguard_gateway_degraded", {"dependency": "store"}) == 1
        _Flaky.down = False
        assert gw.core.recorder.wait_replayed(10)
        ids = {r.headers["x-distillguard-exchange-id"] for r in answers}
    finally:
        gw.close_sync()
    store = open_store(url)
    try:
        assert all(store.get_exchange(i) is not None for i in ids)
        assert Ledger.open(store).size == store.count("exchanges") == 5
    finally:
        store.close()


def test_closed_mode_refuses_with_retry_after(tmp_path: Path, flaky: None) -> None:
    import httpx

    from distillguard.gateway.testing import chat_body, client

    broken = _Down()
    gw, agent, _ = _gateway(tmp_path, "closed", limiter=broken)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client(gw, agent) as c:
            limited = await c.post("/v1/chat/completions", json=chat_body())
            broken.down = False
            _Flaky.down = True
            unstored = await c.post("/v1/chat/completions", json=chat_body())
            return limited, unstored

    try:
        limited, unstored = asyncio.run(go())
    finally:
        _Flaky.down = False
        gw.close_sync()
    assert limited.status_code == 503 and limited.headers["retry-after"] == "5"
    assert limited.json()["error"]["code"] == "rate_limiter_unavailable"
    assert unstored.status_code == 503 and unstored.headers["retry-after"] == "5"
    assert unstored.json()["error"]["code"] == "storage_unavailable"


def test_open_mode_readiness_does_not_wait_for_a_hung_store(tmp_path: Path) -> None:
    """A store that does not answer (a ping stuck in the pool's timeout) leaves /readyz 200
    within about 2 s in open mode: the orchestrator keeps the replica."""
    import time

    gw, _, _ = _gateway(tmp_path, "open")
    gw._store_ready = lambda: time.sleep(10)
    try:
        started = time.monotonic()
        ok, checks = gw.ready()
        took = time.monotonic() - started
    finally:
        gw.close_sync()
    assert ok and checks["store"] is False and checks["spooling"] is False
    assert took < 5


def test_a_passport_first_seen_while_the_store_is_down_is_refused_at_once(
    tmp_path: Path, flaky: None
) -> None:
    """Registry in the store, the store known down (the recorder found it unreachable): an
    agent never seen before gets 503 with Retry-After without a registry lookup; a known one is
    served (open mode)."""
    import time

    import httpx

    from distillguard.app import create_gateway
    from distillguard.gateway.agents import AgentFactory
    from distillguard.gateway.testing import chat_body, client, make_settings

    settings = make_settings(
        tmp_path, failure_mode="open", spool_retry_s=60, passport={"registry": "store"}
    )
    gw = create_gateway(settings)
    with AgentFactory.from_settings(settings) as factory:
        known, new = factory.issue("acct-known"), factory.issue("acct-new")

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response, float]:
        async with client(gw, known) as c:
            first = await c.post("/v1/chat/completions", json=chat_body("a"))
            _Flaky.down = True
            during = await c.post("/v1/chat/completions", json=chat_body("b"))
        started = time.monotonic()
        async with client(gw, new) as c:
            refused = await c.post("/v1/chat/completions", json=chat_body("c"))
        return first, during, refused, time.monotonic() - started

    try:
        first, during, refused, took = asyncio.run(go())
    finally:
        _Flaky.down = False
        gw.close_sync()
    assert first.status_code == 200 and during.status_code == 200  # spooled
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert took < 2
