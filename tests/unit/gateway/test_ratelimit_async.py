"""The rate limiter from an event loop: redis.asyncio against the real Redis, the Redis Cluster
key layout (one hash slot per script call), and no event-loop stall while Redis is slow or gone."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import StorageError
from distillguard.gateway.ratelimit import (
    Check,
    Decision,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)

# --- Redis Cluster key slots, written from the cluster specification ----------------------------


def crc16_xmodem(data: bytes) -> int:
    """CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0, no reflection (the cluster's CRC)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """The hash slot of ``key``: CRC16 of the hash tag (first ``{...}`` non-empty) mod 16384."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % 16384


def test_crc16_matches_the_specification_vector() -> None:
    # the Redis Cluster specification gives CRC16("123456789") = 0x31C3
    assert crc16_xmodem(b"123456789") == 0x31C3
    # and its examples of hash tags
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16_xmodem(b"foo{}{bar}") % 16384
    assert key_slot("foo{{bar}}zap") == crc16_xmodem(b"{bar") % 16384


def _checks(keys: list[str]) -> list[Check]:
    return [Check(f"c{i}", k, Limit(10, 60, 5)) for i, k in enumerate(keys)]


def test_old_layout_would_span_slots() -> None:
    """The keys of one gateway decision (passport, account, aggregates) without the hash tag
    land in several slots: Redis Cluster would answer CROSSSLOT."""
    keys = ["pp:abc", "acct:alice", "acct-tok:alice", "net:203.0.113.0/24"]
    assert len({key_slot("dg:rl:" + k) for k in keys}) > 1


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(
        st.characters(blacklist_characters="{}", codec="utf-8"), min_size=1, max_size=20
    ),
    keys=st.lists(st.text(st.characters(codec="utf-8"), max_size=40), min_size=1, max_size=8),
)
def test_every_key_of_a_call_maps_to_one_slot(prefix: str, keys: list[str]) -> None:
    import redis.crc

    rl = RedisRateLimiter(aclient_factory=lambda: None, prefix=prefix)
    redis_keys = rl.redis_keys(_checks(keys))
    slots = {key_slot(k) for k in redis_keys}
    assert len(slots) == 1
    # the slot of the deployment's prefix
    assert slots == {crc16_xmodem(prefix.encode()) % 16384}
    # redis-py's own slot function agrees with the one written from the specification
    assert {redis.crc.key_slot(k.encode()) for k in redis_keys} == slots


def test_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisRateLimiter(aclient_factory=lambda: None, prefix="dg:{x}:")
    with pytest.raises(ValueError, match="non-empty"):  # "{}" would hash the whole key
        RedisRateLimiter(aclient_factory=lambda: None, prefix="")
    with pytest.raises(ValueError, match="client"):
        RedisRateLimiter(prefix="dg:")


# --- redis.asyncio against the real server ---------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"dg:test:arl:{uuid.uuid4().hex}:"
    yield prefix
    for key in client.scan_iter("{" + prefix + "}*"):
        client.delete(key)
    client.close()


@pytest.mark.redis
def test_async_redis_same_decisions_as_memory(redis_prefix: str) -> None:
    async def decisions(rl: RateLimiter) -> list[Decision]:
        check = Check("account", "a", Limit(rate=60, period_s=60, burst=5))
        tight = Check("tight", "t", Limit(1, 60, 1))
        loose = Check("loose", "l", Limit(100, 60, 100))
        out = [await rl.aacquire([check]) for _ in range(8)]
        out.append(await rl.aacquire([loose, tight]))
        out.append(await rl.aacquire([loose, tight]))
        out += [await rl.aacquire([loose]) for _ in range(100)]
        await rl.acharge([Check("tok", "k", Limit(1000, 60, 1000), cost=900)])
        out.append(await rl.aacquire([Check("tok", "k", Limit(1000, 60, 1000), cost=200)]))
        return out

    rl = RedisRateLimiter.from_url("redis://127.0.0.1:6379/0", prefix=redis_prefix)

    async def both() -> tuple[list[Decision], list[Decision]]:
        try:
            return await decisions(rl), await decisions(MemoryRateLimiter())
        finally:
            await rl.aclose()

    got, expected = asyncio.run(both())
    assert [d.allowed for d in got] == [d.allowed for d in expected]
    assert [d.limited_by for d in got] == [d.limited_by for d in expected]
    assert [d.allowed for d in got[:8]] == [True] * 5 + [False] * 3
    # the refused loose+tight pair charged nothing: 99 more loose ones fit, the 100th does not
    assert sum(d.allowed for d in got[10:110]) == 99
    assert not got[-1].allowed  # 900 charged + 200 asked > 1000


@pytest.mark.redis
def test_async_redis_is_atomic_across_replicas(redis_prefix: str) -> None:
    """Two limiters (two replicas) racing on one loop admit exactly the burst."""
    check = Check("shared", "s", Limit(rate=1, period_s=3600, burst=40))
    a = RedisRateLimiter.from_url("redis://127.0.0.1:6379/0", prefix=redis_prefix)
    b = RedisRateLimiter.from_url("redis://127.0.0.1:6379/0", prefix=redis_prefix)

    async def go() -> list[bool]:
        try:
            out = await asyncio.gather(*((a if i % 2 else b).aacquire([check]) for i in range(200)))
            return [d.allowed for d in out]
        finally:
            await a.aclose()
            await b.aclose()

    admitted = asyncio.run(go())
    assert sum(admitted) == 40 and len(admitted) == 200


