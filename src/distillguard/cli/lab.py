"""``distillguard lab``: the radioactivity lab (teacher, watermarked harvest, students, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distillguard.cli._common import console, emit_json, err_console, state_of
from distillguard.errors import InputError

__all__ = ["register"]

PRESETS = ("tiny", "quick", "full")


def lab_cmd(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for lab.json, lab.md, lab.png.")
    ] = Path("lab-out"),
    preset: Annotated[
        str, typer.Option("--preset", help="tiny (seconds) | quick (minutes) | full (the docs).")
    ] = "quick",
    quick: Annotated[bool, typer.Option("--quick", help="Same as --preset quick.")] = False,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="AlpacaEval outputs folder (default: found automatically)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Override the number of seeds.")
    ] = None,
    first_seed: Annotated[
        int | None,
        typer.Option(
            "--first-seed", help="Run seeds from this one on (e.g. held-out seeds).", min=0
        ),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch threads.")] = 1,
    workers: Annotated[
        int, typer.Option("--workers", help="Seeds run in this many processes at once.")
    ] = 1,
) -> None:
    """Train a teacher, watermark its answers, fine-tune students on 0-100% watermarked data and
    test each in open and closed mode; writes a table, a plot and a JSON file.

    Example: `distillguard lab --quick --out lab-out`
    (documented held-out figures: `distillguard lab --preset full --first-seed 9 --workers 3`;
    also `--first-seed 6`)
    """
    from dataclasses import replace

    from distillguard.radioactivity.lab import LabConfig, lab_table, run_lab

    state = state_of(ctx)
    name = "quick" if quick else preset
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")
    config = getattr(LabConfig, name)()
    if seeds is not None:
        if seeds < 1:
            raise InputError("--seeds must be at least 1")
        config = replace(config, seeds=tuple(range(seeds)))
    if first_seed is not None:
        config = replace(config, seeds=tuple(first_seed + s for s in range(len(config.seeds))))

    def say(message: str) -> None:
        if not state.json_output and not state.quiet:
            err_console.print(f"[dim]lab[/] {message}")

    result = run_lab(
        config, out_dir=out, corpus=corpus, progress=say, threads=threads, workers=workers
    )
    if state.json_output:
        emit_json(
            {
                "ok": True,
                "json": str(result.json_path),
                "table": str(result.table_path),
                "plot": str(result.plot_path),
                "targets": result.targets(),
                "summary": result.summary(),
                "timings_s": result.timings_s,
            }
        )
        return
    console.print(lab_table(result))
    console.print(f"wrote {result.json_path}, {result.table_path}, {result.plot_path}")


def register(app: typer.Typer) -> None:
    """Add ``lab`` to the ``distillguard`` command."""
    app.command(name="lab")(lab_cmd)
