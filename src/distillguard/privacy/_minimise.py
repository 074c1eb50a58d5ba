"""Minimisation at ingest: keep prompt and response content hashed, truncated or not at all.

A :class:`Minimiser` is a store insert hook registered *after* the ledger's: in the transaction
that stores a batch, the ledger first commits to the full records (a leaf per exchange), then
the minimiser rewrites the content of the exchanges whose retention rule says so and records a
``content`` erasure for each through the ledger (reason ``minimisation: hash`` and so on): a
tombstone leaf per minimised exchange, appended after the batch's own leaves. The metadata stays
verifiable against the leaf, and once a signed checkpoint covers the tombstones (``ingest``
publishes one when a keyring exists) ``ledger audit`` reports the content as erased, not as
tampered.

Which scan signals still work (see ``docs/privacy.md``): behavioural, timing, volume and
infrastructure signals use metadata only and are unaffected; exact-repeat template counts work
on ``hash`` (equal texts give equal digests); template similarity, elicitation patterns and
content similarity need the text (``keep``, or partly ``truncate:N``).

Example::

    ledger = Ledger.attach(store)
    Minimiser.attach(store, ledger=ledger, policy=RetentionPolicy.from_settings(settings.retention))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from distillguard.errors import ConfigurationError
from distillguard.ledger import Ledger, split_record
from distillguard.privacy._policy import AccountProfile, RetentionPolicy, RetentionRule
from distillguard.records import Exchange, Message
from distillguard.store import Cursor, Store, StoredExchange
from distillguard.store.base import EXCHANGE_COLUMNS, exchange_row

__all__ = ["Minimiser", "minimised_content"]

logger = logging.getLogger(__name__)

_CHUNK: Final = 900


def minimised_content(exchange: Exchange, rule: RetentionRule) -> Exchange:
    """The exchange with its prompt, response and reasoning texts minimised per ``rule``."""
    m = rule.minimise
    return replace(
        exchange,
        messages=tuple(
            Message(role=msg.role, content=m.apply(msg.content) or "", extra=msg.extra)
            for msg in exchange.messages
        ),
        response=m.apply(exchange.response),
        reasoning=m.apply(exchange.reasoning),
    )


_CONTENT_AT: Final = tuple(EXCHANGE_COLUMNS.index(c) for c in ("messages", "response", "reasoning"))


def _content_columns(exchange: Exchange) -> tuple[Any, ...]:
    """The stored form of the content columns, encoded by the store's own row function."""
    row = exchange_row(exchange, seq=0, salt=b"", run_id="", now_us=0)
    return tuple(row[i] for i in _CONTENT_AT)


class Minimiser:
    """Rewrites stored content per the retention policy's ``minimise`` setting (insert hook).

    Build it with :meth:`attach`, after ``Ledger.attach(store)``.
    """

    #: The name of the minimiser's insert hook on a store (it runs after :attr:`Ledger.HOOK`).
    HOOK = "minimisation"

    def __init__(
        self, store: Store, *, ledger: Ledger, policy: RetentionPolicy, actor: str = "minimisation"
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.policy = policy
        self.actor = actor
        self.minimised = 0

    def __repr__(self) -> str:
        return f"Minimiser(store={self.store!r}, minimised={self.minimised})"

    @classmethod
    def attach(
        cls,
        store: Store,
        *,
        ledger: Ledger,
        policy: RetentionPolicy,
        actor: str = "minimisation",
    ) -> Minimiser | None:
        """Register the hook on ``store`` (None, and nothing registered, if the policy keeps all
        content). Attaching twice registers one hook.

        Raises:
            ConfigurationError: the ledger is not attached to the store before it: minimising
                first would commit the ledger to the minimised content, or to nothing.
        """
        if not policy.minimises:
            return None
        existing = store.insert_hooks.get(cls.HOOK)
        if isinstance(existing, Minimiser):
            return existing
        if store.insert_hooks.get(Ledger.HOOK) is not ledger:
            raise ConfigurationError(
                "minimisation needs the ledger attached to the store first",
                hint="call Ledger.attach(store) before Minimiser.attach(store, ...)",
            )
        minimiser = cls(store, ledger=ledger, policy=policy, actor=actor)
        store.insert_hooks.register(cls.HOOK, minimiser, after=(Ledger.HOOK,))
        return minimiser

    def _profiles(self, cur: Cursor, account_ids: Sequence[str]) -> dict[str, AccountProfile]:
        out: dict[str, AccountProfile] = {}
        for start in range(0, len(account_ids), _CHUNK):
            chunk = account_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self.store.q(
                    "SELECT account_id, tier, signup_channel FROM accounts "
                    f"WHERE account_id IN ({marks})"
                ),
                chunk,
            )
            for account_id, tier, channel in cur.fetchall():
                out[account_id] = AccountProfile(account_id, tier, channel)
        return out

    def __call__(self, cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        """Insert hook: minimise the content of the newly stored exchanges that need it."""
        if not inserted:
            return
        if self.policy.overrides:
            ids = list(dict.fromkeys(s.exchange.account_id for s in inserted))
            profiles = self._profiles(cur, ids)
        else:
            profiles = {}
        rows: list[tuple[Any, ...]] = []
        by_reason: dict[str, list[str]] = {}
        after: dict[str, dict[str, Any]] = {}
        for stored in inserted:
            ex = stored.exchange
            profile = profiles.get(ex.account_id) or AccountProfile(ex.account_id)
            rule = self.policy.rule_for(profile)
            if not rule.minimise.changes_content:
                continue
            by_reason.setdefault(f"minimisation: {rule.minimise}", []).append(ex.exchange_id)
            minimised = minimised_content(ex, rule)
            # The content tombstone commits to the minimised content the row keeps.
            after[ex.exchange_id] = split_record(minimised.to_dict())[1]
            rows.append((*_content_columns(minimised), ex.exchange_id))
        for reason, ids in by_reason.items():
            self.ledger.record_erasures(
                cur, ids, scope="content", reason=reason, actor=self.actor, content_after=after
            )
        if rows:
            cur.executemany(
                self.store.q(
                    "UPDATE exchanges SET messages = ?, response = ?, reasoning = ? "
                    "WHERE exchange_id = ?"
                ),
                rows,
            )
            self.minimised += len(rows)
            logger.debug("minimised the content of %d exchange(s)", len(rows))
