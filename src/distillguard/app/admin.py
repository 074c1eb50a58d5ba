"""The admin API (``/admin/...``): an HTTP door onto the operations service.

Its own bearer credential, compared in constant time. Accounts (with risk and override), actions
set by analysts (throttle, watermark, canary, re-verify, block, allow), the actions log, analyst
verdicts, campaigns (clusters of the online scorer), passports (issue, list, revoke), the ledger
(head, checkpoint, inclusion proof), legal holds (place, release, list) and the audit trail.
Every change goes through :class:`~distillguard.app.operations.Operations`, which audits it
(door ``admin``, actor the request's ``actor`` field, ``admin`` by default). Blocking calls run
in the thread pool.

Errors: unknown account, passport, override, hold or exchange: 404; a request the service
refuses (bad JWK): 422; no checkpoint covering an exchange yet: 409; a missing key in the
keyring or an unusable store: 503.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from distillguard.app.operations import AccountStatus, Actor, Operations, PassportRequest
from distillguard.errors import (
    ConfigurationError,
    DistillGuardError,
    InputError,
    PassportError,
    ProofError,
)
from distillguard.gateway.policy import Action, RiskView

__all__ = [
    "AccountOut",
    "IssuePassport",
    "PlaceHold",
    "ReleaseHold",
    "Revoke",
    "RiskOut",
    "SetAction",
    "SetLabel",
    "admin_router",
]

T = TypeVar("T")

_ACTOR = Field(default="admin", min_length=1, max_length=200)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetAction(_Model):
    """An analyst's action on an account."""

    action: Literal["allow", "throttle", "watermark", "canary", "reverify", "block"]
    reason: str = Field(min_length=1, max_length=1000)
    actor: str = _ACTOR
    expires_in_s: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)


class SetLabel(_Model):
    """An analyst's verdict on an account (kept in the store; ``distillguard tune`` refits on
    the verdicts)."""

    verdict: Literal["campaign", "legitimate"]
    actor: str = _ACTOR
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
    actor: str = _ACTOR


class Revoke(_Model):
    """Why a passport is revoked."""

    reason: str = Field(min_length=1, max_length=1000)
    actor: str = _ACTOR


class PlaceHold(_Model):
    """A legal hold on an account or an exchange."""

    scope: Literal["account", "exchange"]
    target: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    actor: str = _ACTOR


class ReleaseHold(_Model):
    """Who releases a legal hold, and why."""

    reason: str = Field(default="-", min_length=1, max_length=1000)
    actor: str = _ACTOR


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


def _account_out(account: Any, status: AccountStatus) -> AccountOut:
    return AccountOut(
        account_id=account.account_id,
        org_id=account.org_id,
        created_at=account.created_at.isoformat(),
        payment_fingerprint=account.payment_fingerprint,
        risk=_risk(status.risk),
        action=status.decision.action.value,
        action_reason=status.decision.reason,
        override=status.override.to_dict() if status.override else None,
    )


def _call(fn: Callable[[], T]) -> T:
    """Run a service call, turning its errors into HTTP answers."""
    try:
        return fn()
    except PassportError as exc:
        raise HTTPException(status_code=422, detail=exc.message) from None
    except InputError as exc:
        raise HTTPException(status_code=404, detail=exc.message) from None
    except ProofError as exc:
        raise HTTPException(status_code=409, detail=exc.message) from None
    except (ConfigurationError, DistillGuardError) as exc:
        raise HTTPException(status_code=503, detail=exc.message) from None


