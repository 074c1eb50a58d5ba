"""``python -m experiments.lineage_lab``: the lineage lab (tiny teachers, students distilled from
them at several fractions, independent models, and the attribution tests of each)."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from distillguard.errors import DistillGuardError, InputError

from .lab import LineageConfig, lineage_table, merge_results, read_lineage, run_lineage_lab

__all__ = ["lab_cmd", "main"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

PRESETS = ("tiny", "quick", "full")


def lab_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for lineage.json and lineage.md.")
    ] = Path("lineage-out"),
    preset: Annotated[
        str, typer.Option("--preset", help="tiny (seconds) | quick (minutes) | full (the docs).")
    ] = "quick",
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="AlpacaEval outputs folder (default: found automatically)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Override the number of seeds.")
    ] = None,
    first_seed: Annotated[
        int | None, typer.Option("--first-seed", help="Run seeds from this one on.", min=0)
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch threads.")] = 1,
    workers: Annotated[
        int, typer.Option("--workers", help="Seeds run in this many processes at once.")
    ] = 1,
    no_identity: Annotated[
        bool, typer.Option("--no-identity", help="Stylometric channels only.")
    ] = False,
    merge: Annotated[
        list[Path] | None,
        typer.Option(
            "--merge",
            help="Merge these runs' lineage.json (files or folders) into --out; trains nothing.",
        ),
    ] = None,
    rescore: Annotated[
        float | None,
        typer.Option(
            "--rescore",
            help="With --merge: multiply p-values without an identity test by this factor "
            "(2: runs made without the identity channel's Bonferroni factor, judged by "
            "today's rule).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Train tiny teachers with distinct styles, distil students from them at several fractions,
    train independent models, and test each with `fingerprint attribute` and `--teacher`.

    Example: `python -m experiments.lineage_lab --preset full --workers 2 --out lineage-out`
    (one seed per process: `--first-seed 4 --seeds 1 --out seed4`, then
    `--merge seed0 --merge seed1 ... --out lineage-out`)
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}", hint=f"use one of {', '.join(PRESETS)}")
    config = getattr(LineageConfig, preset)()
    if seeds is not None:
        if seeds < 1:
            raise InputError("--seeds must be at least 1")
        config = replace(config, seeds=tuple(range(seeds)))
    if first_seed is not None:
        config = replace(config, seeds=tuple(first_seed + s for s in range(len(config.seeds))))
    if no_identity:
        config = replace(config, identity=False)

    def say(message: str) -> None:
        if not json_output and not quiet:
            err_console.print(f"[dim]lineage lab[/] {message}")

    if workers > 1 and not quiet and not json_output:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if merge:
        parts = [read_lineage(p) for p in merge]
        if rescore is not None:
            parts = [p.rescored(rescore) for p in parts]
        result = merge_results(parts, out_dir=out)
    else:
        result = run_lineage_lab(
            config, out_dir=out, corpus=corpus, progress=say, threads=threads, workers=workers
        )
    if json_output:
        emit(
            {
                "ok": True,
                "json": str(result.json_path),
                "table": str(result.table_path),
                "targets": result.targets(),
                "summary": result.summary(),
                "timings_s": result.timings_s,
            }
        )
        return
    console.print(lineage_table(result))
    console.print(f"wrote {result.json_path}, {result.table_path}")


def emit(data: object) -> None:
    """One JSON document on standard output."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the lab's command line; the exit status (4 for bad input, as ``distillguard``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(lab_cmd)
    try:
        app(argv, prog_name="python -m experiments.lineage_lab")
    except SystemExit as exc:  # click ends every run with SystemExit (usage errors: 2)
        return exc.code if isinstance(exc.code, int) else 0
    except DistillGuardError as exc:
        if "--json" in (sys.argv[1:] if argv is None else argv):
            emit({"ok": False, "message": str(exc), "exit_code": exc.exit_code})
        else:
            err_console.print(f"[red]error:[/] {exc}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
