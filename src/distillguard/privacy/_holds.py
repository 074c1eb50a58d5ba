"""Legal holds: records that must survive retention limits and erasure requests.

A hold covers one exchange or every exchange of one account, until it is released. Records cited
by a campaign or an evidence bundle go on hold through :meth:`LegalHolds.place_many`. Retention
(:func:`distillguard.privacy._retention.apply_retention`) skips held records, and an erasure
(:func:`distillguard.privacy._retention.erase_account`) is refused while a hold covers the
account or one of its exchanges, unless forced; releasing a hold is recorded, never deleted.

Table ``legal_holds`` (component ``privacy`` of the store)::

    hold_id, scope ('account' | 'exchange'), target, reason,
    created_at, created_by, released_at, released_by
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from distillguard._internal.timeutil import format_ts, from_micros, to_micros
from distillguard.errors import InputError
from distillguard.store import Cursor, Store

__all__ = [
    "HELD_SQL",
    "HOLD_SCOPES",
    "PRIVACY_DDL",
    "HoldScope",
    "LegalHold",
    "LegalHolds",
    "ensure_privacy_tables",
]

logger = logging.getLogger(__name__)

HoldScope = Literal["account", "exchange"]
HOLD_SCOPES: Final[tuple[HoldScope, ...]] = ("account", "exchange")
SCHEMA_VERSION: Final = 1
_CHUNK: Final = 900

PRIVACY_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS legal_holds (
        hold_id {text} PRIMARY KEY, scope {text} NOT NULL, target {text} NOT NULL,
        reason {text} NOT NULL, created_at {bigint} NOT NULL, created_by {text} NOT NULL,
        released_at {bigint}, released_by {text}
    )""",
    "CREATE INDEX IF NOT EXISTS legal_holds_target ON legal_holds (target, scope)",
    """CREATE TABLE IF NOT EXISTS privacy_receipts (
        receipt_id {text} PRIMARY KEY, kind {text} NOT NULL, created_at {bigint} NOT NULL,
        actor {text} NOT NULL, body {text} NOT NULL
    )""",
)

#: SQL condition "exchange row ``e`` is under an active hold" (used by retention and erasure).
HELD_SQL: Final = (
    "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND "
    "((h.scope = 'exchange' AND h.target = e.exchange_id) OR "
    "(h.scope = 'account' AND h.target = e.account_id)))"
)


def ensure_privacy_tables(store: Store) -> None:
    """Create the privacy component's tables (``legal_holds``, ``privacy_receipts``)."""
    store.ensure_tables("privacy", SCHEMA_VERSION, PRIVACY_DDL)


@dataclass(frozen=True, slots=True)
class LegalHold:
    """One hold: what it covers, why, who placed it and, once released, when and by whom."""

    hold_id: str
    scope: HoldScope
    target: str
    reason: str
    created_at: datetime
    created_by: str
    released_at: datetime | None = None
    released_by: str | None = None

    @property
    def active(self) -> bool:
        """Whether the hold still applies."""
        return self.released_at is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "hold_id": self.hold_id,
            "scope": self.scope,
            "target": self.target,
            "reason": self.reason,
            "created_at": format_ts(self.created_at),
            "created_by": self.created_by,
            "released_at": None if self.released_at is None else format_ts(self.released_at),
            "released_by": self.released_by,
            "active": self.active,
        }


_COLS: Final = "hold_id, scope, target, reason, created_at, created_by, released_at, released_by"


def _from_row(r: Sequence[Any]) -> LegalHold:
    scope: HoldScope = "account" if r[1] == "account" else "exchange"
    return LegalHold(
        hold_id=str(r[0]),
        scope=scope,
        target=str(r[2]),
        reason=str(r[3]),
        created_at=from_micros(int(r[4])),
        created_by=str(r[5]),
        released_at=None if r[6] is None else from_micros(int(r[6])),
        released_by=None if r[7] is None else str(r[7]),
    )


def _check_text(name: str, value: str) -> str:
    if not value or not value.strip():
        raise InputError(f"a legal hold needs a non-empty {name}")
    return value.strip()


