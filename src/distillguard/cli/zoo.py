"""``distillguard zoo``: write the scenario zoo (evaluation traffic of many families) as a
format v1 log plus labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillguard.cli._common import console, emit_json, progress_bar, state_of

__all__ = ["register"]


def zoo_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("zoo-out"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 0,
    scale: Annotated[
        float,
        typer.Option("--scale", min=0.001, max=100.0, help="1.0: about 5,000 accounts."),
    ] = 1.0,
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated family names (default: all)."),
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=120, help="Days of traffic.")] = 14,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing zoo log.")
    ] = False,
    list_families: Annotated[
        bool, typer.Option("--list", help="List the families (kind, description) and exit.")
    ] = False,
) -> None:
    """Generate the scenario zoo: evaluation traffic from many legitimate populations and
    campaign strategies, every behavioural parameter drawn from a range per seed.

    Writes accounts.parquet, exchanges.parquet (format v1), labels.parquet (account_id,
    campaign_id, population, family, kind) and zoo.json (drawn parameters). The zoo is for
    evaluation only: do not tune a detector on it.

    Example: `distillguard zoo --seed 3 --scale 0.5 --out ./zoo3`
    """
    from distillguard.sim.zoo import FAMILIES, generate_zoo

    state = state_of(ctx)
    if list_families:
        if state.json_output:
            emit_json(
                [{"name": f.name, "kind": f.kind, "description": f.description} for f in FAMILIES]
            )
            return
        for fam in FAMILIES:
            console.print(f"[bold]{fam.name}[/] [dim]({fam.kind})[/]", markup=True)
            console.print(f"  {fam.description}", markup=False)
        return
    names = None if families is None else [n.strip() for n in families.split(",") if n.strip()]
    total = len(FAMILIES) if names is None else len(set(names))
    with progress_bar(state, unit="families") as progress:
        task = progress.add_task("generating the zoo", total=total)

        def on_family(name: str, exchanges: int) -> None:
            progress.update(task, advance=1, description=f"zoo: {name} ({exchanges:,} exchanges)")

        result = generate_zoo(
            out,
            seed=seed,
            scale=scale,
            families=names,
            days=days,
            overwrite=overwrite,
            on_family=on_family,
        )
    if state.json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    console.print(
        f"wrote {result.exchanges:,} exchanges of {result.accounts:,} accounts "
        f"({result.campaign_accounts:,} in campaigns, {len(result.families)} families) "
        f"to {result.out}"
    )


def register(app: typer.Typer) -> None:
    """Add ``zoo`` to the main command."""
    app.command("zoo")(zoo_cmd)
