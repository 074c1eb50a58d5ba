"""``distillguard simulate``: write a simulated exchange log (format v1) and its labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillguard.cli._common import console, emit_json, progress_bar, state_of

__all__ = ["register"]


def simulate_cmd(
    ctx: typer.Context,
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="Shipped scenario name or a scenario .toml.")
    ] = "small",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("sim-out"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 0,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="parquet | jsonl | jsonl.gz")
    ] = "parquet",
    instructions: Annotated[
        str | None,
        typer.Option(
            "--instructions",
            help="auto | packaged | grammar | folder of AlpacaEval outputs (default: config).",
        ),
    ] = None,
    single_file: Annotated[
        bool, typer.Option("--single-file", help="One exchanges file instead of one per day.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing log.")
    ] = False,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Replay over HTTP against a gateway (not available yet)."),
    ] = None,
) -> None:
    """Simulate API traffic with distillation campaigns and write a format v1 log plus labels.

    Example: `distillguard simulate --scenario small --out ./sim --seed 7 --format parquet`
    """
    from distillguard.errors import ConfigurationError
    from distillguard.sim import OutputFormat, load_scenario, simulate

    state = state_of(ctx)
    if target is not None:
        raise ConfigurationError(
            "--target replay is not implemented yet (it needs the gateway)",
            hint="write the log with --out and ingest it instead",
        )
    try:
        output_format = OutputFormat(fmt)
    except ValueError:
        raise ConfigurationError(
            f"unknown --format {fmt!r}", hint="use parquet, jsonl or jsonl.gz"
        ) from None
    settings = state.settings()
    source: str | Path = instructions or (
        settings.sim.instructions_dir if settings.sim.instructions_dir is not None else "auto"
    )
    spec = load_scenario(scenario)
    with progress_bar(state, unit="exchanges") as progress:
        task = progress.add_task(f"simulating {spec.name}", total=None)

        def on_start(expected: float) -> None:
            progress.update(task, total=max(int(expected), 1))

        def on_progress(done: int) -> None:
            progress.update(task, completed=done)

        result = simulate(
            spec,
            out=out,
            seed=seed,
            fmt=output_format,
            instructions=source,
            daily_files=not single_file,
            overwrite=overwrite,
            on_progress=on_progress,
            on_start=on_start,
        )
        progress.update(task, total=result.exchanges, completed=result.exchanges)
    if state.json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    console.print(
        f"wrote {result.exchanges:,} exchanges of {result.accounts:,} accounts "
        f"({result.campaign_accounts:,} in campaigns) to {result.out}"
    )


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the main command."""
    app.command("simulate")(simulate_cmd)