def admin_router(ops: Operations, *, token: str) -> APIRouter:
    """The ``/admin`` routes over ``ops``, behind the bearer ``token``."""
    expected = token.encode()

    def authorize(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="a valid admin bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="distillguard-admin"'},
            )

    def actor(name: str) -> Actor:
        return Actor(name=name, door="admin")

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorize)])

    @router.get("/accounts", response_model=list[AccountOut], summary="List accounts")
    def list_accounts(
        after: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AccountOut]:
        """Accounts ordered by id, ``limit`` after ``after`` (keyset pagination)."""
        accounts = _call(lambda: ops.accounts(after=after, limit=limit))
        return [_account_out(a, ops.status(a.account_id)) for a in accounts]

    @router.get("/accounts/{account_id}", response_model=AccountOut, summary="One account")
    def get_account(account_id: str) -> AccountOut:
        """An account with its risk score, current action and override."""
        account = _call(lambda: ops.account(account_id))
        if account is None:
            raise HTTPException(status_code=404, detail=f"unknown account {account_id!r}")
        return _account_out(account, ops.status(account_id))

    @router.put("/accounts/{account_id}/action", summary="Set an action on an account")
    def set_action(account_id: str, body: SetAction) -> dict[str, Any]:
        """Throttle, watermark, plant canaries, require re-verification, block or allow."""
        outcome = _call(
            lambda: ops.set_action(
                account_id,
                Action(body.action),
                reason=body.reason,
                actor=actor(body.actor),
                expires_in_s=body.expires_in_s,
            )
        )
        return {
            "override": outcome.override.to_dict(),
            "action_id": outcome.action_id,
            "audit_id": outcome.audit.audit_id,
        }

    @router.delete("/accounts/{account_id}/action", summary="Clear an account's action")
    def clear_action(
        account_id: str,
        actor_name: Annotated[str, Query(alias="actor", min_length=1, max_length=200)] = "admin",
        reason: Annotated[str, Query(max_length=1000)] = "-",
    ) -> dict[str, Any]:
        """Remove the analyst's override (the automatic policy applies again)."""
        removed = _call(
            lambda: ops.clear_action(account_id, actor=actor(actor_name), reason=reason)
        )
        if not removed:
            raise HTTPException(status_code=404, detail=f"no override on {account_id!r}")
        return {"account_id": account_id, "cleared": True}

    @router.get("/actions", summary="The actions log")
    def list_actions(
        account_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The most recent actions (policy and analysts), with their reasons."""
        records = _call(lambda: ops.actions(account_id=account_id, limit=limit))
        return [r.to_dict() for r in records]

    @router.post("/accounts/{account_id}/label", summary="Record an analyst verdict")
    def set_label(account_id: str, body: SetLabel) -> dict[str, Any]:
        """Confirm an account as part of a campaign, or dismiss it as legitimate."""
        label = _call(
            lambda: ops.record_label(
                account_id, body.verdict, actor=actor(body.actor), note=body.note
            )
        )
        return label.to_dict()

    @router.get("/labels", summary="Analyst verdicts")
    def list_labels(history: bool = False) -> list[dict[str, Any]]:
        """The latest verdict per account (``history=true``: every verdict, oldest first)."""
        return [label.to_dict() for label in _call(lambda: ops.labels(history=history))]

    @router.get("/campaigns", summary="Campaigns (clusters) of the online scorer")
    def list_campaigns() -> list[dict[str, Any]]:
        """Clusters with their risk, as the online scorer sees them now."""
        return ops.clusters()

    @router.post("/passports", summary="Issue a passport")
    def issue_passport(body: IssuePassport) -> dict[str, Any]:
        """Issue a passport for an agent public key (Ed25519 JWK) and register it."""
        request = PassportRequest(
            account_id=body.account_id,
            org_id=body.org_id,
            agent_jwk=body.agent_jwk,
            models=tuple(body.models),
            endpoints=tuple(body.endpoints),
            requests_per_minute=body.requests_per_minute,
            tokens_per_day=body.tokens_per_day,
            ttl_days=body.ttl_days,
        )
        try:
            passport = _call(lambda: ops.issue_passport(request, actor=actor(body.actor)))
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"passport": passport.to_dict(), "token": passport.token}

    @router.get("/passports", summary="List passports")
    def list_passports() -> list[dict[str, Any]]:
        """Issued passports with their status (no tokens)."""
        return [r.to_dict() for r in ops.passports()]

    @router.post("/passports/{passport_id}/revoke", summary="Revoke a passport")
    def revoke_passport(passport_id: str, body: Revoke) -> dict[str, Any]:
        """Revoke a passport (effective at once on this replica)."""
        revocation = _call(
            lambda: ops.revoke_passport(passport_id, reason=body.reason, actor=actor(body.actor))
        )
        return dict(revocation.to_dict())

    @router.get("/ledger/head", summary="The ledger's tree head")
    def ledger_head() -> dict[str, Any]:
        """Size and root of the tree, and the latest signed checkpoint."""
        return _call(ops.ledger_head)

    @router.post("/ledger/checkpoint", summary="Publish a signed checkpoint")
    def ledger_checkpoint(
        actor_name: Annotated[str, Query(alias="actor", min_length=1, max_length=200)] = "admin",
    ) -> dict[str, Any]:
        """Sign the current tree head with the keyring's ledger key."""
        size, note = _call(lambda: ops.publish_checkpoint(actor=actor(actor_name)))
        return {"size": size, "note": note}

    @router.get("/ledger/proof/{exchange_id}", summary="Inclusion proof of an exchange")
    def ledger_proof(exchange_id: str) -> dict[str, Any]:
        """A self-contained inclusion bundle against the latest checkpoint."""
        return _call(lambda: ops.prove(exchange_id))

    @router.post("/holds", summary="Place a legal hold")
    def place_hold(body: PlaceHold) -> dict[str, Any]:
        """Put an account or an exchange on legal hold (retention and erasure skip it)."""
        hold = _call(
            lambda: ops.place_hold(
                body.scope, body.target, reason=body.reason, actor=actor(body.actor)
            )
        )
        return hold.to_dict()

    @router.post("/holds/{hold_id}/release", summary="Release a legal hold")
    def release_hold(hold_id: str, body: ReleaseHold) -> dict[str, Any]:
        """Release a hold (it stays listed, with who released it and when)."""
        hold = _call(lambda: ops.release_hold(hold_id, actor=actor(body.actor), reason=body.reason))
        return hold.to_dict()

    @router.get("/holds", summary="Legal holds")
    def list_holds(
        include_released: bool = False,
        target: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[dict[str, Any]]:
        """Legal holds, oldest first (active ones unless ``include_released=true``)."""
        holds = _call(lambda: ops.holds(include_released=include_released, target=target))
        return [h.to_dict() for h in holds]

    @router.get("/audit", summary="The audit trail")
    def audit_trail(
        target: Annotated[str | None, Query(max_length=200)] = None,
        door: Literal["admin", "console", "cli", "internal"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Every operator action, whichever door it came through, newest first."""
        entries = _call(lambda: ops.audit_trail(target=target, door=door, limit=limit))
        return [e.to_dict() for e in entries]

    return router
