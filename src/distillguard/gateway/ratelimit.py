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
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from distillguard.errors import StorageError

__all__ = [
    "Check",
    "Decision",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
]


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
    """A GCRA rate limiter backend."""

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (and charge every check) or refuse (and charge nothing)."""
        ...

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally (tokens known after the response)."""
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


class RedisRateLimiter:
    """GCRA in Redis: one Lua script per decision (atomic across replicas).

    Args:
        client: a ``redis.Redis`` client.
        prefix: key prefix (one per deployment, or per test).
    """

    def __init__(self, *, client: Any, prefix: str = "dg:rl:") -> None:
        self._client = client
        self.prefix = prefix
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "dg:rl:") -> RedisRateLimiter:
        """Connect to the Redis at ``url``."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client=client, prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(prefix={self.prefix!r})"

    def _run(self, checks: Sequence[Check], *, acquire: bool) -> list[Any]:
        import redis

        keys = [self.prefix + c.key for c in checks]
        args: list[Any] = ["1" if acquire else "0"]
        for c in checks:
            args += [repr(c.limit.interval_us), repr(c.limit.tolerance_us), repr(float(c.cost))]
        try:
            return list(self._script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise StorageError(
                f"the rate limit store is unavailable: {type(exc).__name__}",
                hint="check that Redis runs at the configured gateway.redis_url",
            ) from None

    def acquire(self, checks: Sequence[Check]) -> Decision:
        """Admit (charging every check) or refuse (charging none)."""
        if not checks:
            return Decision(True)
        allowed, worst, over = self._run(checks, acquire=True)
        if int(allowed):
            return Decision(True)
        over_us = float(over.decode() if isinstance(over, bytes) else over)
        return Decision(False, checks[int(worst) - 1].name, math.ceil(over_us / 1e3) / 1e3)

    def charge(self, checks: Sequence[Check]) -> None:
        """Charge unconditionally."""
        if checks:
            self._run(checks, acquire=False)
