"""``distillguard ingest``: load a log into the store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.config import Settings, mask_url
from distillguard.errors import EXIT_FINDINGS
from distillguard.privacy import RetentionPolicy
from distillguard.store import open_store

if TYPE_CHECKING:
    from distillguard.keyring import SigningKey

__all__ = ["register"]

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default from config: HOME/store.sqlite)."),
]


def ingest(
    ctx: typer.Context,
    log_dir: Annotated[Path, typer.Argument(help="Log folder (accounts.* and exchanges.*).")],
    store_url: StoreOption = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(help="Where rejected records go (default `HOME/quarantine/<run>.jsonl`)."),
    ] = None,
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic/--commit-batches",
            help="One transaction for the whole log (default: a failed run stores nothing), or "
            "one per batch (shorter locks next to a live gateway; re-run to complete).",
        ),
    ] = True,
) -> None:
    """Validate a log and load it into the store; every stored exchange joins the ledger.

    Re-ingesting the same log adds nothing (exchange ids are unique) and says so. Rejected
    records are quarantined as by `validate`; exits with 1 if there were any.

    Examples:

        distillguard ingest ./log

        distillguard ingest ./log --store postgresql://dg@127.0.0.1:5432/distillguard
    """
    state = state_of(ctx)
    settings = state.settings()
    url = store_url or settings.store_url
    if quarantine is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        quarantine = settings.home / "quarantine" / f"ingest-{stamp}.jsonl"
    from distillguard.app.ingest import checkpoint_after_ingest, ingest_log

    key = _ledger_key(settings)
    with open_store(url) as store:
        with progress_bar(state, unit="exchanges") as progress:
            task = progress.add_task("ingesting", total=None)
            result = ingest_log(
                store,
                log_dir,
                batch_size=settings.ingest.batch_size,
                max_record_bytes=settings.ingest.max_record_bytes,
                quarantine=quarantine,
                on_progress=lambda n: progress.advance(task, n),
                ledger_origin=settings.ledger.origin,
                retention=RetentionPolicy.from_settings(settings.retention),
                quarantine_max_bytes=settings.ingest.quarantine_max_bytes,
                atomic=atomic,
                ledger_key=key,
            )
        checkpoint = (
            None
            if key is None
            else checkpoint_after_ingest(store, key, origin=settings.ledger.origin).to_dict()
        )
    data = {**result.to_dict(), "store": mask_url(url), "checkpoint": checkpoint}
    if state.json_output:
        emit_json(data)
    else:
        table = Table(title=f"ingest {log_dir} → {mask_url(url)}", title_justify="left")
        for col in ("table", "read", "inserted", "already stored", "quarantined"):
            table.add_column(col, justify="left" if col == "table" else "right")
        for name, c in (("accounts", result.accounts), ("exchanges", result.exchanges)):
            table.add_row(
                name,
                f"{c.read:,}",
                f"{c.inserted:,}",
                f"{c.already_stored:,}",
                f"{c.quarantined:,}",
            )
        console.print(table)
        rate = data["exchanges_per_second"]
        console.print(f"{result.seconds:.1f} s" + (f", {rate:,} exchanges/s" if rate else ""))
        if result.exchanges.inserted == 0 and result.exchanges.already_stored:
            console.print("nothing new: every exchange of this log is already in the store")
        for issue in data["issues"]:
            console.print(f"[red]{issue['severity']}[/] {issue['file']}: {issue['message']}")
        if checkpoint is None:
            console.print("ledger checkpoint not signed: no keyring (run `distillguard keys init`)")
        else:
            console.print(
                f"ledger: {checkpoint['size']:,} leaves, root (base64) {checkpoint['root_hash']}, "
                + (
                    "signed checkpoint published"
                    if checkpoint["published"]
                    else "unchanged since the latest checkpoint (none published)"
                ),
                soft_wrap=True,
            )
        if data["quarantine"]:
            console.print(f"rejected records: {data['quarantine']}")
    rep = result.report
    if rep is not None and not rep.ok:
        raise typer.Exit(EXIT_FINDINGS)


def _ledger_key(settings: Settings) -> SigningKey | None:
    """The ledger key, if a keyring exists: it signs the tombstones of content minimised at
    ingest and the checkpoint after it."""
    if not settings.keyring_path.exists():
        return None
    from distillguard.keyring import KeyPurpose, open_keyring

    return open_keyring(settings).signing_key(KeyPurpose.LEDGER)


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to the main command."""
    app.command("ingest")(ingest)
