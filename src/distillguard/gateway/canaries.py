"""The gateway's canary planter: keyed canary facts, recorded in the store.

The policy's ``canary`` action appends one of the account's canary facts to the answer
(:class:`distillguard.fingerprint.canaries.KeyedCanaryPlanter`, keyed by the keyring's watermark
secret) and records the first planting of each canary in the store's canary registry (table
``fingerprint_canaries``), where ``distillguard fingerprint probe-canaries`` reads what to ask a
suspect about. The planter is reached through the
:class:`~distillguard.gateway.policy.CanaryPlanting` protocol, so another planter can replace it.

Example::

    planter = GatewayCanaries.open(store_url=settings.store_url, key=ring.watermark_key())
    text, canary_id = planter.plant("an answer", "acct-1")
    planter.close()
"""

from __future__ import annotations

import logging

from distillguard.fingerprint.canaries import CanaryGenerator, CanaryRegistry, KeyedCanaryPlanter
from distillguard.keyring import WatermarkKey
from distillguard.store import Store, open_store

__all__ = ["GatewayCanaries"]

logger = logging.getLogger(__name__)


class GatewayCanaries:
    """A :class:`KeyedCanaryPlanter` over its own store connection (closed with :meth:`close`).

    Args:
        planter: the keyed planter (its registry writes through ``store``).
        store: the store connection the registry uses.
    """

    def __init__(self, *, planter: KeyedCanaryPlanter, store: Store) -> None:
        self.planter = planter
        self._store = store

    def __repr__(self) -> str:
        return f"GatewayCanaries(planter={self.planter!r})"

    @classmethod
    def open(cls, *, store_url: str, key: WatermarkKey, per_account: int = 8) -> GatewayCanaries:
        """Open the registry in the store at ``store_url`` and key the canaries with ``key``.

        Raises:
            StorageError: the store cannot be opened.
        """
        store = open_store(store_url)
        try:
            registry = CanaryRegistry(store)
        except Exception:
            store.close()
            raise
        planter = KeyedCanaryPlanter(
            generator=CanaryGenerator(secret=key.secret, kid=key.kid),
            registry=registry,
            per_account=per_account,
        )
        return cls(planter=planter, store=store)

    def plant(self, text: str, account_id: str) -> tuple[str, str | None]:
        """``(text with one of the account's canaries, canary_id)``, the first planting of each
        canary recorded; when the registry cannot be written, ``(text, None)``: nothing is
        planted that is not recorded (logged)."""
        try:
            return self.planter.plant(text, account_id)
        except Exception as exc:
            logger.warning("canary not planted: the registry failed (%s)", type(exc).__name__)
            return text, None

    def close(self) -> None:
        """Close the registry's store connection."""
        self._store.close()
