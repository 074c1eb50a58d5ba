"""``python -m experiments.radioactivity_lab``: the radioactivity lab (teacher, watermarked
harvest, students, tests), from a source checkout. It was ``distillguard lab`` before the lab left
the installed package (issue 20); ``distillguard demo`` runs it when the checkout is there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from distillguard.errors import DistillGuardError, InputError

from .lab import LabConfig, lab_table, run_lab

__all__ = ["lab_cmd", "main"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

PRESETS = ("tiny", "quick", "full")


def lab_cmd(
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
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Train a teacher, watermark its answers, fine-tune students on 0-100% watermarked data and
    test each in open and closed mode; writes a table, a plot and a JSON file.

    Example: `python -m experiments.radioactivity_lab --quick --out lab-out`
    (documented held-out figures: `... --preset full --first-seed 9 --workers 3`;
    also `--first-seed 6`)
    """
    from dataclasses import replace

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
        if not json_output and not quiet:
            err_console.print(f"[dim]lab[/] {message}")

    result = run_lab(
        config, out_dir=out, corpus=corpus, progress=say, threads=threads, workers=workers
    )
    if json_output:
        emit(
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


def emit(data: object) -> None:
    """One JSON document on standard output."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the lab's command line; the exit status (4 for bad input, as ``distillguard``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(lab_cmd)
    try:
        app(argv, prog_name="python -m experiments.radioactivity_lab")
    except SystemExit as exc:  # click ends every run with SystemExit (usage errors: 2)
        return exc.code if isinstance(exc.code, int) else 0
    except DistillGuardError as exc:
        if json_requested(argv):
            emit({"ok": False, "message": str(exc), "exit_code": exc.exit_code})
        else:
            err_console.print(f"[red]error:[/] {exc}")
        return exc.exit_code
    return 0


def json_requested(argv: list[str] | None) -> bool:
    """Whether ``--json`` is among the arguments."""
    return "--json" in (sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
