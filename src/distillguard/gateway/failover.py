"""Failure mode open for the passport nonce cache: a replica's own cache while Redis is down;
and a passport registry that is not waited on while the store is known to be down.

:class:`FailoverNonceCache` asks the shared (Redis) cache first; when it cannot answer, this
process's :class:`~distillguard.passport.MemoryNonceCache` decides, so that a request is not
refused for want of Redis. What that costs: while Redis is down, a signed request replayed to
*another* replica within the signature window is accepted there (each replica still refuses a
replay it has seen). Nonces stored only in memory are not copied to Redis when it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from distillguard.errors import StorageError

__all__ = ["FailoverNonceCache", "GuardedRegistry"]

logger = logging.getLogger(__name__)


class FailoverNonceCache:
    """An async nonce cache that falls back to an in-process one (see the module).

    Args:
        primary: the shared cache (``check_and_store`` a coroutine or a plain method).
        fallback: the in-process cache.
        retry_s: how long the fallback decides before the primary is tried again.
        on_state: called with True when the fallback takes over, False when the primary is back.
    """

    def __init__(
        self,
        primary: Any,
        fallback: Any,
        *,
        retry_s: float = 1.0,
        on_state: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry_s = retry_s
        self._on_state = on_state
        self._clock = clock
        self._down_until = 0.0
        self.degraded = False

    def __repr__(self) -> str:
        return f"FailoverNonceCache({self.primary!r}, degraded={self.degraded})"

    async def check_and_store(self, key: str, *, ttl_s: int) -> bool:
        """True if ``key`` is new (stored), False if it was seen (a replay)."""
        if not self.degraded or self._clock() >= self._down_until:
            try:
                result = self.primary.check_and_store(key, ttl_s=ttl_s)
                if not isinstance(result, bool):
                    result = await result
            except StorageError as exc:
                self._down_until = self._clock() + self.retry_s
                if not self.degraded:
                    self.degraded = True
                    logger.warning("nonces fall back to this replica's own cache: %s", exc)
                    if self._on_state is not None:
                        self._on_state(True)
            else:
                if self.degraded:
                    self.degraded = False
                    logger.warning("nonces are shared again")
                    if self._on_state is not None:
                        self._on_state(False)
                # remember it here too: a replay sent while Redis is down again is still seen
                self.fallback.check_and_store(key, ttl_s=ttl_s)
                return bool(result)
        return bool(self.fallback.check_and_store(key, ttl_s=ttl_s))

    async def aclose(self) -> None:
        """Close the primary."""
        close = getattr(self.primary, "aclose", None)
        if close is not None:
            await close()


class GuardedRegistry:
    """A passport registry in the store that answers at once while the store is known down.

    The verifier looks a passport it has not seen yet up in the registry from the event loop;
    with the store's server gone that lookup would wait for the connection pool's timeout and
    stall every request meanwhile. While ``down()`` (the recorder found the store unreachable)
    :meth:`get` raises :class:`~distillguard.errors.StorageError` at once instead (the request
    is refused 503; passports already seen are not looked up). Everything else is passed on.
    """

    def __init__(self, registry: Any, down: Callable[[], bool]) -> None:
        self._registry = registry
        self._down = down

    def __repr__(self) -> str:
        return f"GuardedRegistry({self._registry!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def get(self, passport_id: str) -> Any:
        """The registry's record, unless the store is known to be down."""
        if self._down():
            raise StorageError("the passport registry's store is unreachable")
        return self._registry.get(passport_id)
