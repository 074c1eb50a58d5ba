"""The operations service: every change an operator makes, whichever door it comes through.

The admin API (:mod:`distillguard.app.admin`) and the operator console
(:mod:`distillguard.console`) are thin adapters over :class:`Operations`; so is any future door.
Each state-changing method takes an :class:`Actor` (who, through which door), reads the clock
once, and appends one row to the audit trail (table ``operations_audit``: who, door, when,
action, target, reason, outcome) with that same instant, so that an override, its row in the
gateway's action log and its audit entry carry the same microsecond. Analyst overrides are
written here and nowhere else: the override, its ``gateway_actions`` row and the audit entry go
in one transaction, and the gateway's policy object is updated at once (other replicas reload
overrides every few seconds, see :class:`distillguard.gateway.app.Gateway`).

What it covers: accounts with their risk and action, overrides (throttle, watermark, canary,
re-verify, block, allow, clear), the actions log, analyst verdicts (labels), passports (issue,
list, revoke), the ledger (head, signed checkpoint, inclusion proof, full audit), legal holds
(place, release, list) and the audit trail itself.

Threading: the service owns one store connection and serialises its use with a re-entrant lock;
every method may be called from any thread (the web doors call it from their thread pools).
:meth:`Operations.run` lends the connection, under the same lock, to a door's own read queries
(the console's pages).

When it misfires: an action whose store write fails raises (nothing is half-written, the policy
object is left as it was); a revocation is written to the passport registry first and audited
after, so a store failure between the two leaves a revocation without its audit row (logged).
Audit rows written by console versions before this service (table ``console_audit``) are
copied into ``operations_audit`` by the store's migration 2 (``distillguard db migrate``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.errors import ConfigurationError, InputError
from distillguard.store import Cursor, Store
from distillguard.store.base import ACCOUNT_COLUMNS, account_from_row

if TYPE_CHECKING:
    from distillguard.config import Settings
    from distillguard.gateway.policy import (
        Action,
        ActionDecision,
        ActionRecord,
        OnlineScorer,
        Override,
        Policy,
        RiskView,
    )
    from distillguard.keyring import SigningKey
    from distillguard.ledger import Checkpoint, LedgerKey
    from distillguard.monitor.feedback import AnalystLabel
    from distillguard.passport import (
        Passport,
        PassportIssuer,
        PassportRecord,
        PassportRegistry,
        Revocation,
        RevocationCache,
    )
    from distillguard.privacy import HoldScope, LegalHold
    from distillguard.records import Account

__all__ = [
    "AUDIT_DDL",
    "DOORS",
    "AccountStatus",
    "ActionOutcome",
    "Actor",
    "AuditEntry",
    "Door",
    "Operations",
    "PassportRequest",
    "operations_from_settings",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Door = Literal["admin", "console", "cli", "internal"]
DOORS: Final[tuple[Door, ...]] = ("admin", "console", "cli", "internal")

AUDIT_SCHEMA_VERSION: Final = 1
AUDIT_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS operations_audit (
        audit_id {text} PRIMARY KEY, ts {bigint} NOT NULL, actor {text} NOT NULL,
        door {text} NOT NULL, action {text} NOT NULL, target {text} NOT NULL,
        reason {text} NOT NULL, outcome {text} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS operations_audit_ts ON operations_audit (ts)",
    "CREATE INDEX IF NOT EXISTS operations_audit_target ON operations_audit (target, ts)",
)
"""The audit trail's table (component ``operations`` of the store)."""

