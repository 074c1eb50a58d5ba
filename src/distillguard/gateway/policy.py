"""Online scoring and policy actions: what the gateway does about a risky account.

The online scorer (:class:`OnlineScorer`, implemented by ``distillguard.monitor.online``) keeps
an account risk and a cluster (campaign) risk up to date per exchange. :class:`Policy` turns the
current risk, and any action an analyst set through the admin API (an *override*), into an
:class:`ActionDecision`: allow, throttle, watermark with a per-account payload, plant canaries,
require re-verification, or block, always with a reason a human can read. Every decision other
than a plain allow is recorded in the ``gateway_actions`` table in the same transaction as its
exchange; overrides live in ``gateway_overrides``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.records import Exchange
from distillguard.store import Store
from distillguard.store.base import Cursor

__all__ = [
    "ACTION_DDL",
    "Action",
    "ActionDecision",
    "ActionRecord",
    "ActionRow",
    "CanaryPlanting",
    "NullScorer",
    "OnlineScorer",
    "Override",
    "Policy",
    "PolicyThresholds",
    "RiskScore",
    "RiskView",
    "action_from_row",
    "ensure_action_tables",
    "insert_action",
    "new_action_record",
    "payload_for",
]


class Action(StrEnum):
    """Policy actions, mildest first."""

    ALLOW = "allow"
    THROTTLE = "throttle"
    WATERMARK = "watermark"
    CANARY = "canary"
    REVERIFY = "reverify"
    BLOCK = "block"


_SEVERITY = {a: i for i, a in enumerate(Action)}


@dataclass(frozen=True, slots=True)
class RiskScore:
    """The online scorer's view of an account: its risk, its cluster and the cluster's risk."""

    account_risk: float = 0.0
    cluster_id: str | None = None
    cluster_risk: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def risk(self) -> float:
        """The larger of the account and cluster risks."""
        return max(self.account_risk, self.cluster_risk)


class RiskView(Protocol):
    """What the policy reads of a risk score (:class:`RiskScore`, or the online scorer's
    ``RiskUpdate``)."""

    @property
    def account_risk(self) -> float:
        """The account's risk, 0..1."""
        ...

    @property
    def cluster_id(self) -> str | None:
        """The account's cluster (campaign), if any."""
        ...

    @property
    def cluster_risk(self) -> float:
        """The cluster's risk, 0..1."""
        ...

    @property
    def reasons(self) -> tuple[str, ...]:
        """Human-readable reasons."""
        ...

    @property
    def risk(self) -> float:
        """The larger of the two risks."""
        ...


class OnlineScorer(Protocol):
    """Incremental risk scoring (``distillguard.monitor.online.OnlineScorer``)."""

    def observe(self, exchange: Exchange) -> RiskView:
        """Update with one exchange; the account's new score."""
        ...

    def score(self, account_id: str) -> RiskView:
        """The account's current score (zero risk when unknown)."""
        ...


class NullScorer:
    """No online scoring: every account has zero risk (policy comes from overrides only)."""

    def __repr__(self) -> str:
        return "NullScorer()"

    def observe(self, exchange: Exchange) -> RiskScore:
        """Zero risk."""
        return RiskScore()

    def score(self, account_id: str) -> RiskScore:
        """Zero risk."""
        return RiskScore()


@dataclass(frozen=True, slots=True)
class PolicyThresholds:
    """The risk at or above which each action applies (the most severe one wins)."""

    throttle: float = 0.5
    watermark: float = 0.6
    canary: float = 0.7
    reverify: float = 0.85
    block: float = 0.95


