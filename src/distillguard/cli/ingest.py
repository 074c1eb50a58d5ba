"""``distillguard ingest``: load a log into the store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.config import Settings, mask_url
from distillguard.errors import EXIT_FINDINGS
from distillguard.privacy.policy import RetentionPolicy
from distillguard.store import Store, open_store
from distillguard.store.ingest import ingest_log

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
    with open_store(url) as store:
        _sign_tombstones(settings, store)
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
            )
        checkpoint = _publish_checkpoint(state.settings(), store)
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


def _sign_tombstones(settings: Settings, store: Store) -> None:
    """Attach the ledger with the ledger key, if a keyring exists, so that the tombstones of
    content minimised at ingest are signed (``ingest_log`` attaches to the same ledger)."""
    if not settings.keyring_path.exists():
        return
    from distillguard.keyring import KeyPurpose, open_keyring
    from distillguard.ledger import Ledger

    ledger = Ledger.attach(store, origin=settings.ledger.origin)
    ledger.signing_key = open_keyring(settings).signing_key(KeyPurpose.LEDGER)


def _publish_checkpoint(settings: Settings, store: Store) -> dict[str, Any] | None:
    """Sign and keep a checkpoint of the ledger after an ingest, if a keyring exists."""
    if not settings.keyring_path.exists():
        return None
    from distillguard.keyring import KeyPurpose, open_keyring
    from distillguard.ledger import Ledger

    ledger = Ledger.open(store, origin=settings.ledger.origin)
    head = ledger.head()
    latest = ledger.latest_checkpoint()
    if latest is not None and (latest.size, latest.root_hash) == (head.size, head.root_hash):
        # nothing new since the last checkpoint: another one at the same size says nothing more
        return {
            "size": latest.size,
            "root_hash": base64.b64encode(latest.root_hash).decode(),
            "root_hash_hex": latest.root_hash.hex(),
            "note": latest.note,
            "published": False,
        }
    key = open_keyring(settings).signing_key(KeyPurpose.LEDGER)
    cp = ledger.publish_checkpoint(key)
    return {
        "size": cp.size,
        "root_hash": base64.b64encode(cp.root_hash).decode(),
        "root_hash_hex": cp.root_hash.hex(),
        "note": cp.note,
        "published": True,
    }


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to the main command."""
    app.command("ingest")(ingest)
