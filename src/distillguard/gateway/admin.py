"""The admin API (``/admin/...``): its own bearer credential, compared in constant time.

Accounts (with risk and override), actions set by analysts (throttle, watermark, canary,
re-verify, block, allow), the actions log, campaigns (clusters of the online scorer), passports
(issue, list, revoke), the ledger (head, checkpoint, inclusion proof). Blocking store calls run
in the thread pool on one admin store connection, under a lock.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.errors import DistillGuardError, InputError, PassportError, ProofError
from distillguard.gateway.policy import (
    Action,
    ActionDecision,
    OnlineScorer,
    Override,
    Policy,
    RiskView,
    action_from_row,
    insert_action,
    new_action_record,
)
from distillguard.store import Store

__all__ = [
    "AccountOut",
    "AdminContext",
    "IssuePassport",
    "Revoke",
    "RiskOut",
    "SetAction",
    "SetLabel",
    "admin_router",
    "load_overrides",
]


@dataclass
class AdminContext:
    """What the admin API works on."""

    store: Store
    lock: threading.Lock
    policy: Policy
    scorer: OnlineScorer
    registry: Any
    issuer: Any
    revocations: Any
    ledger_key: Any
    token: str
    ledger_origin: str
    clusters: Callable[[], list[dict[str, Any]]] | None = None


def load_overrides(store: Store) -> list[Override]:
    """Every override in ``gateway_overrides``."""
    with store.transaction() as cur:
        cur.execute(
            "SELECT account_id, action, reason, actor, set_at, expires_at FROM gateway_overrides"
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


# -- request and response models ----------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetAction(_Model):
    """An analyst's action on an account."""

    action: Literal["allow", "throttle", "watermark", "canary", "reverify", "block"]
    reason: str = Field(min_length=1, max_length=1000)
    actor: str = Field(default="admin", min_length=1, max_length=200)
    expires_in_s: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)


class SetLabel(_Model):
    """An analyst's verdict on an account (kept in the store; ``distillguard tune`` refits on
    the verdicts)."""

    verdict: Literal["campaign", "legitimate"]
    actor: str = Field(default="admin", min_length=1, max_length=200)
    note: str = Field(default="", max_length=1000)


class IssuePassport(_Model):
    """A passport to issue for an agent key."""

    account_id: str = Field(min_length=1, max_length=200)
    org_id: str = Field(min_length=1, max_length=200)
    agent_jwk: dict[str, str]
    models: list[str] = Field(default_factory=lambda: ["*"], max_length=100)
    endpoints: list[str] = Field(default_factory=lambda: ["/v1/*"], max_length=100)
    requests_per_minute: int = Field(default=60, ge=1, le=10_000_000)
    tokens_per_day: int = Field(default=1_000_000, ge=1, le=10**12)
    ttl_days: int = Field(default=30, ge=1, le=3650)


class Revoke(_Model):
    """Why a passport is revoked."""

    reason: str = Field(min_length=1, max_length=1000)


class RiskOut(BaseModel):
    """An online risk score."""

    account_risk: float
    cluster_id: str | None
    cluster_risk: float
    reasons: list[str]


class AccountOut(BaseModel):
    """An account with its risk and the action that applies to it."""

    account_id: str
    org_id: str | None
    created_at: str
    payment_fingerprint: str | None = None
    risk: RiskOut
    action: str
    action_reason: str
    override: dict[str, Any] | None


def _risk(score: RiskView) -> RiskOut:
    return RiskOut(
        account_risk=score.account_risk,
        cluster_id=score.cluster_id,
        cluster_risk=score.cluster_risk,
        reasons=list(score.reasons),
    )