class LegalHolds:
    """The legal holds kept in a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        ensure_privacy_tables(store)

    def __repr__(self) -> str:
        return f"LegalHolds(store={self.store!r})"

    def place(
        self,
        *,
        scope: HoldScope,
        target: str,
        reason: str,
        actor: str,
        now: datetime | None = None,
    ) -> LegalHold:
        """Put an account or an exchange on hold.

        Raises:
            InputError: bad scope, empty target, reason or actor.
        """
        return self.place_many(scope=scope, targets=[target], reason=reason, actor=actor, now=now)[
            0
        ]

    def place_many(
        self,
        *,
        scope: HoldScope,
        targets: Iterable[str],
        reason: str,
        actor: str,
        now: datetime | None = None,
    ) -> list[LegalHold]:
        """Put several accounts or exchanges on hold in one transaction (e.g. a campaign's).

        A target already under an active hold of the same scope gets no second hold; the
        existing one is returned.
        """
        if scope not in HOLD_SCOPES:
            raise InputError(f"hold scope must be 'account' or 'exchange', not {scope!r}")
        reason = _check_text("reason", reason)
        actor = _check_text("actor", actor)
        wanted = list(dict.fromkeys(_check_text("target", t) for t in targets))
        when = (now or datetime.now(UTC)).astimezone(UTC)
        q = self.store.q
        out: list[LegalHold] = []
        with self.store.transaction() as cur:
            existing = {h.target: h for h in self._active(cur, scope, wanted)}
            new: list[LegalHold] = []
            for target in wanted:
                if target in existing:
                    out.append(existing[target])
                    continue
                hold = LegalHold(
                    hold_id=f"hold-{uuid.uuid4().hex[:16]}",
                    scope=scope,
                    target=target,
                    reason=reason,
                    created_at=when,
                    created_by=actor,
                )
                new.append(hold)
                out.append(hold)
            if new:
                cur.executemany(
                    q(
                        "INSERT INTO legal_holds (hold_id, scope, target, reason, created_at, "
                        "created_by) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    [
                        (h.hold_id, h.scope, h.target, h.reason, to_micros(when), h.created_by)
                        for h in new
                    ],
                )
        logger.info("placed %d %s hold(s)", len(out), scope)
        return out

    def _active(self, cur: Cursor, scope: HoldScope, targets: Sequence[str]) -> list[LegalHold]:
        out: list[LegalHold] = []
        for start in range(0, len(targets), _CHUNK):
            chunk = targets[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self.store.q(
                    f"SELECT {_COLS} FROM legal_holds WHERE released_at IS NULL AND scope = ? "
                    f"AND target IN ({marks})"
                ),
                (scope, *chunk),
            )
            out.extend(_from_row(r) for r in cur.fetchall())
        return out

    def release(self, hold_id: str, *, actor: str, now: datetime | None = None) -> LegalHold:
        """Release a hold (it stays listed, with who released it and when).

        Raises:
            InputError: no such hold, or it is already released.
        """
        actor = _check_text("actor", actor)
        when = (now or datetime.now(UTC)).astimezone(UTC)
        q = self.store.q
        with self.store.transaction() as cur:
            cur.execute(q(f"SELECT {_COLS} FROM legal_holds WHERE hold_id = ?"), (hold_id,))
            row = cur.fetchone()
            if row is None:
                raise InputError(f"no legal hold {hold_id!r}", hint="see `retention hold list`")
            hold = _from_row(row)
            if not hold.active:
                raise InputError(f"legal hold {hold_id!r} was already released")
            cur.execute(
                q("UPDATE legal_holds SET released_at = ?, released_by = ? WHERE hold_id = ?"),
                (to_micros(when), actor, hold_id),
            )
        logger.info("released hold %s", hold_id)
        return LegalHold(
            hold_id=hold.hold_id,
            scope=hold.scope,
            target=hold.target,
            reason=hold.reason,
            created_at=hold.created_at,
            created_by=hold.created_by,
            released_at=when,
            released_by=actor,
        )

    def holds(
        self, *, include_released: bool = False, target: str | None = None
    ) -> list[LegalHold]:
        """Holds, oldest first: active ones only unless ``include_released``."""
        where = [] if include_released else ["released_at IS NULL"]
        params: list[Any] = []
        if target is not None:
            where.append("target = ?")
            params.append(target)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.store.transaction() as cur:
            cur.execute(
                self.store.q(
                    f"SELECT {_COLS} FROM legal_holds{clause} ORDER BY created_at, hold_id"
                ),
                params,
            )
            return [_from_row(r) for r in cur.fetchall()]

    def holds_on_account(self, cur: Cursor, account_id: str) -> list[LegalHold]:
        """Active holds that cover an account: on the account or on one of its exchanges."""
        cur.execute(
            self.store.q(
                f"SELECT {_COLS} FROM legal_holds WHERE released_at IS NULL AND ("
                "(scope = 'account' AND target = ?) OR (scope = 'exchange' AND target IN "
                "(SELECT exchange_id FROM exchanges WHERE account_id = ?))) ORDER BY hold_id"
            ),
            (account_id, account_id),
        )
        return [_from_row(r) for r in cur.fetchall()]

    def is_held(self, exchange_id: str) -> bool:
        """Whether an exchange is under an active hold (its own or its account's)."""
        with self.store.transaction() as cur:
            cur.execute(
                self.store.q(f"SELECT {HELD_SQL} FROM exchanges e WHERE e.exchange_id = ?"),
                (exchange_id,),
            )
            row = cur.fetchone()
        return bool(row and row[0])
