"""Retention and erasure that keep the ledger verifiable.

* :func:`plan_retention` says which exchanges the policy erases at a given time: the content of
  those older than their rule's ``content_days``, the whole record of those older than
  ``metadata_days``, and which of these a legal hold keeps.
* :func:`apply_retention` computes the same plan *in the transaction that executes it* and
  returns it, so a dry run at the same ``now`` reports exactly what apply erases.
* :func:`erase_account` erases one account's records (or their content) on request and returns a
  :class:`Receipt`.

Every erased exchange is first recorded in the ledger (``Ledger.record_erasures``, same
transaction): the leaf stays in the tree, so proofs and audits of every other record still
verify, and a tombstone leaf appended to the log commits to the erased leaf, the scope, when, why
and by whom. Given the ledger key, a checkpoint is signed right after, so ``ledger audit``
accepts the erasure at once (without one it reports ``erasure_unsigned`` until a checkpoint is
published). After the commit the store pushes the erased bytes out of its side files
(``Store.finish_erasure``: SQLite WAL checkpoint; PostgreSQL ``VACUUM``), and SQLite overwrites
freed space (``secure_delete``). Erasing content
sets ``messages``, ``response`` and ``reasoning`` to NULL and keeps the metadata, which stays
verifiable because the leaf commits to metadata and content separately (the ledger keeps the
content commitment). Erasing a record deletes its row, salt included: the salted commitment then
says nothing about the erased data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from distillguard._internal.timeutil import format_ts, from_micros, to_micros
from distillguard.errors import InputError, LegalHoldError
from distillguard.keyring import SigningKey
from distillguard.ledger import Ledger
from distillguard.privacy._holds import HELD_SQL, LegalHolds, ensure_privacy_tables
from distillguard.privacy._policy import AccountProfile, RetentionPolicy, RetentionRule
from distillguard.store import Cursor, Store

__all__ = [
    "ErasureScope",
    "Receipt",
    "RetentionPlan",
    "RetentionResult",
    "apply_retention",
    "erase_account",
    "list_receipts",
    "plan_retention",
]

logger = logging.getLogger(__name__)

ErasureScope = Literal["content", "record"]
_PAGE: Final = 5000
_CHUNK: Final = 900

_CANDIDATES_SQL: Final = (
    "SELECT e.seq, e.exchange_id, e.account_id, e.ts, "
    "CASE WHEN e.messages IS NOT NULL OR e.response IS NOT NULL OR e.reasoning IS NOT NULL "
    "THEN 1 ELSE 0 END, a.tier, a.signup_channel, "
    f"CASE WHEN {HELD_SQL} THEN 1 ELSE 0 END "
    "FROM exchanges e LEFT JOIN accounts a ON a.account_id = e.account_id "
    "WHERE e.ts < ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What the policy erases at ``now``: exchange ids by scope, and those a hold keeps.

    An exchange past its metadata limit is in ``records`` only (its content goes with it).
    ``held_records`` and ``held_content`` would be erased but for a legal hold.
    """

    now: datetime
    policy: dict[str, Any]
    content: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    held_content: tuple[str, ...] = ()
    held_records: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing is to be erased."""
        return not (self.content or self.records)

    def counts(self) -> dict[str, int]:
        """Number of exchanges in each list."""
        return {
            "content": len(self.content),
            "records": len(self.records),
            "held_content": len(self.held_content),
            "held_records": len(self.held_records),
        }

    def to_dict(self, *, ids: bool = True) -> dict[str, Any]:
        """A JSON-ready description (with the id lists unless ``ids`` is false)."""
        out: dict[str, Any] = {
            "now": format_ts(self.now),
            "policy": self.policy,
            "counts": self.counts(),
        }
        if ids:
            out.update(
                content=list(self.content),
                records=list(self.records),
                held_content=list(self.held_content),
                held_records=list(self.held_records),
            )
        return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of an erasure for the person who asked and for the auditor.

    It names what was erased (exchange ids and their leaf indices), how many, when, by whom and
    why, which legal holds were overridden, and the ledger state after the erasure (tree size,
    root and, when a ledger key was given, a checkpoint signed after it).
    """

    receipt_id: str
    kind: Literal["erasure", "retention"]
    created_at: datetime
    actor: str
    reason: str
    scope: str
    subject: dict[str, Any]
    counts: dict[str, int]
    exchanges: tuple[dict[str, Any], ...]
    forced_holds: tuple[str, ...]
    ledger: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The receipt as JSON."""
        return {
            "receipt_id": self.receipt_id,
            "kind": self.kind,
            "created_at": format_ts(self.created_at),
            "actor": self.actor,
            "reason": self.reason,
            "scope": self.scope,
            "subject": self.subject,
            "counts": self.counts,
            "exchanges": list(self.exchanges),
            "forced_holds": list(self.forced_holds),
            "ledger": self.ledger,
        }

    def to_json(self) -> bytes:
        """The receipt as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What :func:`apply_retention` did: the plan it executed and its receipt (None in a dry
    run or when there was nothing to erase)."""

    plan: RetentionPlan
    applied: bool
    not_in_ledger: int = 0
    receipt: Receipt | None = None

    def to_dict(self, *, ids: bool = True) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "applied": self.applied,
            "not_in_ledger": self.not_in_ledger,
            "plan": self.plan.to_dict(ids=ids),
            "receipt": None if self.receipt is None else self.receipt.to_dict(),
        }


# -- planning -----------------------------------------------------------------------------------


def _loosest_cutoff(policy: RetentionPolicy, now: datetime) -> datetime | None:
    cutoffs = [
        c
        for rule in policy.rules
        for c in (rule.content_cutoff(now), rule.metadata_cutoff(now))
        if c is not None
    ]
    return max(cutoffs) if cutoffs else None


def _plan(store: Store, cur: Cursor, policy: RetentionPolicy, now: datetime) -> RetentionPlan:
    now = now.astimezone(UTC)
    cutoff = _loosest_cutoff(policy, now)
    content: list[str] = []
    records: list[str] = []
    held_content: list[str] = []
    held_records: list[str] = []
    if cutoff is not None:
        rules: dict[tuple[str, str | None, str | None], RetentionRule] = {}
        sql = store.q(_CANDIDATES_SQL)
        cutoff_us = to_micros(cutoff)
        last = 0
        while True:
            cur.execute(sql, (cutoff_us, last, _PAGE))
            rows = cur.fetchall()
            if not rows:
                break
            last = int(rows[-1][0])
            for _seq, exchange_id, account_id, ts, has_content, tier, channel, held in rows:
                key = (account_id, tier, channel)
                rule = rules.get(key)
                if rule is None:
                    rule = rules[key] = policy.rule_for(AccountProfile(account_id, tier, channel))
                when = from_micros(int(ts))
                meta_cut = rule.metadata_cutoff(now)
                content_cut = rule.content_cutoff(now)
                if meta_cut is not None and when < meta_cut:
                    (held_records if held else records).append(exchange_id)
                elif content_cut is not None and when < content_cut and has_content:
                    (held_content if held else content).append(exchange_id)
    return RetentionPlan(
        now=now,
        policy=policy.to_dict(),
        content=tuple(content),
        records=tuple(records),
        held_content=tuple(held_content),
        held_records=tuple(held_records),
    )


def plan_retention(store: Store, policy: RetentionPolicy, *, now: datetime) -> RetentionPlan:
    """What :func:`apply_retention` would erase at ``now`` (nothing is changed)."""
    ensure_privacy_tables(store)
    with store.transaction() as cur:
        return _plan(store, cur, policy, now)


# -- erasing ------------------------------------------------------------------------------------


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def _erase(
    store: Store,
    ledger: Ledger,
    cur: Cursor,
    ids: Sequence[str],
    *,
    scope: ErasureScope,
    reason: str,
    actor: str,
    now: datetime,
    key: SigningKey | None = None,
) -> int:
    """Record and perform the erasure of ``ids``; returns how many had no ledger leaf.

    The tombstones are signed with ``key`` (the ledger key); without it they are unsigned and
    ``ledger audit`` reports them until ``ledger seal-erasures`` signs them after review.
    """
    if not ids:
        return 0
    # Those stored before the ledger was attached have no leaf: nothing to record there.
    _, missing = ledger.record_erasures(
        cur, ids, scope=scope, reason=reason, actor=actor, erased_at=now, key=key
    )
    not_in_ledger = len(missing)
    store.prepare_erasure(cur)
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        if scope == "record":
            cur.execute(store.q(f"DELETE FROM exchanges WHERE exchange_id IN ({marks})"), chunk)
        else:
            cur.execute(
                store.q(
                    "UPDATE exchanges SET messages = NULL, response = NULL, reasoning = NULL "
                    f"WHERE exchange_id IN ({marks})"
                ),
                chunk,
            )
    if not_in_ledger:
        logger.warning("%d erased exchange(s) had no ledger leaf", not_in_ledger)
    return not_in_ledger


def _check_who(reason: str, actor: str) -> tuple[str, str]:
    if not reason.strip():
        raise InputError("an erasure needs a reason", hint="e.g. --reason 'GDPR art. 17 request'")
    if not actor.strip():
        raise InputError("an erasure needs an actor", hint="e.g. --actor 'dpo@example.com'")
    return reason.strip(), actor.strip()


def _ledger_state(ledger: Ledger, signing_key: SigningKey | None, now: datetime) -> dict[str, Any]:
    if signing_key is not None:
        ledger.publish_checkpoint(signing_key, timestamp=now)
    head = ledger.head()
    latest = ledger.latest_checkpoint()
    return {
        "origin": head.origin,
        "tree_size": head.size,
        "root_hash_hex": head.root_hash.hex(),
        "checkpoint": None if latest is None else latest.note,
        "checkpoint_signed_after_erasure": signing_key is not None,
    }


def _save_receipt(store: Store, receipt: Receipt) -> None:
    with store.transaction() as cur:
        cur.execute(
            store.q(
                "INSERT INTO privacy_receipts (receipt_id, kind, created_at, actor, body) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            (
                receipt.receipt_id,
                receipt.kind,
                to_micros(receipt.created_at),
                receipt.actor,
                receipt.to_json().decode(),
            ),
        )


def apply_retention(
    store: Store,
    policy: RetentionPolicy,
    *,
    now: datetime,
    actor: str,
    reason: str = "retention policy",
    dry_run: bool = False,
    ledger: Ledger | None = None,
    signing_key: SigningKey | None = None,
) -> RetentionResult:
    """Erase what the policy says is past its limit at ``now``, except what is on hold.

    The plan is computed and executed in one transaction; the result carries it, so it can be
    compared with a dry run. With ``dry_run`` nothing changes (same as :func:`plan_retention`).

    Args:
        store: the store.
        policy: the retention policy.
        now: the reference time (limits count back from it).
        actor: who applies it (recorded with every erasure).
        reason: why (recorded with every erasure).
        dry_run: only report.
        ledger: the store's ledger (opened if not given).
        signing_key: the ledger key; if given, the tombstones are signed with it and a
            checkpoint is signed after the erasure (without it, the audit reports the
            tombstones as ``tombstone_unsigned`` until ``ledger seal-erasures`` signs them).
    """
    reason, actor = _check_who(reason, actor)
    ensure_privacy_tables(store)
    if dry_run:
        return RetentionResult(plan=plan_retention(store, policy, now=now), applied=False)
    ledger = ledger if ledger is not None else Ledger.open(store)
    now = now.astimezone(UTC)
    with store.transaction() as cur:
        plan = _plan(store, cur, policy, now)
        missing = _erase(
            store,
            ledger,
            cur,
            plan.records,
            scope="record",
            reason=reason,
            actor=actor,
            now=now,
            key=signing_key,
        )
        missing += _erase(
            store,
            ledger,
            cur,
            plan.content,
            scope="content",
            reason=reason,
            actor=actor,
            now=now,
            key=signing_key,
        )
    logger.info("retention applied: %s", plan.counts())
    if plan.empty:
        return RetentionResult(plan=plan, applied=True, not_in_ledger=missing)
    store.finish_erasure()
    receipt = Receipt(
        receipt_id=f"rcpt-{uuid.uuid4().hex}",
        kind="retention",
        created_at=now,
        actor=actor,
        reason=reason,
        scope="policy",
        subject={"policy": plan.policy},
        counts={**plan.counts(), "not_in_ledger": missing},
        exchanges=(),
        forced_holds=(),
        ledger=_ledger_state(ledger, signing_key, now),
    )
    _save_receipt(store, receipt)
    return RetentionResult(plan=plan, applied=True, not_in_ledger=missing, receipt=receipt)


def erase_account(
    store: Store,
    *,
    account_id: str,
    reason: str,
    actor: str,
    scope: ErasureScope = "record",
    force: bool = False,
    now: datetime | None = None,
    ledger: Ledger | None = None,
    signing_key: SigningKey | None = None,
) -> Receipt:
    """Erase an account's exchanges (``record``: rows, salts and the account row; ``content``:
    prompts, responses and reasoning only) and return the receipt (also kept in the store).

    Raises:
        LegalHoldError: a legal hold covers the account or one of its exchanges (and not
            ``force``); nothing is erased.
        InputError: unknown account, bad scope, empty reason or actor.
    """
    if scope not in ("content", "record"):
        raise InputError(f"erasure scope must be 'content' or 'record', not {scope!r}")
    reason, actor = _check_who(reason, actor)
    holds = LegalHolds(store)
    ledger = ledger if ledger is not None else Ledger.open(store)
    when = (now or datetime.now(UTC)).astimezone(UTC)
    q = store.q
    with store.transaction() as cur:
        active = holds.holds_on_account(cur, account_id)
        if active and not force:
            raise LegalHoldError(
                f"account {account_id!r} is under {len(active)} legal hold(s): "
                f"{', '.join(h.hold_id for h in active[:5])}",
                hint="release the hold(s) first, or force the erasure (--force)",
                details={"holds": [h.to_dict() for h in active]},
            )
        cur.execute(
            q("SELECT exchange_id FROM exchanges WHERE account_id = ? ORDER BY seq"), (account_id,)
        )
        ids = [str(r[0]) for r in cur.fetchall()]
        cur.execute(q("SELECT 1 FROM accounts WHERE account_id = ?"), (account_id,))
        has_account = cur.fetchone() is not None
        if not ids and not has_account:
            raise InputError(f"no account {account_id!r} and no exchanges of it in the store")
        missing = _erase(
            store,
            ledger,
            cur,
            ids,
            scope=scope,
            reason=reason,
            actor=actor,
            now=when,
            key=signing_key,
        )
        account_deleted = False
        if scope == "record" and has_account:
            store.prepare_erasure(cur)
            cur.execute(q("DELETE FROM accounts WHERE account_id = ?"), (account_id,))
            account_deleted = True
    store.finish_erasure()
    leaves = []
    for exchange_id in ids:
        leaf = ledger.leaf_for(exchange_id)
        leaves.append(
            {"exchange_id": exchange_id, "leaf_index": None if leaf is None else leaf.leaf_index}
        )
    receipt = Receipt(
        receipt_id=f"rcpt-{uuid.uuid4().hex}",
        kind="erasure",
        created_at=when,
        actor=actor,
        reason=reason,
        scope=scope,
        subject={"account_id": account_id},
        counts={
            "exchanges": len(ids),
            "in_ledger": len(ids) - missing,
            "not_in_ledger": missing,
            "account_rows": int(account_deleted),
            "forced_holds": len(active),
        },
        exchanges=tuple(leaves),
        forced_holds=tuple(h.hold_id for h in active),
        ledger=_ledger_state(ledger, signing_key, when),
    )
    _save_receipt(store, receipt)
    logger.info(
        "erased %s of account (%d exchanges), receipt %s", scope, len(ids), receipt.receipt_id
    )
    return receipt


def list_receipts(store: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent receipts kept in the store, newest first, as JSON objects."""
    ensure_privacy_tables(store)
    with store.transaction() as cur:
        cur.execute(
            store.q("SELECT body FROM privacy_receipts ORDER BY created_at DESC LIMIT ?"), (limit,)
        )
        return [orjson.loads(r[0]) for r in cur.fetchall()]