@dataclass(frozen=True, slots=True)
class Override:
    """An action an analyst set on an account through the admin API."""

    account_id: str
    action: Action
    reason: str
    actor: str
    set_at: datetime
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "account_id": self.account_id,
            "action": self.action.value,
            "reason": self.reason,
            "actor": self.actor,
            "set_at": self.set_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """What the policy decided for one request, and why."""

    action: Action
    reason: str
    source: str = "policy"
    risk: RiskView = field(default_factory=RiskScore)
    payload: int | None = None

    @property
    def blocks(self) -> bool:
        """The request is refused."""
        return self.action in (Action.BLOCK, Action.REVERIFY)

    @property
    def watermarks(self) -> bool:
        """The answer carries the account's payload (canary and above also watermark)."""
        return _SEVERITY[self.action] >= _SEVERITY[Action.WATERMARK]

    @property
    def plants_canary(self) -> bool:
        """A canary fact is planted in the answer."""
        return self.action == Action.CANARY


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """A row of ``gateway_actions``."""

    action_id: str
    ts: datetime
    account_id: str
    exchange_id: str | None
    action: str
    reason: str
    source: str
    risk: float
    cluster_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "action_id": self.action_id,
            "ts": self.ts.isoformat(),
            "account_id": self.account_id,
            "exchange_id": self.exchange_id,
            "action": self.action,
            "reason": self.reason,
            "source": self.source,
            "risk": self.risk,
            "cluster_id": self.cluster_id,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ActionRecord:
        """The record of :meth:`to_dict`'s form."""
        return cls(
            action_id=str(obj["action_id"]),
            ts=datetime.fromisoformat(obj["ts"]),
            account_id=str(obj["account_id"]),
            exchange_id=obj.get("exchange_id"),
            action=str(obj["action"]),
            reason=str(obj["reason"]),
            source=str(obj["source"]),
            risk=float(obj["risk"]),
            cluster_id=obj.get("cluster_id"),
        )


class ActionRow:
    """Writes one :class:`ActionRecord` in the exchange's transaction (a recorder row writer
    that can be spooled: ``spool_form``)."""

    KIND = "gateway_action"

    def __init__(self, record: ActionRecord) -> None:
        self.record = record

    def __repr__(self) -> str:
        return f"ActionRow({self.record.action_id!r})"

    @property
    def spool_form(self) -> tuple[str, dict[str, Any]]:
        """The spooled form: (kind, JSON object)."""
        return self.KIND, self.record.to_dict()

    def __call__(self, store: Store, cur: Cursor) -> None:
        insert_action(store, cur, self.record)

    @classmethod
    def decode(cls, obj: dict[str, Any]) -> ActionRow:
        """The row of a spooled form."""
        return cls(ActionRecord.from_dict(obj))


ACTION_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS gateway_actions (
        action_id {text} PRIMARY KEY, ts {bigint} NOT NULL, account_id {text} NOT NULL,
        exchange_id {text}, action {text} NOT NULL, reason {text} NOT NULL,
        source {text} NOT NULL, risk {double}, cluster_id {text}
    )""",
    "CREATE INDEX IF NOT EXISTS gateway_actions_account ON gateway_actions (account_id, ts)",
    """CREATE TABLE IF NOT EXISTS gateway_overrides (
        account_id {text} PRIMARY KEY, action {text} NOT NULL, reason {text} NOT NULL,
        actor {text} NOT NULL, set_at {bigint} NOT NULL, expires_at {bigint}
    )""",
)


def ensure_action_tables(store: Store) -> None:
    """Create the gateway's tables (idempotent)."""
    store.ensure_tables("gateway", 1, ACTION_DDL)


def insert_action(store: Store, cur: Cursor, record: ActionRecord) -> None:
    """Insert one action row with ``cur``."""
    cur.execute(
        store.q(
            "INSERT INTO gateway_actions (action_id, ts, account_id, exchange_id, action, reason, "
            "source, risk, cluster_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (action_id) DO NOTHING"  # a spooled action replayed twice
        ),
        (
            record.action_id,
            to_micros(record.ts),
            record.account_id,
            record.exchange_id,
            record.action,
            record.reason,
            record.source,
            record.risk,
            record.cluster_id,
        ),
    )


def action_from_row(row: Sequence[Any]) -> ActionRecord:
    """An :class:`ActionRecord` from a ``gateway_actions`` row."""
    return ActionRecord(
        action_id=str(row[0]),
        ts=from_micros(int(row[1])),
        account_id=str(row[2]),
        exchange_id=row[3],
        action=str(row[4]),
        reason=str(row[5]),
        source=str(row[6]),
        risk=float(row[7] or 0.0),
        cluster_id=row[8],
    )


