"""GCRA rate limits: in process and in Redis (the real server), same decisions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import StorageError
from distillguard.gateway.ratelimit import (
    Check,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limit_validates() -> None:
    with pytest.raises(ValueError):
        Limit(0, 60, 1)
    with pytest.raises(ValueError):
        Limit(1, 60, -1)


def test_burst_then_refusal_then_recovery() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(clock=clock)
    check = Check("account", "a", Limit(rate=60, period_s=60, burst=5))
    admitted = sum(rl.acquire([check]).allowed for _ in range(10))
    assert admitted == 5
    refused = rl.acquire([check])
    assert not refused.allowed
    assert refused.limited_by == "account"
    assert 0 < refused.retry_after_s <= 1.0 + 1e-6
    clock.t += refused.retry_after_s + 1e-3
    assert rl.acquire([check]).allowed


def test_refusal_charges_nothing() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(clock=clock)
    loose = Check("loose", "loose", Limit(1000, 60, 1000))
    tight = Check("tight", "tight", Limit(1, 60, 1))
    assert rl.acquire([loose, tight]).allowed
    for _ in range(50):
        d = rl.acquire([loose, tight])
        assert not d.allowed and d.limited_by == "tight"
    # the loose key was never charged by the refusals: 999 more fit in its burst
    assert sum(rl.acquire([loose]).allowed for _ in range(999)) == 999


def test_tokens_are_counted_and_charged_after() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(clock=clock)
    tokens = Limit(rate=1000, period_s=60, burst=1000)
    assert rl.acquire([Check("t", "k", tokens, cost=400)]).allowed
    rl.charge([Check("t", "k", tokens, cost=500)])  # completion tokens
    d = rl.acquire([Check("t", "k", tokens, cost=200)])
    assert not d.allowed  # 400 + 500 + 200 > 1000
    assert rl.acquire([Check("t", "k", tokens, cost=100)]).allowed


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 600),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_rate(rate: int, burst: int, gaps: list[float]) -> None:
    """Over any run, admitted <= burst + rate * elapsed / period (the GCRA bound)."""
    clock = Clock()
    rl = MemoryRateLimiter(clock=clock)
    limit = Limit(rate=rate, period_s=60, burst=burst)
    admitted = 0
    start = clock.t
    for gap in gaps:
        clock.t += gap
        admitted += rl.acquire([Check("x", "x", limit)]).allowed
    elapsed = clock.t - start
    assert admitted <= burst + rate * elapsed / 60 + 1e-6
    assert admitted >= 1  # the first request always fits


@pytest.fixture
def redis_limiter() -> Iterator[RedisRateLimiter]:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"dg:test:rl:{uuid.uuid4().hex}:"
    yield RedisRateLimiter(client=client, prefix=prefix)
    for key in client.scan_iter("{" + prefix + "}*"):
        client.delete(key)


@pytest.mark.redis
def test_redis_same_decisions(redis_limiter: RedisRateLimiter) -> None:
    check = Check("account", "a", Limit(rate=60, period_s=60, burst=5))
    results = [redis_limiter.acquire([check]).allowed for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    d = redis_limiter.acquire([check])
    assert d.limited_by == "account" and 0 < d.retry_after_s <= 1.01
    tight = Check("tight", "t", Limit(1, 60, 1))
    loose = Check("loose", "l", Limit(100, 60, 100))
    assert redis_limiter.acquire([loose, tight]).allowed
    assert not redis_limiter.acquire([loose, tight]).allowed
    assert sum(redis_limiter.acquire([loose]).allowed for _ in range(99)) == 99


@pytest.mark.redis
def test_redis_is_atomic_across_clients(redis_limiter: RedisRateLimiter) -> None:
    """Two limiter objects (two replicas) racing from threads admit exactly the burst."""
    redis = pytest.importorskip("redis")
    other = RedisRateLimiter(
        client=redis.Redis(host="127.0.0.1", port=6379), prefix=redis_limiter.prefix
    )
    check = Check("shared", "s", Limit(rate=1, period_s=3600, burst=40))
    admitted: list[bool] = []
    lock = threading.Lock()

    def run(limiter: RateLimiter) -> None:
        for _ in range(50):
            ok = limiter.acquire([check]).allowed
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=run, args=(lim,)) for lim in (redis_limiter, other) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 40
    assert len(admitted) == 200


@pytest.mark.redis
def test_redis_down_is_a_storage_error() -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    rl = RedisRateLimiter(client=client, prefix="dg:none:")
    with pytest.raises(StorageError):
        rl.acquire([Check("a", "a", Limit(1, 1, 1))])