@pytest.mark.redis
def test_one_limiter_serves_several_event_loops(redis_prefix: str) -> None:
    """redis.asyncio binds connections to a loop: the limiter makes one client per loop, so
    a second asyncio.run (or a loop in another thread) does not fail with 'attached to a
    different loop'."""
    rl = RedisRateLimiter.from_url("redis://127.0.0.1:6379/0", prefix=redis_prefix)
    check = Check("account", "loops", Limit(rate=60, period_s=60, burst=3))
    first = asyncio.run(rl.aacquire([check]))
    second = asyncio.run(rl.aacquire([check]))
    results: list[Decision] = []
    t = threading.Thread(target=lambda: results.append(asyncio.run(rl.aacquire([check]))))
    t.start()
    t.join()
    fourth = asyncio.run(rl.aacquire([check]))
    assert [first.allowed, second.allowed, results[0].allowed, fourth.allowed] == [
        True,
        True,
        True,
        False,
    ]


# --- the event loop keeps running while Redis is slow or unreachable -------------------------


class Blackhole:
    """A TCP server that accepts connections and never answers (a stalled Redis)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def _max_loop_lag(work: asyncio.Future[Any], tick_s: float = 0.005) -> float:
    """Largest delay of a ``tick_s`` sleep past its due time while ``work`` runs."""
    worst = 0.0
    while not work.done():
        t0 = time.perf_counter()
        await asyncio.sleep(tick_s)
        worst = max(worst, time.perf_counter() - t0 - tick_s)
    return worst


def _lag_while(
    rl: RedisRateLimiter, *, use_async: bool, n: int = 20
) -> tuple[float, list[BaseException]]:
    check = Check("account", "lag", Limit(10, 60, 5))

    async def one() -> BaseException | None:
        try:
            if use_async:
                await rl.aacquire([check])
            else:
                rl.acquire([check])  # the old path: a blocking call inside the handler
        except StorageError as exc:
            return exc
        return None

    async def go() -> tuple[float, list[BaseException]]:
        loop = asyncio.get_running_loop()
        ticker_started = loop.create_future()

        async def calls() -> list[BaseException | None]:
            await ticker_started
            return list(await asyncio.gather(*(one() for _ in range(n))))

        work = asyncio.ensure_future(calls())

        async def measure() -> float:
            ticker_started.set_result(None)
            return await _max_loop_lag(work)

        lag = await measure()
        errors = [e for e in await work if e is not None]
        return lag, errors

    # a full collection of the test process's large heap pauses the loop for up to half a
    # second on a loaded machine (the gateway freezes its start-up heap: tune_gc_for_serving);
    # what is measured here is I/O blocking, so the collector is held off meanwhile
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(go())
    finally:
        gc.enable()


@pytest.mark.parametrize("kind", ["stalled", "refused"])
def test_slow_or_unreachable_redis_does_not_block_the_loop(kind: str) -> None:
    """20 concurrent decisions against a Redis that never answers (or refuses connections):
    each fails as StorageError (the gateway answers 503), together within about one timeout,
    and the event loop keeps ticking meanwhile. Blocking calls would stall it for 20 timeouts
    (see the next test); the bound on the stall is a quarter of one timeout, room for a
    loaded CI machine's scheduling."""
    hole = Blackhole() if kind == "stalled" else None
    port = hole.port if hole is not None else _free_port()
    timeout = 1.0
    try:
        rl = RedisRateLimiter.from_url(
            f"redis://127.0.0.1:{port}/0", prefix="dg:test:lag:", timeout_s=timeout
        )
        t0 = time.perf_counter()
        lag, errors = _lag_while(rl, use_async=True)
        elapsed = time.perf_counter() - t0
        assert len(errors) == 20
        assert all("rate limit store is unavailable" in str(e) for e in errors)
        assert elapsed < 5 * timeout  # concurrently, not 20 timeouts one after the other
        if kind == "stalled":
            assert elapsed >= timeout * 0.9  # they did wait for the timeout
        assert lag < timeout / 4, f"event loop stalled {lag * 1000:.0f} ms"
    finally:
        if hole is not None:
            hole.close()


def test_the_lag_probe_sees_a_blocking_call() -> None:
    """The measurement is sensitive: the blocking client called in the loop (the code before)
    stalls it for the timeout of every call, one after the other."""
    hole = Blackhole()
    try:
        rl = RedisRateLimiter.from_url(
            f"redis://127.0.0.1:{hole.port}/0", prefix="dg:test:lag:", timeout_s=0.3
        )
        lag, errors = _lag_while(rl, use_async=False, n=4)
        assert len(errors) == 4
        assert lag >= 4 * 0.3 * 0.9
    finally:
        hole.close()
