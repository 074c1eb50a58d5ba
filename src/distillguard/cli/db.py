"""``distillguard db``: the store's schema version, its migration history, and migrating it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, state_of
from distillguard.config import mask_url
from distillguard.store import (
    MIGRATIONS,
    applied_migrations,
    migrate_schema,
    open_store,
    schema_state,
)
from distillguard.store import SCHEMA_HEAD as HEAD

__all__ = ["register"]

db_app = typer.Typer(
    help=(
        "The store's schema: its version, its migration history, and migrating it to this "
        "release. Processes refuse a store whose schema is older than theirs; a new store is "
        "created at the current version.\n\n"
        "Example: `distillguard db current`, then `distillguard db migrate`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default from config: HOME/store.sqlite)."),
]


def _url(ctx: typer.Context, store_url: str | None) -> str:
    return store_url or state_of(ctx).settings().store_url


def _state_dict(url: str) -> dict[str, Any]:
    with open_store(url, check_schema=False) as store:
        state = schema_state(store)
    return {
        "store": mask_url(url),
        "version": state.version,
        "head": HEAD,
        "up_to_date": state.version == HEAD,
        "new_store": state.empty,
        "made_before_migrations": state.legacy,
        "pending": [{"version": m.version, "name": m.name} for m in state.pending],
    }


@db_app.command("current")
def current(ctx: typer.Context, store_url: StoreOption = None) -> None:
    """The store's schema version, this release's, and what `db migrate` would apply.

    Exit status 1 if the store is not at this release's version.
    """
    state = state_of(ctx)
    data = _state_dict(_url(ctx, store_url))
    if state.json_output:
        emit_json(data)
    else:
        if data["new_store"]:
            where = "new store (no tables yet)"
        elif data["made_before_migrations"]:
            where = "made before schema migrations (no version)"
        else:
            where = f"version {data['version']}"
        console.print(f"{data['store']}: {where}; this release: version {HEAD}")
        for m in data["pending"]:
            console.print(f"  pending: {m['version']} {m['name']}")
        if data["up_to_date"]:
            console.print("up to date")
    if not data["up_to_date"]:
        raise typer.Exit(1)


@db_app.command("history")
def history(ctx: typer.Context, store_url: StoreOption = None) -> None:
    """Every migration of this release, and when each was applied to the store."""
    state = state_of(ctx)
    url = _url(ctx, store_url)
    with open_store(url, check_schema=False) as store:
        done = {a.version: a for a in applied_migrations(store)}
    rows = []
    for m in MIGRATIONS:
        a = done.get(m.version)
        rows.append(
            {
                "version": m.version,
                "name": m.name,
                "applied_at": None
                if a is None
                else datetime.fromtimestamp(a.applied_at_us / 1e6, UTC).isoformat(),
                "applied_by": None if a is None else a.applied_by,
            }
        )
    if state.json_output:
        emit_json({"store": mask_url(url), "head": HEAD, "migrations": rows})
        return
    table = Table(title=f"schema migrations of {mask_url(url)}", title_justify="left")
    for col in ("version", "name", "applied", "by"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["version"]),
            str(r["name"]),
            str(r["applied_at"] or "pending"),
            str(r["applied_by"] or ""),
        )
    console.print(table)


@db_app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    store_url: StoreOption = None,
    to: Annotated[
        int | None,
        typer.Option("--to", help="Stop at this version (default: this release's)."),
    ] = None,
) -> None:
    """Apply the pending migrations, each in its own transaction (safe to run from several
    replicas at once: one applies, the others wait and find nothing left).

    Back up the store first: migrations go forward only.
    """
    state = state_of(ctx)
    url = _url(ctx, store_url)
    with open_store(url, check_schema=False) as store:
        before = schema_state(store).version
        applied = migrate_schema(store, target=to)
        after = schema_state(store).version
    data = {
        "store": mask_url(url),
        "from": before,
        "to": after,
        "applied": [{"version": m.version, "name": m.name} for m in applied],
    }
    if state.json_output:
        emit_json(data)
        return
    for m in applied:
        console.print(f"applied {m.version} {m.name}")
    console.print(f"{mask_url(url)}: version {after}" + ("" if applied else " (nothing to do)"))


def register(app: typer.Typer) -> None:
    """Add ``db`` to the main command."""
    app.add_typer(db_app, name="db")