def admin_router(ctx: AdminContext) -> APIRouter:
    """The ``/admin`` routes over ``ctx``."""
    expected = ctx.token.encode()

    def authorize(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="a valid admin bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="distillguard-admin"'},
            )

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorize)])

    def locked(fn: Callable[[], Any]) -> Any:
        with ctx.lock:
            try:
                return fn()
            except InputError as exc:
                raise HTTPException(status_code=404, detail=exc.message) from None
            except ProofError as exc:
                raise HTTPException(status_code=409, detail=exc.message) from None
            except DistillGuardError as exc:
                raise HTTPException(status_code=503, detail=exc.message) from None

    def account_out(account: Any) -> AccountOut:
        score = ctx.scorer.score(account.account_id)
        decision: ActionDecision = ctx.policy.decide(account.account_id, score)
        o = ctx.policy.override(account.account_id)
        return AccountOut(
            account_id=account.account_id,
            org_id=account.org_id,
            created_at=account.created_at.isoformat(),
            payment_fingerprint=account.payment_fingerprint,
            risk=_risk(score),
            action=decision.action.value,
            action_reason=decision.reason,
            override=o.to_dict() if o else None,
        )

    @router.get("/accounts", response_model=list[AccountOut], summary="List accounts")
    def list_accounts(
        after: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AccountOut]:
        """Accounts ordered by id, ``limit`` after ``after`` (keyset pagination)."""
        from distillguard.store.base import ACCOUNT_COLUMNS, account_from_row

        def run() -> list[Any]:
            with ctx.store.transaction() as cur:
                cur.execute(
                    ctx.store.q(
                        f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts WHERE account_id > ? "
                        "ORDER BY account_id LIMIT ?"
                    ),
                    (after, limit),
                )
                return [account_from_row(r) for r in cur.fetchall()]

        return [account_out(a) for a in locked(run)]

    @router.get("/accounts/{account_id}", response_model=AccountOut, summary="One account")
    def get_account(account_id: str) -> AccountOut:
        """An account with its risk score, current action and override."""
        account = locked(lambda: ctx.store.get_account(account_id))
        if account is None:
            raise HTTPException(status_code=404, detail=f"unknown account {account_id!r}")
        return account_out(account)

    @router.put("/accounts/{account_id}/action", summary="Set an action on an account")
    def set_action(account_id: str, body: SetAction) -> dict[str, Any]:
        """Throttle, watermark, plant canaries, require re-verification, block or allow."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
        override = Override(
            account_id=account_id,
            action=Action(body.action),
            reason=body.reason,
            actor=body.actor,
            set_at=now,
            expires_at=expires,
        )
        record = new_action_record(
            account_id=account_id,
            exchange_id=None,
            decision=ActionDecision(
                action=override.action,
                reason=f"set by {body.actor}: {body.reason}",
                source="admin",
                risk=ctx.scorer.score(account_id),
            ),
        )

        def run() -> None:
            s = ctx.store
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
                        override.action.value,
                        override.reason,
                        override.actor,
                        to_micros(now),
                        to_micros(expires) if expires else None,
                    ),
                )
                insert_action(s, cur, record)
            ctx.policy.set_overrides(load_overrides(s))

        locked(run)
        return {"override": override.to_dict(), "action_id": record.action_id}

    @router.delete("/accounts/{account_id}/action", summary="Clear an account's action")
    def clear_action(account_id: str) -> dict[str, Any]:
        """Remove the analyst's override (the automatic policy applies again)."""

        def run() -> int:
            s = ctx.store
            with s.transaction() as cur:
                cur.execute(
                    s.q("DELETE FROM gateway_overrides WHERE account_id = ?"), (account_id,)
                )
                n = int(cur.rowcount)  # type: ignore[attr-defined]
            ctx.policy.set_overrides(load_overrides(s))
            return n

        removed = locked(run)
        if not removed:
            raise HTTPException(status_code=404, detail=f"no override on {account_id!r}")
        return {"account_id": account_id, "cleared": True}

    @router.get("/actions", summary="The actions log")
    def list_actions(
        account_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The most recent actions (policy and analysts), with their reasons."""

        def run() -> list[dict[str, Any]]:
            s = ctx.store
            cols = (
                "action_id, ts, account_id, exchange_id, action, reason, source, risk, cluster_id"
            )
            with s.transaction() as cur:
                if account_id is None:
                    cur.execute(
                        s.q(f"SELECT {cols} FROM gateway_actions ORDER BY ts DESC LIMIT ?"),
                        (limit,),
                    )
                else:
                    cur.execute(
                        s.q(
                            f"SELECT {cols} FROM gateway_actions WHERE account_id = ? "
                            "ORDER BY ts DESC LIMIT ?"
                        ),
                        (account_id, limit),
                    )
                return [action_from_row(r).to_dict() for r in cur.fetchall()]

        result: list[dict[str, Any]] = locked(run)
        return result

    @router.post("/accounts/{account_id}/label", summary="Record an analyst verdict")
    def set_label(account_id: str, body: SetLabel) -> dict[str, Any]:
        """Confirm an account as part of a campaign, or dismiss it as legitimate."""
        from distillguard.monitor.feedback import record_label

        def run() -> dict[str, Any]:
            if ctx.store.get_account(account_id) is None:
                raise HTTPException(status_code=404, detail=f"unknown account {account_id!r}")
            return record_label(
                ctx.store, account_id, body.verdict, actor=body.actor, note=body.note
            ).to_dict()

        result: dict[str, Any] = locked(run)
        return result

    @router.get("/labels", summary="Analyst verdicts")
    def list_labels(history: bool = False) -> list[dict[str, Any]]:
        """The latest verdict per account (``history=true``: every verdict, oldest first)."""
        from distillguard.monitor.feedback import load_labels

        labels = locked(lambda: load_labels(ctx.store, history=history))
        return [label.to_dict() for label in labels]

    @router.get("/campaigns", summary="Campaigns (clusters) of the online scorer")
    def list_campaigns() -> list[dict[str, Any]]:
        """Clusters with their risk, as the online scorer sees them now."""
        return ctx.clusters() if ctx.clusters is not None else []

    @router.post("/passports", summary="Issue a passport")
    def issue_passport(body: IssuePassport) -> dict[str, Any]:
        """Issue a passport for an agent public key (Ed25519 JWK) and register it."""
        from distillguard.passport import RateTier, Scopes

        if ctx.issuer is None:
            raise HTTPException(status_code=503, detail="no passport issuer key in the keyring")
        try:
            passport = ctx.issuer.issue(
                account_id=body.account_id,
                org_id=body.org_id,
                agent_public_jwk=body.agent_jwk,
                scopes=Scopes(models=tuple(body.models), endpoints=tuple(body.endpoints)),
                rate=RateTier(
                    requests_per_minute=body.requests_per_minute,
                    tokens_per_day=body.tokens_per_day,
                ),
                ttl_s=body.ttl_days * 86400,
            )
        except (PassportError, ValueError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        ctx.registry.record_issued(passport)
        return {"passport": passport.to_dict(), "token": passport.token}

    @router.get("/passports", summary="List passports")
    def list_passports() -> list[dict[str, Any]]:
        """Issued passports with their status (no tokens)."""
        return [r.to_dict() for r in ctx.registry.list_passports()]

    @router.post("/passports/{passport_id}/revoke", summary="Revoke a passport")
    def revoke_passport(passport_id: str, body: Revoke) -> dict[str, Any]:
        """Revoke a passport (effective at once on this replica)."""
        if ctx.registry.get(passport_id) is None:
            raise HTTPException(status_code=404, detail=f"unknown passport {passport_id!r}")
        target = ctx.revocations if hasattr(ctx.revocations, "revoke") else ctx.registry
        revocation = target.revoke(passport_id, reason=body.reason)
        return dict(revocation.to_dict())

    @router.get("/ledger/head", summary="The ledger's tree head")
    def ledger_head() -> dict[str, Any]:
        """Size and root of the tree, and the latest signed checkpoint."""
        from distillguard.ledger import Ledger

        def run() -> dict[str, Any]:
            ledger = Ledger.open(ctx.store, origin=ctx.ledger_origin)
            cp = ledger.latest_checkpoint()
            return {
                **ledger.head().to_dict(),
                "checkpoint": cp.note if cp else None,
            }

        result: dict[str, Any] = locked(run)
        return result

    @router.post("/ledger/checkpoint", summary="Publish a signed checkpoint")
    def ledger_checkpoint() -> dict[str, Any]:
        """Sign the current tree head with the keyring's ledger key."""
        from distillguard.ledger import Ledger

        if ctx.ledger_key is None:
            raise HTTPException(status_code=503, detail="no ledger key in the keyring")

        def run() -> dict[str, Any]:
            ledger = Ledger.open(ctx.store, origin=ctx.ledger_origin)
            cp = ledger.publish_checkpoint(ctx.ledger_key)
            return {"size": cp.size, "note": cp.note}

        result: dict[str, Any] = locked(run)
        return result

    @router.get("/ledger/proof/{exchange_id}", summary="Inclusion proof of an exchange")
    def ledger_proof(exchange_id: str) -> dict[str, Any]:
        """A self-contained inclusion bundle against the latest checkpoint."""
        from distillguard.ledger import Ledger

        def run() -> dict[str, Any]:
            ledger = Ledger.open(ctx.store, origin=ctx.ledger_origin)
            return dict(ledger.prove(exchange_id).to_dict())

        result: dict[str, Any] = locked(run)
        return result

    return router