_AUDIT_COLS: Final = "audit_id, ts, actor, door, action, target, reason, outcome"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and through which door (``admin``, ``console``, ``cli``, ``internal``).

    Raises:
        InputError: an empty name or an unknown door.
    """

    name: str
    door: Door

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise InputError("an operation needs the name of who performs it")
        if self.door not in DOORS:
            raise InputError(f"unknown door {self.door!r}", hint=f"one of {', '.join(DOORS)}")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail."""

    audit_id: str
    ts: datetime
    actor: str
    door: str
    action: str
    target: str
    reason: str
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "audit_id": self.audit_id,
            "ts": self.ts.isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "door": self.door,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """An account's online risk, the action the policy takes on it now, and its override."""

    account_id: str
    risk: RiskView
    decision: ActionDecision
    override: Override | None


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What :meth:`Operations.set_action` wrote: the override, its action-log id and its audit
    entry."""

    override: Override
    action_id: str
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class PassportRequest:
    """A passport to issue for an agent key (Ed25519 public JWK)."""

    account_id: str
    org_id: str
    agent_jwk: dict[str, str]
    models: tuple[str, ...] = ("*",)
    endpoints: tuple[str, ...] = ("/v1/*",)
    requests_per_minute: int = 60
    tokens_per_day: int = 1_000_000
    ttl_days: int = 30


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _audit_id() -> str:
    """A unique id that sorts by creation (nanosecond wall clock, then random): the trail's
    order among entries of the same microsecond."""
    return f"aud_{time.time_ns():016x}{uuid.uuid4().hex[:12]}"


def _audit_from_row(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        audit_id=str(r[0]),
        ts=from_micros(int(r[1])),
        actor=str(r[2]),
        door=str(r[3]),
        action=str(r[4]),
        target=str(r[5]),
        reason=str(r[6]),
        outcome=str(r[7]),
    )


def _ensure_audit_tables(store: Store) -> None:
    """Check that the store holds the audit table (component ``operations``; migration 2 of the
    store creates it, and copies the rows of the console's older ``console_audit`` once).

    Raises:
        SchemaVersionError, SchemaOutdatedError: the store's schema is not this code's.
    """
    store.ensure_tables("operations", AUDIT_SCHEMA_VERSION, AUDIT_DDL)


class Operations:
    """The operators' actions and queries over the store, the policy, passports and ledger.

    Args:
        store: the service's own store connection (closed by :meth:`close`).
        policy: the gateway's policy; its overrides are replaced after every change. None
            outside the server (the CLI): overrides are written to the store only, and the
            gateways pick them up when they reload them; :meth:`status` needs a policy.
        scorer: the online scorer (risk shown with accounts, recorded with actions); None:
            zero risk.
        registry: the passport registry (issued passports, revocations).
        revocations: the verifier's revocation cache, when there is one: a revocation goes
            through it and is refused by this process at once.
        issuer: issues passports (None: the keyring has no passport key).
        ledger_key: signs checkpoints (None: the keyring has no ledger key).
        ledger_origin: the ledger's origin line.
        ledger_public_keys: public keys that checkpoints may carry (the ledger audit).
        clusters: the online scorer's clusters, when it has them.
        clock: the current time (aware UTC); read once per operation.
        close_registry: :meth:`close` also closes ``registry`` (the service opened it).

    The gateway's modules (the override and action-log tables and types) are imported on the
    first override call, so that the other actions work on an install without the gateway.
    """

    def __init__(
        self,
        *,
        store: Store,
        policy: Policy | None = None,
        scorer: OnlineScorer | None = None,
        registry: PassportRegistry,
        revocations: RevocationCache | None = None,
        issuer: PassportIssuer | None = None,
        ledger_key: SigningKey | None = None,
        ledger_origin: str,
        ledger_public_keys: Sequence[LedgerKey] = (),
        clusters: Callable[[], list[dict[str, Any]]] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        close_registry: bool = False,
    ) -> None:
        self._store = store
        self._lock = threading.RLock()
        self.policy = policy
        self.scorer = scorer
        self.registry = registry
        self.revocations = revocations
        self.issuer = issuer
        self.ledger_key = ledger_key
        self.ledger_origin = ledger_origin
        self.ledger_public_keys = tuple(ledger_public_keys)
        self._clusters = clusters
        self._clock = clock
        self._close_registry = close_registry
        self._action_tables = False
        with self._lock:
            _ensure_audit_tables(store)

    def __repr__(self) -> str:
        return f"Operations(store={self._store!r})"

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The service's connection; use it only inside :meth:`run` (it serves one thread)."""
        return self._store

    def run(self, fn: Callable[[Store], T]) -> T:
        """Call ``fn(store)`` holding the service's lock (a door's own read queries)."""
        with self._lock:
            return fn(self._store)

    def ping(self) -> bool:
        """Whether the store answers (readiness)."""
        try:
            with self._lock, self._store.transaction() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except Exception:
            return False
        return True

    def close(self) -> None:
        """Close the store connection (and the registry when the service opened it)."""
        with self._lock:
            self._store.close()
        if self._close_registry:
            self.registry.close()

    def _overrides_ready(self) -> None:
        """Create the gateway's override and action-log tables once (call under the lock)."""
        if not self._action_tables:
            from distillguard.gateway.policy import ensure_action_tables

            ensure_action_tables(self._store)
            self._action_tables = True

    def _risk(self, account_id: str) -> RiskView:
        if self.scorer is not None:
            return self.scorer.score(account_id)
        from distillguard.gateway.policy import RiskScore

        return RiskScore()

    def _now(self) -> datetime:
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("the operations clock must return aware datetimes")
        return now.astimezone(UTC)

    def _audit(
        self,
        cur: Cursor,
        *,
        actor: Actor,
        action: str,
        target: str,
        reason: str,
        outcome: str,
        at: datetime,
    ) -> AuditEntry:
        entry = AuditEntry(
            audit_id=_audit_id(),
            ts=at,
            actor=actor.name,
            door=actor.door,
            action=action,
            target=target,
            reason=reason,
            outcome=outcome,
        )
        cur.execute(
            self._store.q(
                f"INSERT INTO operations_audit ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                entry.audit_id,
                to_micros(entry.ts),
                entry.actor,
                entry.door,
                entry.action,
                entry.target,
                entry.reason,
                entry.outcome,
            ),
        )
        logger.info(
            "%s (%s) %s on %s: %s", actor.name, actor.door, action, target, outcome
        )  # who did what is not secret; the reason stays in the store
        return entry

    def record(
        self, *, actor: Actor, action: str, target: str, reason: str = "-", outcome: str = "ok"
    ) -> AuditEntry:
        """Append an entry for something a door did by itself (a login, an upload)."""
        with self._lock, self._store.transaction() as cur:
            return self._audit(
                cur,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                outcome=outcome,
                at=self._now(),
            )

    # -- accounts -------------------------------------------------------------------------------

    def status(self, account_id: str) -> AccountStatus:
        """The account's risk, the policy's action on it now, and its override.

        Raises:
            ConfigurationError: the service has no live policy (outside the server).
        """
        if self.policy is None:
            raise ConfigurationError("an account's current action needs the gateway's policy")
        risk = self._risk(account_id)
        return AccountStatus(
            account_id=account_id,
            risk=risk,
            decision=self.policy.decide(account_id, risk),
            override=self.policy.override(account_id),
        )

    def account(self, account_id: str) -> Account | None:
        """An account of the store, or None."""
        with self._lock:
            return self._store.get_account(account_id)

    def accounts(self, *, after: str = "", limit: int = 100) -> list[Account]:
        """Accounts ordered by id, ``limit`` after ``after`` (keyset pagination)."""
        s = self._store
        with self._lock, s.transaction() as cur:
            cur.execute(
                s.q(
                    f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts WHERE account_id > ? "
                    "ORDER BY account_id LIMIT ?"
                ),
                (after, limit),
            )
            return [account_from_row(r) for r in cur.fetchall()]

    def clusters(self) -> list[dict[str, Any]]:
        """The online scorer's clusters with their risk (empty when it keeps none)."""
        return self._clusters() if self._clusters is not None else []

    # -- overrides and the actions log ------------------------------------------------------------

    def load_overrides(self) -> list[Override]:
        """Every analyst override in the store (what the gateway's policy applies)."""
        from distillguard.gateway.policy import Action, Override

        with self._lock, self._store.transaction() as cur:
            self._overrides_ready()
            cur.execute(
                "SELECT account_id, action, reason, actor, set_at, expires_at "
                "FROM gateway_overrides"
            )
            rows = cur.fetchall()
        return [
            Override(
                account_id=str(r[0]),
                action=Action(str(r[1])),
                reason=str(r[2]),
                actor=str(r[3]),
                set_at=from_micros(int(r[4])),
                expires_at=from_micros(int(r[5])) if r[5] is not None else None,
            )
            for r in rows
        ]

    def overridden(self, action: Action) -> frozenset[str]:
        """The accounts whose override is ``action``."""
        s = self._store
        with self._lock, s.transaction() as cur:
            self._overrides_ready()
            cur.execute(
                s.q("SELECT account_id FROM gateway_overrides WHERE action = ?"), (action.value,)
            )
            return frozenset(str(r[0]) for r in cur.fetchall())

    def set_action(
        self,
        account_id: str,
        action: Action,
        *,
        reason: str,
        actor: Actor,
        expires_in_s: int | None = None,
    ) -> ActionOutcome:
        """Set an analyst override (replacing the account's earlier one).

        The override, a ``gateway_actions`` row (source ``admin``, reason ``set by NAME
        (DOOR): REASON``, the account's risk now) and the audit entry are written in one
        transaction with one timestamp; the policy applies the override at once.

        Raises:
            InputError: an empty account id or reason, or an expiry that is not positive.
            StorageError: the store could not be written (nothing was).
        """
        from distillguard.gateway.policy import (
            ActionDecision,
            Override,
            insert_action,
            new_action_record,
        )

        if not account_id:
            raise InputError("an action needs an account id")
        reason = _reason(reason)
        if expires_in_s is not None and expires_in_s <= 0:
            raise InputError("an action's expiry must be a positive number of seconds")
        now = self._now()
        override = Override(
            account_id=account_id,
            action=action,
            reason=reason,
            actor=actor.name,
            set_at=now,
            expires_at=now + timedelta(seconds=expires_in_s) if expires_in_s else None,
        )
        decision = ActionDecision(
            action=action,
            reason=f"set by {actor.name} ({actor.door}): {reason}",
            source="admin",
            risk=self._risk(account_id),
        )
        record = dataclasses.replace(
            new_action_record(account_id=account_id, exchange_id=None, decision=decision), ts=now
        )
        s = self._store
        with self._lock:
            self._overrides_ready()
            with s.transaction() as cur:
                cur.execute(
                    s.q("DELETE FROM gateway_overrides WHERE account_id = ?"), (account_id,)
                )
                cur.execute(
                    s.q(
                        "INSERT INTO gateway_overrides (account_id, action, reason, actor, "
                        "set_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        account_id,
                        action.value,
                        reason,
                        actor.name,
                        to_micros(now),
                        to_micros(override.expires_at) if override.expires_at else None,
                    ),
                )
                insert_action(s, cur, record)
                entry = self._audit(
                    cur,
                    actor=actor,
                    action=action.value,
                    target=account_id,
                    reason=reason,
                    outcome="applied",
                    at=now,
                )
            if self.policy is not None:
                self.policy.set_overrides(self.load_overrides())
        return ActionOutcome(override=override, action_id=record.action_id, audit=entry)

    def clear_action(self, account_id: str, *, actor: Actor, reason: str = "-") -> bool:
        """Remove the account's override (the automatic policy applies again); audited either
        way. Returns whether there was one."""
        s = self._store
        now = self._now()
        with self._lock:
            self._overrides_ready()
            with s.transaction() as cur:
                cur.execute(
                    s.q("DELETE FROM gateway_overrides WHERE account_id = ?"), (account_id,)
                )
                removed = int(getattr(cur, "rowcount", 0) or 0) > 0
                self._audit(
                    cur,
                    actor=actor,
                    action="clear",
                    target=account_id,
                    reason=reason.strip() or "-",
                    outcome="cleared" if removed else "no override",
                    at=now,
                )
            if self.policy is not None:
                self.policy.set_overrides(self.load_overrides())
        return removed

    def actions(self, *, account_id: str | None = None, limit: int = 100) -> list[ActionRecord]:
        """The most recent actions (policy and analysts), newest first."""
        from distillguard.gateway.policy import action_from_row

        s = self._store
        cols = "action_id, ts, account_id, exchange_id, action, reason, source, risk, cluster_id"
        with self._lock, s.transaction() as cur:
            self._overrides_ready()
            if account_id is None:
                cur.execute(
                    s.q(f"SELECT {cols} FROM gateway_actions ORDER BY ts DESC LIMIT ?"), (limit,)
                )
            else:
                cur.execute(
                    s.q(
                        f"SELECT {cols} FROM gateway_actions WHERE account_id = ? "
                        "ORDER BY ts DESC LIMIT ?"
                    ),
                    (account_id, limit),
                )
            return [action_from_row(r) for r in cur.fetchall()]

    # -- analyst verdicts -----------------------------------------------------------------------

    def record_label(
        self, account_id: str, verdict: str, *, actor: Actor, note: str = ""
    ) -> AnalystLabel:
        """Record an analyst's verdict on a known account (``campaign`` or ``legitimate``).

        Raises:
            InputError: unknown account or verdict.
        """
        from distillguard.monitor.feedback import record_label

        s = self._store
        now = self._now()
        with self._lock:
            if s.get_account(account_id) is None:
                raise InputError(f"unknown account {account_id!r}")
            with s.transaction() as cur:
                label = record_label(s, account_id, verdict, actor=actor.name, note=note, at=now)
                self._audit(
                    cur,
                    actor=actor,
                    action=f"label_{verdict}",
                    target=account_id,
                    reason=note or "-",
                    outcome="recorded",
                    at=now,
                )
        return label

    def labels(self, *, history: bool = False) -> list[AnalystLabel]:
        """The latest verdict per account (``history``: every verdict, oldest first)."""
        from distillguard.monitor.feedback import load_labels

        with self._lock:
            return load_labels(self._store, history=history)

    # -- passports ------------------------------------------------------------------------------

    def passport(self, passport_id: str) -> PassportRecord | None:
        """A passport's record, or None."""
        return self.registry.get(passport_id)

    def passports(self, *, account_id: str | None = None) -> list[PassportRecord]:
        """Issued passports (of one account), oldest first."""
        records = self.registry.list_passports()
        return [r for r in records if account_id is None or r.account_id == account_id]

    def issue_passport(self, request: PassportRequest, *, actor: Actor) -> Passport:
        """Issue a passport for an agent key, register it and audit it.

        Raises:
            ConfigurationError: the keyring has no passport key.
            PassportError, ValueError: the request cannot be issued (e.g. a bad JWK).
        """
        from distillguard.passport import RateTier, Scopes

        if self.issuer is None:
            raise ConfigurationError("no passport issuer key in the keyring")
        now = self._now()
        passport = self.issuer.issue(
            account_id=request.account_id,
            org_id=request.org_id,
            agent_public_jwk=request.agent_jwk,
            scopes=Scopes(models=request.models, endpoints=request.endpoints),
            rate=RateTier(
                requests_per_minute=request.requests_per_minute,
                tokens_per_day=request.tokens_per_day,
            ),
            ttl_s=request.ttl_days * 86400,
            now=int(now.timestamp()),
        )
        self.registry.record_issued(passport)
        self._audit_after(
            actor=actor,
            action="issue_passport",
            target=request.account_id,
            reason=passport.passport_id,
            outcome="issued",
            at=now,
        )
        return passport

    def revoke_passport(
        self,
        passport_id: str,
        *,
        reason: str,
        actor: Actor,
        allow_unknown: bool = False,
        listed_reason: str | None = None,
    ) -> Revocation:
        """Revoke a passport (through the verifier's cache when there is one: refused by this
        process at once, by other replicas when they reload the list) and audit it.

        The reason on the revocation list is ``listed_reason``, by default ``NAME: REASON``.
        ``allow_unknown``: revoke an id the registry does not hold too (the CLI's revoke, for a
        passport issued elsewhere); its audit row's target is the passport id and its outcome
        ``revoked (unknown id)``.

        Raises:
            InputError: unknown passport (unless ``allow_unknown``), or an empty reason.
        """
        reason = _reason(reason)
        record = self.registry.get(passport_id)
        if record is None and not allow_unknown:
            raise InputError(f"unknown passport {passport_id!r}")
        now = self._now()
        target = self.revocations if self.revocations is not None else self.registry
        revocation = target.revoke(
            passport_id,
            reason=f"{actor.name}: {reason}" if listed_reason is None else listed_reason,
            now=int(now.timestamp()),
        )
        self._audit_after(
            actor=actor,
            action="revoke_passport",
            target=record.account_id if record is not None else passport_id,
            reason=f"{passport_id}: {reason}",
            outcome="revoked" if record is not None else "revoked (unknown id)",
            at=now,
        )
        return revocation

    def _audit_after(
        self, *, actor: Actor, action: str, target: str, reason: str, outcome: str, at: datetime
    ) -> None:
        """Audit an action already done elsewhere (the registry, the ledger's own transaction).

        A failure here is logged and raised: the action stands, its audit row is missing.
        """
        try:
            with self._lock, self._store.transaction() as cur:
                self._audit(
                    cur,
                    actor=actor,
                    action=action,
                    target=target,
                    reason=reason,
                    outcome=outcome,
                    at=at,
                )
        except Exception:
            logger.error("%s on %s was done but could not be audited", action, target)
            raise

    # -- ledger ---------------------------------------------------------------------------------

    def ledger_head(self) -> dict[str, Any]:
        """Size and root of the tree, and the latest signed checkpoint's note (or None)."""
        from distillguard.ledger import Ledger

        with self._lock:
            ledger = Ledger.open(self._store, origin=self.ledger_origin)
            cp = ledger.latest_checkpoint()
            return {**ledger.head().to_dict(), "checkpoint": cp.note if cp else None}

    def publish_checkpoint(self, *, actor: Actor) -> tuple[int, str]:
        """Sign the current tree head with the ledger key; ``(size, note)``, audited in the
        checkpoint's own transaction.

        Raises:
            ConfigurationError: the keyring has no ledger key.
        """
        cp = self.publish_checkpoint_record(actor=actor)
        return int(cp.size), str(cp.note)

    def publish_checkpoint_record(self, *, actor: Actor) -> Checkpoint:
        """:meth:`publish_checkpoint`, returning the stored checkpoint itself.

        Raises:
            ConfigurationError: the keyring has no ledger key.
        """
        from distillguard.ledger import Ledger

        if self.ledger_key is None:
            raise ConfigurationError("no ledger key in the keyring")
        now = self._now()
        with self._lock, self._store.transaction() as cur:
            ledger = Ledger.open(self._store, origin=self.ledger_origin)
            cp = ledger.publish_checkpoint(self.ledger_key, timestamp=now)
            self._audit(
                cur,
                actor=actor,
                action="ledger_checkpoint",
                target="ledger",
                reason="-",
                outcome=f"size {cp.size}",
                at=now,
            )
        return cp

    def prove(self, exchange_id: str) -> dict[str, Any]:
        """A self-contained inclusion bundle of an exchange against the latest checkpoint.

        Raises:
            InputError: unknown exchange. ProofError: no checkpoint covers it yet.
        """
        from distillguard.ledger import Ledger

        with self._lock:
            ledger = Ledger.open(self._store, origin=self.ledger_origin)
            return dict(ledger.prove(exchange_id).to_dict())

    def audit_ledger(self, *, actor: Actor) -> dict[str, Any]:
        """Audit the ledger against the store and its checkpoints; the report (``ok``,
        ``seconds``, ``at``, ``by`` added), audited with outcome ``ok`` or ``findings``."""
        from distillguard.ledger import Ledger, audit_ledger

        now = self._now()
        with self._lock:
            ledger = Ledger.open(self._store, origin=self.ledger_origin)
            t0 = time.perf_counter()
            report = audit_ledger(ledger, public_keys=list(self.ledger_public_keys))
            out = report.to_dict()
            out["seconds"] = round(time.perf_counter() - t0, 3)
            out["at"] = now
            out["by"] = actor.name
            out["ok"] = report.ok
            with self._store.transaction() as cur:
                self._audit(
                    cur,
                    actor=actor,
                    action="ledger_audit",
                    target="ledger",
                    reason="-",
                    outcome="ok" if report.ok else "findings",
                    at=now,
                )
        return out

    # -- legal holds ----------------------------------------------------------------------------

    def place_hold(self, scope: HoldScope, target: str, *, reason: str, actor: Actor) -> LegalHold:
        """Put an account or an exchange on legal hold (retention and erasure skip it).

        Raises:
            InputError: bad scope, empty target or reason.
        """
        return self.place_holds(scope, [target], reason=reason, actor=actor)[0]

    def place_holds(
        self, scope: HoldScope, targets: Sequence[str], *, reason: str, actor: Actor
    ) -> list[LegalHold]:
        """Put several accounts or exchanges on legal hold in one transaction, one audit row
        each (a target already held keeps its hold, which is returned and audited again).

        Raises:
            InputError: bad scope, empty target or reason.
        """
        from distillguard.privacy import LegalHolds

        now = self._now()
        with self._lock, self._store.transaction() as cur:
            holds = LegalHolds(self._store).place_many(
                scope=scope, targets=targets, reason=reason, actor=actor.name, now=now
            )
            for hold in holds:
                self._audit(
                    cur,
                    actor=actor,
                    action=f"hold_{scope}",
                    target=hold.target,
                    reason=reason,
                    outcome=hold.hold_id,
                    at=now,
                )
        return holds

    def release_hold(self, hold_id: str, *, actor: Actor, reason: str = "-") -> LegalHold:
        """Release a legal hold (it stays listed, with who released it and when).

        Raises:
            InputError: no such hold, or it is already released.
        """
        from distillguard.privacy import LegalHolds

        now = self._now()
        with self._lock, self._store.transaction() as cur:
            hold = LegalHolds(self._store).release(hold_id, actor=actor.name, now=now)
            self._audit(
                cur,
                actor=actor,
                action="release_hold",
                target=hold.target,
                reason=reason.strip() or "-",
                outcome=hold_id,
                at=now,
            )
        return hold

    def holds(
        self, *, include_released: bool = False, target: str | None = None
    ) -> list[LegalHold]:
        """Legal holds, oldest first (active ones only unless ``include_released``)."""
        from distillguard.privacy import LegalHolds

        with self._lock:
            return LegalHolds(self._store).holds(include_released=include_released, target=target)

    # -- the audit trail ------------------------------------------------------------------------

    def audit_trail(
        self, *, target: str | None = None, door: Door | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The latest audit entries (on one target, through one door), newest first."""
        where: list[str] = []
        params: list[Any] = []
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if door is not None:
            where.append("door = ?")
            params.append(door)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        s = self._store
        with self._lock, s.transaction() as cur:
            cur.execute(
                s.q(
                    f"SELECT {_AUDIT_COLS} FROM operations_audit{clause} "
                    "ORDER BY ts DESC, audit_id DESC LIMIT ?"
                ),
                (*params, limit),
            )
            return [_audit_from_row(r) for r in cur.fetchall()]


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InputError("give a reason: it goes in the audit trail")
    if len(text) > 1000:
        raise InputError("the reason is longer than 1,000 characters")
    return text


def operations_from_settings(settings: Settings, *, keys: bool = True) -> Operations:
    """The service for a door outside the server (the CLI, a script): its own store connection
    and passport registry, the keyring's passport and ledger keys when it has them, no live
    policy (overrides go to the store; the gateways reload them). Close it with
    :meth:`Operations.close`. ``keys=False``: the keyring is not opened (no issuer, no ledger
    key), for actions that need none (revocations, holds) where there may be no keyring.

    Raises:
        ConfigurationError, KeyringError: the keyring is missing or unreadable.
        StorageError: the store cannot be opened.
    """
    from distillguard.errors import KeyringError
    from distillguard.keyring import KeyPurpose, open_keyring
    from distillguard.passport import PassportIssuer, open_registry
    from distillguard.store import open_store

    issuer: PassportIssuer | None = None
    ledger_key: SigningKey | None = None
    ledger_public_keys: Sequence[LedgerKey] = []
    if keys:
        keyring = open_keyring(settings)
        try:
            issuer = PassportIssuer(
                key=keyring.signing_key(KeyPurpose.PASSPORT), issuer=settings.passport.issuer
            )
        except KeyringError:
            issuer = None
        try:
            ledger_key = keyring.signing_key(KeyPurpose.LEDGER)
            ledger_public_keys = list(keyring.verify_keys(KeyPurpose.LEDGER))
        except KeyringError:
            ledger_key, ledger_public_keys = None, []
    store = open_store(settings.store_url)
    try:
        registry = open_registry(settings)
    except BaseException:
        store.close()
        raise
    try:
        return Operations(
            store=store,
            registry=registry,
            issuer=issuer,
            ledger_key=ledger_key,
            ledger_origin=settings.ledger.origin,
            ledger_public_keys=ledger_public_keys,
            close_registry=True,
        )
    except BaseException:
        store.close()
        registry.close()
        raise