def new_action_record(
    *, account_id: str, exchange_id: str | None, decision: ActionDecision
) -> ActionRecord:
    """The row for ``decision``."""
    return ActionRecord(
        action_id="act_" + uuid.uuid4().hex,
        ts=datetime.now(UTC),
        account_id=account_id,
        exchange_id=exchange_id,
        action=decision.action.value,
        reason=decision.reason,
        source=decision.source,
        risk=decision.risk.risk,
        cluster_id=decision.risk.cluster_id,
    )


def payload_for(secret: bytes, account_id: str, *, bits: int = 16) -> int:
    """The account's watermark payload: a keyed hash of the account id, ``bits`` bits."""
    digest = hmac.new(secret, b"payload:" + account_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (1 << bits)


class CanaryPlanting(Protocol):
    """What the ``canary`` action calls (``GatewayCore(canaries=...)``): the gateway uses
    :class:`distillguard.gateway.canaries.GatewayCanaries`, over the one canary derivation,
    :class:`distillguard.fingerprint.canaries.KeyedCanaryPlanter` (keyed, recorded in the
    store)."""

    def plant(self, text: str, account_id: str) -> tuple[str, str | None]:
        """``(text with a canary planted, canary_id)``, or ``(text, None)`` when none was."""
        ...


class Policy:
    """Decides the action for a request from the risk score and the overrides.

    Args:
        thresholds: risk levels of the automatic actions.
        secret: key of the per-account watermark payloads.
    """

    def __init__(self, *, thresholds: PolicyThresholds, secret: bytes) -> None:
        self.thresholds = thresholds
        self._secret = secret
        self._overrides: dict[str, Override] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Policy(thresholds={self.thresholds!r})"

    def set_overrides(self, overrides: Sequence[Override]) -> None:
        """Replace the overrides (loaded from the store)."""
        with self._lock:
            self._overrides = {o.account_id: o for o in overrides}

    def override(self, account_id: str) -> Override | None:
        """The account's override, if any and not expired."""
        o = self._overrides.get(account_id)
        if o is not None and o.expires_at is not None and o.expires_at <= datetime.now(UTC):
            return None
        return o

    def decide(self, account_id: str, risk: RiskView) -> ActionDecision:
        """The action for the next request of ``account_id``."""
        o = self.override(account_id)
        automatic = self._automatic(risk)
        if o is not None and _SEVERITY[o.action] >= _SEVERITY[automatic.action]:
            decision = ActionDecision(
                action=o.action, reason=f"set by {o.actor}: {o.reason}", source="admin", risk=risk
            )
        elif o is not None and o.action == Action.ALLOW:
            decision = ActionDecision(
                action=Action.ALLOW,
                reason=f"allowed by {o.actor}: {o.reason}",
                source="admin",
                risk=risk,
            )
        else:
            decision = automatic
        if decision.watermarks:
            return ActionDecision(
                action=decision.action,
                reason=decision.reason,
                source=decision.source,
                risk=risk,
                payload=payload_for(self._secret, account_id),
            )
        return decision

    def _automatic(self, risk: RiskView) -> ActionDecision:
        t = self.thresholds
        r = risk.risk
        why = "; ".join(risk.reasons) or "online score"
        for action, level in (
            (Action.BLOCK, t.block),
            (Action.REVERIFY, t.reverify),
            (Action.CANARY, t.canary),
            (Action.WATERMARK, t.watermark),
            (Action.THROTTLE, t.throttle),
        ):
            if r >= level:
                scope = (
                    f"cluster {risk.cluster_id}"
                    if risk.cluster_risk >= risk.account_risk and risk.cluster_id
                    else "account"
                )
                return ActionDecision(
                    action=action,
                    reason=f"{scope} risk {r:.2f} >= {level:.2f} ({why})",
                    risk=risk,
                )
        return ActionDecision(action=Action.ALLOW, reason="below every threshold", risk=risk)
