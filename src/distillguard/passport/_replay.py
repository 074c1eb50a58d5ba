"""Nonce replay caches: each signature nonce is accepted once while the signature is valid.

A nonce is remembered until its signature can no longer verify (``expires`` plus the clock-skew
allowance), so the cache needs room for (requests per second) × (window + skew) entries.

* :class:`MemoryNonceCache`: in process, bounded, for one verifier process.
* :class:`RedisNonceCache`: ``SET key 1 NX EX ttl`` in Redis, so that several gateway replicas
  share one view and a request replayed to another replica is caught.
* :class:`AsyncRedisNonceCache`: the same with ``redis.asyncio``, for
  :meth:`~distillguard.passport.RequestVerifier.averify` in an event loop (the ASGI middleware),
  so that the Redis round trip does not block the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

from distillguard.errors import StorageError

__all__ = [
    "AsyncNonceCache",
    "AsyncRedisNonceCache",
    "MemoryNonceCache",
    "NonceCache",
    "RedisNonceCache",
]

logger = logging.getLogger(__name__)


class NonceCache(Protocol):
    """Remembers nonces for a while; thread-safe."""

    def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; True if it was new, False if seen (a replay)."""
        ...


class AsyncNonceCache(Protocol):
    """A nonce cache awaited from an event loop (see :meth:`RequestVerifier.averify`)."""

    async def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; True if it was new, False if seen (a replay)."""
        ...


class MemoryNonceCache:
    """An in-process nonce cache, bounded to ``max_entries``.

    Entries are kept in expiry order and dropped once expired. When full, the oldest entry is
    dropped early and counted in :attr:`evicted` (size the cache so that this stays zero: an
    early-dropped nonce could be replayed until its signature expires).

    Args:
        max_entries: the bound.
        clock: the time source (seconds), for tests.
    """

    def __init__(self, *, max_entries: int = 1_000_000, clock: Any = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """Record ``key``; True if new, False if it is still remembered."""
        now = self._clock()
        entries = self._entries
        with self._lock:
            while entries:
                first_key, first_exp = next(iter(entries.items()))
                if first_exp > now:
                    break
                del entries[first_key]
            expiry = entries.get(key)
            if expiry is not None and expiry > now:
                return False
            entries[key] = now + max(ttl_s, 1)
            # keep (approximate) expiry order: a longer TTL goes to the end anyway
            if len(entries) > self.max_entries:
                entries.popitem(last=False)
                self.evicted += 1
            return True


class RedisNonceCache:
    """A nonce cache in Redis shared by every replica.

    Args:
        client: a ``redis.Redis`` client (``redis.Redis.from_url(url)``).
        prefix: key prefix, e.g. ``dg:nonce:``; give each deployment its own.
    """

    def __init__(self, *, client: Any, prefix: str = "dg:nonce:") -> None:
        self._client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "dg:nonce:") -> RedisNonceCache:
        """Connect to the Redis at ``url`` (``redis://127.0.0.1:6379/0``)."""
        import redis

        return cls(client=redis.Redis.from_url(url, socket_timeout=2.0), prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisNonceCache(prefix={self.prefix!r})"

    def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """``SET prefix+key 1 NX EX ttl``: True if it was set (new), False if it existed.

        Raises:
            StorageError: Redis cannot be reached (the verifier then rejects the request rather
                than let a replay through).
        """
        import redis

        try:
            return bool(self._client.set(self.prefix + key, b"1", nx=True, ex=max(int(ttl_s), 1)))
        except redis.RedisError as exc:
            logger.warning("nonce cache: Redis error %s", type(exc).__name__)
            raise StorageError(
                f"nonce cache: Redis is unavailable ({type(exc).__name__})"
            ) from None


class AsyncRedisNonceCache:
    """A nonce cache in Redis shared by every replica, for event loops (``redis.asyncio``).

    Same keys and semantics as :class:`RedisNonceCache`, so both kinds of replica can share one
    Redis and one prefix.

    Args:
        client: a ``redis.asyncio.Redis`` client.
        prefix: key prefix, e.g. ``dg:nonce:``; give each deployment its own.
    """

    def __init__(self, *, client: Any, prefix: str = "dg:nonce:") -> None:
        self._client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "dg:nonce:") -> AsyncRedisNonceCache:
        """A client for the Redis at ``url`` (connects on first use)."""
        import redis.asyncio

        return cls(client=redis.asyncio.Redis.from_url(url, socket_timeout=2.0), prefix=prefix)

    def __repr__(self) -> str:
        return f"AsyncRedisNonceCache(prefix={self.prefix!r})"

    async def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """``SET prefix+key 1 NX EX ttl``: True if it was set (new), False if it existed.

        Raises:
            StorageError: Redis cannot be reached (the verifier then rejects the request).
        """
        import redis

        try:
            return bool(
                await self._client.set(self.prefix + key, b"1", nx=True, ex=max(int(ttl_s), 1))
            )
        except (redis.RedisError, OSError) as exc:
            logger.warning("nonce cache: Redis error %s", type(exc).__name__)
            raise StorageError(
                f"nonce cache: Redis is unavailable ({type(exc).__name__})"
            ) from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
