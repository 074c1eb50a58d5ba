"""Rate limits by GCRA (the generic cell rate algorithm), counting requests and tokens.

A :class:`Limit` allows ``rate`` units per ``period_s`` with a ``burst`` of units at once; a
request is checked against several limits at once (per passport, per account, per aggregate
key such as a cluster or a /24) and is admitted only if *every* limit admits it, in which case
all of them are charged: one atomic decision, never a partial charge.

GCRA keeps one number per key, the theoretical arrival time (TAT): each unit pushes it
``period_s / rate`` seconds into the future, and a request is refused when the TAT would run
further ahead of now than the burst allows. Token counts are only known after the response:
:meth:`RateLimiter.charge` adds them unconditionally (the TAT may then run ahead and the next
requests wait), so a client that asks for long answers is limited by what it actually consumed.

Two backends behind one interface: :class:`MemoryRateLimiter` (one process) and
:class:`RedisRateLimiter` (one Lua script per decision, atomic across replicas, using the Redis
server clock so that replica clocks do not matter).

Every backend answers both from threads (:meth:`RateLimiter.acquire`, :meth:`RateLimiter.charge`)
and from an event loop (:meth:`RateLimiter.aacquire`, :meth:`RateLimiter.acharge`). The gateway
uses the ``a`` methods: the Redis backend then talks through ``redis.asyncio``, so a slow or
unreachable Redis delays only the requests that wait for it (at most ``timeout_s``, then
:class:`~distillguard.errors.StorageError`) and never blocks the event loop.

Redis Cluster: every key of one script call carries the same hash tag (``{prefix}``), so the
script never spans slots (no ``CROSSSLOT``). All limit keys of a deployment therefore live on one
shard; one Redis shard runs on the order of 100,000 such scripts a second, far above what the
gateway replicas ask. Use a different ``prefix`` per deployment to spread deployments over slots.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from distillguard.errors import StorageError

__all__ = [
    "Check",
    "Decision",
    "FailoverRateLimiter",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` units per ``period_s`` seconds, ``burst`` units at once.

    Raises:
        ValueError: a non-positive value.
    """

    rate: float
    period_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.period_s <= 0 or self.burst <= 0:
            raise ValueError("rate, period_s and burst must be positive")

    @property
    def interval_us(self) -> float:
        """Microseconds one unit pushes the TAT forward."""
        return self.period_s * 1e6 / self.rate

    @property
    def tolerance_us(self) -> float:
        """How far the TAT may run ahead of now (the burst)."""
        return self.burst * self.interval_us

    def scaled(self, factor: float) -> Limit:
        """This limit with ``rate`` and ``burst`` multiplied by ``factor`` (throttling)."""
        return Limit(
            rate=max(self.rate * factor, 1e-9),
            period_s=self.period_s,
            burst=max(self.burst * factor, 1.0),
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One limit applied to one key with a cost (1 for a request, n for tokens)."""

    name: str
    key: str
    limit: Limit
    cost: float = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`RateLimiter.acquire`."""

    allowed: bool
    limited_by: str | None = None
    retry_after_s: float = 0.0


class RateLimiter(Protocol):
    """A GCRA rate limiter backend.

    The ``a`` methods are for event loops and never block them; the others are for threads.
    Both raise :class:`~distillguard.errors.StorageError` when the backend is unreachable.
    """

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (and charge every check) or refuse (and charge nothing)."""
        ...

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally (tokens known after the response)."""
        ...

    async def aacquire(self, checks: Sequence[Check]) -> Decision:
        """:meth:`acquire` for an event loop (does not block it)."""
        ...

    async def acharge(self, checks: Sequence[Check]) -> None:
        """:meth:`charge` for an event loop (does not block it)."""
        ...


_EPSILON_US = 1e-3  # float rounding of microsecond sums: a nanosecond is not a refusal


def _gcra(tat: float, now: float, limit: Limit, cost: float) -> tuple[float, float]:
    """New TAT and how long past the tolerance it would be (<= epsilon: allowed)."""
    new_tat = max(tat, now) + cost * limit.interval_us
    return new_tat, new_tat - now - limit.tolerance_us


class MemoryRateLimiter:
    """In-process GCRA (thread-safe); keys expire when their TAT is in the past.

    Args:
        clock: time source in seconds (monotonic).
        max_keys: when more keys are held, those whose TAT has passed are dropped.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000_000
    ) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._max_keys = max_keys

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(keys={len(self._tat)})"

    def _sweep(self, now: float) -> None:
        if len(self._tat) > self._max_keys:
            self._tat = {k: v for k, v in self._tat.items() if v > now}

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (charging every check) or refuse (charging none)."""
        now = self._clock() * 1e6
        with self._lock:
            updates: list[tuple[str, float]] = []
            worst: tuple[float, str] | None = None
            for c in checks:
                new_tat, over = _gcra(self._tat.get(c.key, 0.0), now, c.limit, c.cost)
                if over > _EPSILON_US and (worst is None or over > worst[0]):
                    worst = (over, c.name)
                updates.append((c.key, new_tat))
            if worst is not None:
                return Decision(False, worst[1], worst[0] / 1e6)
            for key, tat in updates:
                self._tat[key] = tat
            self._sweep(now)
        return Decision(True)

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally."""
        now = self._clock() * 1e6
        with self._lock:
            for c in checks:
                self._tat[c.key] = _gcra(self._tat.get(c.key, 0.0), now, c.limit, c.cost)[0]

    async def aacquire(self, checks: Sequence[Check]) -> Decision:
        """:meth:`acquire` (no I/O: a dictionary update under an uncontended lock)."""
        return self.acquire(checks)

    async def acharge(self, checks: Sequence[Check]) -> None:
        """:meth:`charge` (no I/O)."""
        self.charge(checks)

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS: the keys; ARGV: mode (1 acquire, 0 charge), then per key: interval_us, tolerance_us,
# cost. Returns {allowed, index of the worst limit (1-based, 0 none), microseconds to wait}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local acquire = ARGV[1] == '1'
local n = #KEYS
local tats = {}
local worst, worst_over = 0, 0
for i = 1, n do
  local interval = tonumber(ARGV[3 * i - 1])
  local tolerance = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local over = new_tat - now - tolerance
  if acquire and over > 0.001 and over > worst_over then
    worst, worst_over = i, over
  end
  tats[i] = new_tat
end
if worst > 0 then
  return {0, worst, tostring(worst_over)}
end
for i = 1, n do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
end
return {1, 0, '0'}
"""


_UNAVAILABLE_HINT = "check that Redis runs at the configured gateway.redis_url"


def _unavailable(exc: BaseException) -> StorageError:
    return StorageError(
        f"the rate limit store is unavailable: {type(exc).__name__}", hint=_UNAVAILABLE_HINT
    )


def _decision(checks: Sequence[Check], reply: Sequence[Any]) -> Decision:
    allowed, worst, over = reply
    if int(allowed):
        return Decision(True)
    over_us = float(over.decode() if isinstance(over, bytes) else over)
    return Decision(False, checks[int(worst) - 1].name, math.ceil(over_us / 1e3) / 1e3)


class RedisRateLimiter:
    """GCRA in Redis: one Lua script per decision (atomic across replicas).

    Keys are laid out for Redis Cluster: ``{prefix}`` then the check's key, so every key of a
    script call hashes to the slot of ``prefix`` (see :meth:`redis_keys`).

    Args:
        client: a ``redis.Redis`` (or ``redis.RedisCluster``) client, for :meth:`acquire` and
            :meth:`charge` from threads.
        aclient: a ``redis.asyncio`` client, for :meth:`aacquire` and :meth:`acharge` from the
            event loop that first uses it (redis-py binds connections to one loop).
        aclient_factory: makes a ``redis.asyncio`` client; one is made for each event loop
            that calls the ``a`` methods (what :meth:`from_url` uses: a process that runs
            several loops, one after the other or in threads, never shares a connection).
        prefix: the hash tag of every key (one per deployment, or per test): non-empty,
            without ``{`` or ``}``.

    Without an ``aclient`` or ``aclient_factory`` the ``a`` methods run the blocking client
    in a worker thread (the loop is not blocked, but each waiting call holds a thread).

    Raises:
        ValueError: no client at all, or an empty ``prefix`` or one with braces.
    """

    def __init__(
        self,
        *,
        client: Any = None,
        aclient: Any = None,
        aclient_factory: Callable[[], Any] | None = None,
        prefix: str = "dg:rl:",
    ) -> None:
        if client is None and aclient is None and aclient_factory is None:
            raise ValueError("RedisRateLimiter needs a client, an aclient or an aclient_factory")
        if not prefix or "{" in prefix or "}" in prefix:
            # an empty tag ("{}") hashes the whole key: the keys of one call would span slots
            raise ValueError(f"the rate limit prefix must be non-empty, without braces: {prefix!r}")
        self._client = client
        self.prefix = prefix
        self._script = client.register_script(_LUA) if client is not None else None
        self._factory = aclient_factory
        self._fixed = (aclient, aclient.register_script(_LUA)) if aclient is not None else None
        # per loop: client, script, initialised, the lock of the initialisation
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, Any, asyncio.Event, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "dg:rl:",
        timeout_s: float = 2.0,
        cluster: bool = False,
    ) -> RedisRateLimiter:
        """Clients (blocking and ``redis.asyncio``) for the Redis at ``url``.

        Args:
            url: ``redis://host:port/db`` (``rediss://`` for TLS).
            prefix: see the class.
            timeout_s: connect and read timeout of one call; a slower Redis is reported as
                unavailable (:class:`StorageError`) after it.
            cluster: ``url`` names a node of a Redis Cluster.
        """
        import redis
        import redis.asyncio

        opts: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        if cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

            return cls(
                client=redis.RedisCluster.from_url(url, **opts),
                aclient_factory=lambda: AsyncRedisCluster.from_url(url, **opts),
                prefix=prefix,
            )
        return cls(
            client=redis.Redis.from_url(url, **opts),
            aclient_factory=lambda: redis.asyncio.Redis.from_url(url, **opts),
            prefix=prefix,
        )

    def __repr__(self) -> str:
        return f"RedisRateLimiter(prefix={self.prefix!r})"

    def redis_keys(self, checks: Sequence[Check]) -> list[str]:
        """The Redis keys of ``checks``: ``{prefix}key``, all in the hash slot of ``prefix``."""
        tag = "{" + self.prefix + "}"
        return [tag + c.key for c in checks]

    @staticmethod
    def _args(checks: Sequence[Check], *, acquire: bool) -> list[Any]:
        args: list[Any] = ["1" if acquire else "0"]
        for c in checks:
            args += [repr(c.limit.interval_us), repr(c.limit.tolerance_us), repr(float(c.cost))]
        return args

    def _run(self, checks: Sequence[Check], *, acquire: bool) -> list[Any]:
        import redis

        if self._script is None:
            raise RuntimeError("this RedisRateLimiter has no blocking client: use aacquire")
        try:
            return list(
                self._script(keys=self.redis_keys(checks), args=self._args(checks, acquire=acquire))
            )
        except (redis.RedisError, OSError) as exc:
            raise _unavailable(exc) from None

    async def _loop_script(self) -> Any:
        """The async script of the running loop's client (made on first use), or None.

        The client is initialised (a cluster client reads the slot map) before the first
        call, once, under a lock: redis-py's async cluster client, first used by several tasks
        at once, can fail one of them (``'NoneType' object has no attribute 'writelines'``).
        """
        if self._fixed is not None:
            return self._fixed[1]
        if self._factory is None:
            return None
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(loop)
        if entry is not None and entry[2].is_set():
            return entry[1]
        if entry is None:
            aclient = self._factory()
            entry = (aclient, aclient.register_script(_LUA), asyncio.Event(), asyncio.Lock())
            self._per_loop[loop] = entry
        async with entry[3]:
            if not entry[2].is_set():
                await entry[0].initialize()
                entry[2].set()
        return entry[1]

    async def _arun(self, checks: Sequence[Check], *, acquire: bool) -> list[Any]:
        import redis
        from redis.exceptions import RedisClusterException

        try:
            script = await self._loop_script()
            if script is None:
                return await asyncio.to_thread(self._run, checks, acquire=acquire)
            reply = await script(
                keys=self.redis_keys(checks), args=self._args(checks, acquire=acquire)
            )
        except (redis.RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return list(reply)

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (charging every check) or refuse (charging none); blocks the calling thread."""
        if not checks:
            return Decision(True)
        return _decision(checks, self._run(checks, acquire=True))

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally; blocks the calling thread."""
        if checks:
            self._run(checks, acquire=False)

    async def aacquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (charging every check) or refuse (charging none), awaiting Redis.

        Raises:
            StorageError: Redis did not answer within the timeout, or refused the call.
        """
        if not checks:
            return Decision(True)
        return _decision(checks, await self._arun(checks, acquire=True))

    async def acharge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally, awaiting Redis.

        Raises:
            StorageError: Redis did not answer within the timeout, or refused the call.
        """
        if checks:
            await self._arun(checks, acquire=False)

    async def aclose(self) -> None:
        """Close the blocking client and the running loop's async client.

        Async clients made for other loops are left to the garbage collector (their loops
        may be closed already).
        """
        if self._fixed is not None:
            await self._fixed[0].aclose()
        entry = self._per_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()
        if self._client is not None:
            self._client.close()


class FailoverRateLimiter:
    """Shared limits that fall back to per-replica ones while their backend is down.

    ``[gateway] failure_mode = "open"``: a decision the ``primary`` (Redis) cannot make is made
    by ``fallback`` (this process's :class:`MemoryRateLimiter`) instead, so each replica then
    enforces every limit on its own (an account may get up to replicas x its limit for as long
    as Redis is down). The primary is tried again after ``retry_s``; ``on_state`` is called
    with True when the fallback takes over and False when the primary is back.

    Args:
        primary: the shared limiter.
        fallback: the per-replica limiter (default: a new :class:`MemoryRateLimiter`).
        retry_s: how long the fallback serves before the primary is tried again.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter | None = None,
        *,
        retry_s: float = 1.0,
        on_state: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryRateLimiter()
        self.retry_s = retry_s
        self._on_state = on_state
        self._clock = clock
        self._down_until = 0.0
        self.degraded = False

    def __repr__(self) -> str:
        return f"FailoverRateLimiter({self.primary!r}, degraded={self.degraded})"

    def _use_primary(self) -> bool:
        return not self.degraded or self._clock() >= self._down_until

    def _failed(self, exc: StorageError) -> None:
        self._down_until = self._clock() + self.retry_s
        if not self.degraded:
            self.degraded = True
            logger.warning("rate limits fall back to this replica's own: %s", exc)
            if self._on_state is not None:
                self._on_state(True)

    def _ok(self) -> None:
        if self.degraded:
            self.degraded = False
            logger.warning("rate limits are shared again")
            if self._on_state is not None:
                self._on_state(False)

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit or refuse with the primary, else the fallback."""
        if self._use_primary():
            try:
                decision = self.primary.acquire(checks)
            except StorageError as exc:
                self._failed(exc)
            else:
                self._ok()
                return decision
        return self.fallback.acquire(checks)

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge with the primary, else the fallback."""
        if self._use_primary():
            try:
                self.primary.charge(checks)
            except StorageError as exc:
                self._failed(exc)
            else:
                self._ok()
                return
        self.fallback.charge(checks)

    async def aacquire(self, checks: Sequence[Check]) -> Decision:
        """:meth:`acquire` for an event loop."""
        if self._use_primary():
            try:
                decision = await self.primary.aacquire(checks)
            except StorageError as exc:
                self._failed(exc)
            else:
                self._ok()
                return decision
        return await self.fallback.aacquire(checks)

    async def acharge(self, checks: Sequence[Check]) -> None:
        """:meth:`charge` for an event loop."""
        if self._use_primary():
            try:
                await self.primary.acharge(checks)
            except StorageError as exc:
                self._failed(exc)
            else:
                self._ok()
                return
        await self.fallback.acharge(checks)

    async def aclose(self) -> None:
        """Close both limiters."""
        for limiter in (self.primary, self.fallback):
            close = getattr(limiter, "aclose", None)
            if close is not None:
                await close()
