"""``distillguard export``: write the store as a log folder (Parquet) for analytics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.cli.ingest import StoreOption
from distillguard.config import mask_url
from distillguard.store import open_store
from distillguard.store.export import export_log

__all__ = ["register"]


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    store_url: StoreOption = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl.gz or jsonl.")] = "parquet",
) -> None:
    """Export every stored account and exchange as a format v1 log folder.

    Example: `distillguard export --out ./analytics && duckdb -c "SELECT model, count(*) FROM
    'analytics/exchanges.parquet' GROUP BY 1"`
    """
    if fmt not in ("parquet", "jsonl.gz", "jsonl"):
        raise typer.BadParameter("must be parquet, jsonl.gz or jsonl", param_hint="--format")
    chosen: Literal["parquet", "jsonl.gz", "jsonl"] = fmt  # type: ignore[assignment]
    state = state_of(ctx)
    url = store_url or state.settings().store_url
    with open_store(url) as store, progress_bar(state, unit="exchanges") as progress:
        task = progress.add_task("exporting", total=store.count("exchanges"))
        accounts, exchanges = export_log(
            store, out, fmt=chosen, on_progress=lambda n: progress.advance(task, n)
        )
    data = {"store": mask_url(url), "out": str(out), "accounts": accounts, "exchanges": exchanges}
    if state.json_output:
        emit_json(data)
    else:
        console.print(f"exported {accounts:,} accounts and {exchanges:,} exchanges to {out}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the main command."""
    app.command("export")(export)
