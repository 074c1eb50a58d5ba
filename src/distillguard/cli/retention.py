"""``distillguard retention``: retention limits, legal holds and erasure with receipts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from distillguard._internal.timeutil import parse_rfc3339
from distillguard.cli._common import AppState, console, emit_json, progress_bar, state_of
from distillguard.cli._operations import cli_actor, open_operations
from distillguard.config import Settings, mask_url
from distillguard.errors import InputError
from distillguard.keyring import KeyPurpose, SigningKey, open_keyring
from distillguard.ledger import Ledger
from distillguard.privacy import (
    LegalHold,
    LegalHolds,
    Receipt,
    RetentionPolicy,
    apply_retention,
    erase_account,
    list_receipts,
)
from distillguard.store import Store, open_store

__all__ = ["register"]

logger = logging.getLogger(__name__)

retention_app = typer.Typer(
    help=(
        "Retention limits, legal holds and erasure requests. Erased records stay as leaves of "
        "the ledger, which records who erased what, when and why.\n\n"
        "Example: `distillguard retention apply --dry-run`, then "
        "`distillguard retention erase --account acct-42 --reason 'GDPR request' --actor dpo`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
hold_app = typer.Typer(
    help=(
        "Legal holds: records that retention and erasure must keep.\n\n"
        "Example: `distillguard retention hold add --account acct-42 --reason 'campaign c-7' "
        "--actor analyst`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
retention_app.add_typer(hold_app, name="hold")

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default from config: HOME/store.sqlite)."),
]
ActorOption = Annotated[str, typer.Option("--actor", help="Who does this (recorded).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded).")]


def _open(settings: Settings, url: str | None) -> tuple[Store, Ledger]:
    store = open_store(url or settings.store_url)
    return store, Ledger.open(store, origin=settings.ledger.origin)


def _signing_key(settings: Settings) -> SigningKey | None:
    """The ledger key if a keyring exists: it signs the erasure's tombstones, then a checkpoint.

    Without a keyring the erasure still happens (it may be a legal duty), but its tombstones
    are unsigned: `ledger audit` reports them (`tombstone_unsigned`) until someone holding the
    keyring reviews them and runs `distillguard ledger seal-erasures --yes`.
    """
    if not settings.keyring_path.exists():
        logger.warning(
            "no keyring at %s: the erasure's tombstones are NOT signed and no checkpoint is "
            "signed; `ledger audit` reports them as tombstone_unsigned until `distillguard "
            "ledger seal-erasures --yes` is run with the keyring after review",
            settings.keyring_path,
        )
        return None
    return open_keyring(settings).signing_key(KeyPurpose.LEDGER)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InputError(f"--now: {exc}", hint="e.g. --now 2026-06-01T00:00:00Z") from None


def _write_json(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data + b"\n")
    path.chmod(0o600)


@retention_app.command("show")
def show(ctx: typer.Context) -> None:
    """Show the effective retention policy (from `[retention]` in the configuration).

    Example: `distillguard retention show`
    """
    state = state_of(ctx)
    policy = RetentionPolicy.from_settings(state.settings().retention)
    data = policy.to_dict()
    if state.json_output:
        emit_json(data)
        return
    table = Table("applies to", "content kept", "record kept", "at ingest")
    rows: list[tuple[str, dict[str, Any]]] = [("everyone else", data["default"])]
    for o in data["overrides"]:
        who = ", ".join(f"{k} {', '.join(o[k])}" for k in ("accounts", "tiers", "channels") if o[k])
        rows.insert(len(rows) - 1, (who, o))
    for who, rule in rows:
        table.add_row(
            who, _days(rule["content_days"]), _days(rule["metadata_days"]), rule["minimise"]
        )
    console.print(table)


def _days(value: int | None) -> str:
    return "forever" if value is None else f"{value} days"


@retention_app.command("apply")
def apply(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report exactly what would be erased; change nothing.")
    ] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="Reference time, RFC 3339 (default: now).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who applies it (default from config).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "retention policy",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the full plan (every exchange id) as JSON."),
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Erase content and records past their retention limits, except those on legal hold.

    `--dry-run` lists exactly what `apply` erases at the same `--now`.

    Example: `distillguard retention apply --dry-run --now 2026-06-01T00:00:00Z -o plan.json`
    """
    state = state_of(ctx)
    settings = state.settings()
    policy = RetentionPolicy.from_settings(settings.retention)
    when = _parse_now(now)
    store, ledger = _open(settings, store_url)
    with store, progress_bar(state) as progress:
        task = progress.add_task(
            "retention dry run" if dry_run else "applying retention", total=None
        )
        key = None if dry_run else _signing_key(settings)
        result = apply_retention(
            store,
            policy,
            now=when,
            actor=actor or settings.retention.actor,
            reason=reason,
            dry_run=dry_run,
            ledger=ledger,
            signing_key=key,
        )
        progress.update(task, total=1, completed=1)
    data = result.to_dict(ids=True)
    data["store"] = mask_url(store.url)
    if output is not None:
        import orjson

        _write_json(output, orjson.dumps(data, option=orjson.OPT_INDENT_2))
    if state.json_output:
        emit_json(data)
        return
    counts = result.plan.counts()
    verb = "would erase" if dry_run else "erased"
    if not policy.has_limits:
        console.print("No retention limit is configured ([retention] in distillguard.toml).")
    console.print(
        f"{verb}: content of {counts['content']} exchange(s), {counts['records']} record(s); "
        f"kept by legal hold: {counts['held_content'] + counts['held_records']}"
    )
    for name in ("records", "content"):
        ids = getattr(result.plan, name)
        if ids:
            more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
            console.print(f"  {name}: {', '.join(ids[:5])}{more}")
    if result.receipt is not None:
        console.print(f"receipt {result.receipt.receipt_id}")


