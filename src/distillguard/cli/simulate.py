"""``distillguard simulate``: write a simulated exchange log (format v1) and its labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from distillguard.cli._common import AppState, console, emit_json, progress_bar, state_of

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
        typer.Option(
            "--target",
            help="Then replay the log over HTTP against a gateway at this URL, as signed "
            "OpenAI chat completions (one agent key and passport per account).",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option("--rate", min=0.001, help="--target: requests per second.")
    ] = 50.0,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="--target: replay the first N exchanges in time."),
    ] = 1000,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1024, help="--target: requests in flight.")
    ] = 32,
    model: Annotated[
        str | None, typer.Option("--model", help="--target: send this model name instead.")
    ] = None,
) -> None:
    """Simulate API traffic with distillation campaigns and write a format v1 log plus labels.

    With `--target URL` the log is then replayed, in time order and compressed, through a
    running gateway (`distillguard serve`, same configuration: keyring and passport registry).

    Example: `distillguard simulate --scenario small --out ./sim --seed 7 --format parquet`

    Example: `distillguard simulate -s small -o ./sim --target http://127.0.0.1:8080 --rate 100
    --limit 5000 --model stub-1`
    """
    from distillguard.errors import ConfigurationError
    from distillguard.sim import OutputFormat, load_scenario, simulate

    state = state_of(ctx)
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
    if target is not None:
        _replay(
            state,
            out,
            target=target,
            rate=rate,
            limit=limit,
            concurrency=concurrency,
            model=model,
            written=result.to_dict(),
        )
        return
    if state.json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    console.print(
        f"wrote {result.exchanges:,} exchanges of {result.accounts:,} accounts "
        f"({result.campaign_accounts:,} in campaigns) to {result.out}"
    )


def _replay(
    state: AppState,
    out: Path,
    *,
    target: str,
    rate: float,
    limit: int | None,
    concurrency: int,
    model: str | None,
    written: dict[str, Any],
) -> None:
    """Replay the written log through the gateway at ``target``."""
    from distillguard.gateway.agents import AgentFactory
    from distillguard.gateway.replay import replay_log

    factory = AgentFactory.from_settings(state.settings())
    with progress_bar(state, unit="requests") as progress:
        task = progress.add_task(f"replaying to {target}", total=limit)
        replayed = replay_log(
            out,
            target=target,
            factory=factory,
            rate=rate,
            limit=limit,
            concurrency=concurrency,
            model=model,
            on_progress=lambda n: progress.advance(task, n),
        )
    if state.json_output:
        emit_json({"ok": replayed.errors == 0, "log": written, "replay": replayed.to_dict()})
        return
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(replayed.statuses.items()))
    console.print(
        f"replayed {replayed.sent:,} exchanges of {replayed.accounts:,} accounts to {target} "
        f"in {replayed.seconds:.1f} s ({statuses}; {replayed.errors} transport errors)"
    )


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the main command."""
    app.command("simulate")(simulate_cmd)
