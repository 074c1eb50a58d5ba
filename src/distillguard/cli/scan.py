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
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A combiner refitted on analyst verdicts (distillguard tune): its verdicts "
            "replace the hand-set scores.",
        ),
    ] = None,
    semantic: Annotated[
        bool,
        typer.Option(
            "--semantic/--no-semantic",
            help="Paraphrase groups from word vectors learned on the log (experimental, off: "
            "no measured gain, twice the scan time; see docs/scan.md).",
        ),
    ] = False,
) -> None:
    """Scan a log (or a store) for distillation campaigns; write account scores and campaigns.

    Example: `distillguard scan ./sim --out ./scan-out`
    """
    from distillguard.errors import ConfigurationError
    from distillguard.monitor import ScanConfig, scan

    state = state_of(ctx)
    if engine not in ("duckdb", "spark"):
        raise ConfigurationError(f"unknown --engine {engine!r}", hint="use duckdb or spark")
    if model is not None and engine == "spark":
        raise ConfigurationError("--model needs the DuckDB engine")
    if semantic and engine == "spark":
        raise ConfigurationError("--semantic needs the DuckDB engine")
    from distillguard.monitor.semantic import SemanticHasher

    config = ScanConfig(
        engine="spark" if engine == "spark" else "duckdb",
        memory_limit=memory_limit,
        model=model,
        semantic=SemanticHasher() if semantic else None,
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
            "campaign got before it was flagged; streamed: sorted in spilled runs).",
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


def tune_cmd(
    ctx: typer.Context,
    log: Annotated[Path, typer.Argument(help="Log folder (format v1) the verdicts are about.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (JSON).")],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Verdicts file (Parquet/CSV: account_id and verdict campaign|legitimate, or "
            "campaign_id as labels.parquet has). Default: the analyst verdicts in the store.",
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store holding the analyst verdicts.")
    ] = None,
    alpha: Annotated[
        float,
        typer.Option("--alpha", help="False-positive rate on dismissed accounts to set for."),
    ] = 0.002,
) -> None:
    """Refit the scan's combiner on analyst verdicts (confirmed and dismissed accounts).

    Example: `distillguard tune ./sim --labels ./sim/labels.parquet --out model.json`, then
    `distillguard scan ./sim --model model.json --out ./scan-out`
    """
    from dataclasses import replace

    from distillguard.errors import InputError
    from distillguard.monitor import ScanConfig, scan
    from distillguard.monitor.feedback import fit_from_labels, labels_from_file, load_labels

    state = state_of(ctx)
    if not 0 < alpha < 1:
        raise InputError("--alpha must be between 0 and 1")
    if labels is not None:
        verdicts = labels_from_file(labels)
    else:
        from distillguard.store import open_store

        with open_store(store or state.settings().store_url) as st:
            verdicts = {x.account_id: x.verdict == "campaign" for x in load_labels(st)}
    with progress_bar(state, unit="stages") as progress:
        task = progress.add_task("scanning", total=11)

        def on_stage(name: str) -> None:
            progress.update(task, description=name, advance=1)

        result = scan(log, config=replace(ScanConfig(), keep_detail=True), on_stage=on_stage)
        progress.update(task, description="fitting", advance=1)
        assert result.detail is not None
        model = fit_from_labels(result.detail, verdicts, alpha=alpha)
        progress.update(task, completed=11, description="done")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model.to_json(), encoding="utf-8")
    n_pos = sum(1 for v in verdicts.values() if v)
    if state.json_output:
        emit_json(
            {
                "ok": True,
                "out": str(out),
                "confirmed": n_pos,
                "dismissed": len(verdicts) - n_pos,
                "threshold": model.threshold,
                "weights": model.weights(),
            }
        )
        return
    console.print(
        f"fitted on {n_pos:,} confirmed and {len(verdicts) - n_pos:,} dismissed accounts; "
        f"threshold {model.threshold:.4f} (false-positive rate <= {alpha:g} on the dismissed)"
    )
    top = sorted(model.weights().items(), key=lambda kv: -abs(kv[1]))[:8]
    console.print("strongest weights: " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    console.print(f"model in {out}; use it with: distillguard scan LOG --model {out}")


def register(app: typer.Typer) -> None:
    """Add ``scan``, ``eval-scan`` and ``tune`` to the main command."""
    app.command("scan")(scan_cmd)
    app.command("eval-scan")(eval_scan_cmd)
    app.command("tune")(tune_cmd)
