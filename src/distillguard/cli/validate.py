"""``distillguard validate``: check a log against format v1 and quarantine bad records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.errors import EXIT_FINDINGS
from distillguard.records import ReadReport, read_log

__all__ = ["print_report", "register"]


def validate(
    ctx: typer.Context,
    log_dir: Annotated[Path, typer.Argument(help="Log folder (accounts.* and exchanges.*).")],
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where rejected records go (default `HOME/quarantine/validate-<time>.jsonl`)."
        ),
    ] = None,
) -> None:
    """Check every record of a log against format v1.

    Reports counts per table (read = accepted + quarantined), problems with whole files, and the
    first rejected records with file, line, field and reason. Rejected records are copied to a
    quarantine file. Exits with 1 if anything was rejected.

    Example: `distillguard validate ./traffic-2026-02 --quarantine bad.jsonl`
    """
    state = state_of(ctx)
    settings = state.settings()
    if quarantine is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        quarantine = settings.home / "quarantine" / f"validate-{stamp}.jsonl"
    reader = read_log(
        log_dir,
        batch_size=settings.ingest.batch_size,
        max_record_bytes=settings.ingest.max_record_bytes,
        quarantine=quarantine,
        quarantine_max_bytes=settings.ingest.quarantine_max_bytes,
    )
    with progress_bar(state) as progress:
        task = progress.add_task("validating", total=None)
        for accounts in reader.accounts():
            progress.advance(task, len(accounts))
        for exchanges in reader.exchanges():
            progress.advance(task, len(exchanges))
    reader.quarantine.close()
    report = reader.report
    if state.json_output:
        emit_json(report.to_dict())
    else:
        print_report(report, title=f"validate {log_dir}")
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


def print_report(report: ReadReport, *, title: str) -> None:
    """Print a read report as tables (counts, file issues, first rejected records)."""
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("read", justify="right")
    table.add_column("accepted", justify="right")
    table.add_column("quarantined", justify="right")
    for name, c in (("accounts", report.accounts), ("exchanges", report.exchanges)):
        style = "red" if c.quarantined else ""
        table.add_row(name, f"{c.read:,}", f"{c.accepted:,}", f"{c.quarantined:,}", style=style)
    console.print(table)
    for issue in report.issues:
        colour = "red" if issue.severity == "error" else "yellow"
        console.print(f"[{colour}]{issue.severity}[/] {issue.file}: {issue.message}")
    if report.sample:
        console.print("[bold]first rejected records:[/]")
        for entry in report.sample[:10]:
            console.print(f"  {entry.describe()}", markup=False)
        total = report.accounts.quarantined + report.exchanges.quarantined
        if report.quarantine_unwritten:
            console.print(
                f"{total - report.quarantine_unwritten:,} of {total:,} rejected records are in "
                f"{report.quarantine_path} (its size cap was reached)"
            )
        else:
            console.print(f"all {total:,} rejected records are in {report.quarantine_path}")
    if not report.reconciles:  # pragma: no cover - would be a bug
        console.print("[red]counts do not reconcile (a bug: please report it)[/]")


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the main command."""
    app.command("validate")(validate)