@retention_app.command("erase")
def erase(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="Account whose data is erased.")],
    reason: ReasonOption,
    actor: ActorOption,
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="'record' (rows, salts, account row) or 'content' (text only)."
        ),
    ] = "record",
    force: Annotated[
        bool, typer.Option("--force", help="Erase even if a legal hold covers the account.")
    ] = False,
    receipt_path: Annotated[
        Path | None,
        typer.Option("--receipt", help="Receipt file (default HOME/receipts/RECEIPT_ID.json)."),
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Erase an account's records (or only their content) and write a receipt.

    Refused while a legal hold covers the account or one of its exchanges, unless `--force`.

    Example: `distillguard retention erase --account acct-42 --reason 'GDPR #881' --actor dpo`
    """
    if scope not in ("record", "content"):
        raise InputError(f"--scope must be 'record' or 'content', not {scope!r}")
    chosen: Literal["record", "content"] = "record" if scope == "record" else "content"
    state = state_of(ctx)
    settings = state.settings()
    store, ledger = _open(settings, store_url)
    with store:
        receipt = erase_account(
            store,
            account_id=account,
            reason=reason,
            actor=actor,
            scope=chosen,
            force=force,
            ledger=ledger,
            signing_key=_signing_key(settings),
        )
    path = receipt_path or settings.home / "receipts" / f"{receipt.receipt_id}.json"
    _write_json(path, receipt.to_json())
    _print_receipt(state, receipt, path)


def _print_receipt(state: AppState, receipt: Receipt, path: Path) -> None:
    if state.json_output:
        emit_json({**receipt.to_dict(), "receipt_file": str(path)})
        return
    c = receipt.counts
    console.print(
        f"erased ({receipt.scope}) {c['exchanges']} exchange(s) of account "
        f"{receipt.subject['account_id']}; {c['in_ledger']} recorded in the ledger"
    )
    if receipt.forced_holds:
        console.print(f"[yellow]overrode legal hold(s):[/] {', '.join(receipt.forced_holds)}")
    console.print(
        f"ledger: size {receipt.ledger['tree_size']}, root (hex) {receipt.ledger['root_hash_hex']}"
    )
    console.print(f"receipt {receipt.receipt_id} written to {path}")


@retention_app.command("receipts")
def receipts(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    store_url: StoreOption = None,
) -> None:
    """List the erasure and retention receipts kept in the store.

    Example: `distillguard --json retention receipts --limit 5`
    """
    state = state_of(ctx)
    store, _ = _open(state.settings(), store_url)
    with store:
        found = list_receipts(store, limit=limit)
    if state.json_output:
        emit_json(found)
        return
    table = Table("receipt", "kind", "created", "actor", "scope", "counts")
    for r in found:
        counts = ", ".join(f"{k}={v}" for k, v in r["counts"].items() if v)
        table.add_row(r["receipt_id"], r["kind"], r["created_at"], r["actor"], r["scope"], counts)
    console.print(table)


@hold_app.command("add")
def hold_add(
    ctx: typer.Context,
    reason: ReasonOption,
    actor: ActorOption,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="Account to hold (repeatable).")
    ] = None,
    exchange: Annotated[
        list[str] | None, typer.Option("--exchange", help="Exchange to hold (repeatable).")
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Put accounts or exchanges on legal hold.

    Example: `distillguard retention hold add --exchange ex-1 --reason 'bundle b-7' --actor me`
    """
    if bool(account) == bool(exchange):
        raise InputError("give --account or --exchange (one kind per call)")
    state = state_of(ctx)
    ops = open_operations(state.settings(), keys=False, store_url=store_url)
    try:
        if account:
            placed = ops.place_holds("account", account, reason=reason, actor=cli_actor(actor))
        else:
            placed = ops.place_holds(
                "exchange", exchange or [], reason=reason, actor=cli_actor(actor)
            )
    finally:
        ops.close()
    _print_holds(state, placed)


@hold_app.command("release")
def hold_release(
    ctx: typer.Context,
    hold_id: Annotated[str, typer.Argument(help="The hold's id (see `retention hold list`).")],
    actor: ActorOption,
    store_url: StoreOption = None,
) -> None:
    """Release a legal hold (it stays listed with who released it and when).

    Example: `distillguard retention hold release hold-1a2b3c --actor counsel`
    """
    state = state_of(ctx)
    ops = open_operations(state.settings(), keys=False, store_url=store_url)
    try:
        released = ops.release_hold(hold_id, actor=cli_actor(actor))
    finally:
        ops.close()
    _print_holds(state, [released])


@hold_app.command("list")
def hold_list(
    ctx: typer.Context,
    include_released: Annotated[
        bool, typer.Option("--all", help="Include released holds.")
    ] = False,
    store_url: StoreOption = None,
) -> None:
    """List legal holds (active ones unless --all).

    Example: `distillguard retention hold list --all`
    """
    state = state_of(ctx)
    store, _ = _open(state.settings(), store_url)
    with store:
        found = LegalHolds(store).holds(include_released=include_released)
    _print_holds(state, found)


def _print_holds(state: AppState, holds: list[LegalHold]) -> None:
    if state.json_output:
        emit_json([h.to_dict() for h in holds])
        return
    table = Table("hold", "scope", "target", "reason", "created", "by", "released")
    for h in holds:
        d = h.to_dict()
        released = "" if h.active else f"{d['released_at']} by {h.released_by}"
        table.add_row(
            h.hold_id, h.scope, h.target, h.reason, d["created_at"], h.created_by, released
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``retention`` to the main command."""
    app.add_typer(retention_app, name="retention")
