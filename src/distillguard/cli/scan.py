"""``distillguard scan`` and ``distillguard eval-scan``: find distillation campaigns, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of

__all__ = ["register"]


def scan_cmd(
    ctx: typer.Context,
    log: Annotated[Path | None, typer.Argument(help="Log folder (format v1).")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Scan a store instead (sqlite:// or postgresql://)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("scan-out"),
    engine: Annotated[str, typer.Option("--engine", help="duckdb (default) | spark")] = "duckdb",
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB memory limit, e.g. 8GB.")
    ] = "8GB",
) -> None:
    """Scan a log (or a store) for distillation campaigns; write account scores and campaigns.

    Example: `distillguard scan ./sim --out ./scan-out`
    """
    from distillguard.errors import ConfigurationError
    from distillguard.monitor import ScanConfig, scan

    state = state_of(ctx)
    if engine not in ("duckdb", "spark"):
        raise ConfigurationError(f"unknown --engine {engine!r}", hint="use duckdb or spark")
    config = ScanConfig(
        engine="spark" if engine == "spark" else "duckdb", memory_limit=memory_limit
    )
    with progress_bar(state, unit="stages") as progress:
        task = progress.add_task("scanning", total=10)

        def on_stage(name: str) -> None:
            progress.update(task, description=name, advance=1)

        result = scan(log, store_url=store, out=out, config=config, on_stage=on_stage)
        progress.update(task, completed=10, description="done")
    summary = result.summary()
    if state.json_output:
        emit_json({"ok": True, "out": str(out), **summary})
        return
    console.print(
        f"scanned {summary['exchanges_read'] - summary['exchanges_skipped']:,} exchanges of "
        f"{summary['accounts_scored']:,} accounts "
        f"(skipped {summary['exchanges_skipped']:,} invalid exchanges, "
        f"{summary['accounts_skipped']:,} invalid accounts)"
    )
    if result.unavailable:
        console.print("unavailable signals: " + ", ".join(result.unavailable))
    table = Table(title=f"{len(result.campaigns)} campaigns, {result.flagged:,} flagged accounts")
    for col in ("campaign", "accounts", "score", "exchanges", "first seen", "last seen"):
        table.add_column(col)
    for c in sorted(result.campaigns, key=lambda c: -len(c.accounts)):
        d = c.to_dict()
        table.add_row(
            c.campaign_id,
            f"{len(c.accounts):,}",
            f"{c.score:.2f}",
            f"{c.exchanges:,}",
            d["first_seen"][:16],
            d["last_seen"][:16],
        )
    console.print(table)
    console.print(f"results in {out}")


def eval_scan_cmd(
    ctx: typer.Context,
    results: Annotated[Path, typer.Argument(help="Output folder of distillguard scan.")],
    labels: Annotated[Path, typer.Option("--labels", help="labels.parquet of the log.")],
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="The scanned log, for the PRADA/SEAT baselines (default: the labels' folder).",
        ),
    ] = None,
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Skip PRADA and SEAT (they are slow).")
    ] = False,
    no_replay: Annotated[
        bool,
        typer.Option(
            "--no-replay",
            help="Skip the time-ordered replay through the online scorer (exchanges each "
            "campaign got before it was flagged; holds the log in memory).",
        ),
    ] = False,
) -> None:
    """Evaluate scan results against labels, next to the PRADA and SEAT baselines.

    Also replays the log in time order through the online scorer and prints how many exchanges
    each true campaign got before it was flagged (`--no-replay` skips it).

    Example: `distillguard eval-scan ./scan-out --labels ./sim/labels.parquet`
    """
    from distillguard.monitor.evaluate import evaluate_scan

    state = state_of(ctx)
    log = log or labels.parent
    report = evaluate_scan(
        results, labels, log=log, baselines=not no_baselines, replay=not no_replay
    )
    if state.json_output:
        emit_json({"ok": True, **report.to_dict()})
        return
    rows = [report.ours, *report.baselines]
    pops = sorted({p for r in rows for p in r.fpr_by_population})
    table = Table(title="account-level detection")
    table.add_column("detector")
    table.add_column("flagged")
    table.add_column("precision")
    table.add_column("recall")
    for p in pops:
        table.add_column(f"FPR {p}")
    for r in rows:
        table.add_row(
            r.detector,
            f"{r.flagged:,}",
            f"{r.precision:.3f}",
            f"{r.recall:.3f}",
            *[f"{r.fpr_by_population.get(p, 0.0):.2%}" for p in pops],
        )
    console.print(table)
    for cid, rec in report.recall_by_campaign.items():
        console.print(f"recall on true campaign {cid}: {rec:.3f}")
    for cid, pur in report.campaign_purity.items():
        console.print(f"purity of detected campaign {cid}: {pur:.3f}")
    for cid, timing in report.time_to_flag.items():
        if timing.exchanges_before_flagged is None:
            console.print(
                f"online scorer: true campaign {cid} never flagged during the replay "
                f"({timing.total_exchanges:,} exchanges)"
            )
        else:
            console.print(
                f"online scorer: true campaign {cid} flagged after "
                f"{timing.exchanges_before_flagged:,} of its {timing.total_exchanges:,} exchanges "
                f"({timing.share_before_flagged:.1%})"
            )


def register(app: typer.Typer) -> None:
    """Add ``scan`` and ``eval-scan`` to the main command."""
    app.command("scan")(scan_cmd)
    app.command("eval-scan")(eval_scan_cmd)
