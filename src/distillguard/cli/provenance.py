"""``distillguard provenance FILE...``: which of our provenance signals each file carries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.cli._media import KidOption, key_candidates, trust_anchors
from distillguard.errors import EXIT_FINDINGS, InputError
from distillguard.keyring import Keyring

__all__ = ["register"]


def _files(targets: list[Path]) -> list[Path]:
    out: list[Path] = []
    for target in targets:
        if target.is_dir():
            out.extend(sorted(p for p in target.rglob("*") if p.is_file()))
        elif target.is_file():
            out.append(target)
        else:
            raise InputError(f"{target} is neither a file nor a folder")
    return out


def provenance(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="Files or folders (searched recursively) to check.")
    ],
    kid: KidOption = None,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Significance level, family-wise per file.")
    ] = 1e-3,
    accounts: Annotated[
        Path | None,
        typer.Option(
            "--accounts",
            help="File of candidate account ids (one a line): map decoded payloads to them.",
        ),
    ] = None,
) -> None:
    """Which of our provenance signals a file carries (text, image, video, PDF, DOCX): watermark
    by scheme and key, C2PA manifest and trust, payload; p-values and a one-line verdict.

    The kind of each file is read from its first bytes. Text (any UTF-8 file; JSONL, CSV and
    Parquet datasets pooled) and the text of PDF and DOCX documents are tested for the
    configured text watermark and the post-hoc one (cater); images and videos for the pixel
    watermark (payload decoded) and a C2PA manifest, checked against `[image] trust_anchors`.
    Every watermark key is tried unless `--kid` is given; all tests of a file are
    Holm-corrected together. With `--accounts`, a decoded payload is mapped back to the
    candidate accounts the gateway would have given it. Exit status 1 if any file carries a
    signal, 0 if none does.

    Example: `distillguard --json provenance suspect.png clip.mp4 answer.txt report.pdf`
    """
    from distillguard.provenance import ProvenanceChecker

    state = state_of(ctx)
    settings = state.settings()
    ring = Keyring.load(settings.keyring_path)
    if not 0.0 < alpha < 1.0:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    anchors = trust_anchors(settings)
    candidates = None
    if accounts is not None:
        try:
            lines = accounts.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {accounts}: {exc}") from None
        candidates = [line.strip() for line in lines if line.strip()]
    checker = ProvenanceChecker(
        key_candidates(ring, kid),
        watermark=settings.watermark,
        image=settings.image,
        trust_anchors_pem=anchors,
        alpha=alpha,
        accounts=candidates,
    )
    paths = _files(files)
    rows: list[dict[str, Any]] = []
    with progress_bar(state, unit="files") as progress:
        task = progress.add_task("checking", total=len(paths))
        for path in paths:
            rows.append(checker.check(path).to_dict())
            progress.advance(task)
    found = sum(1 for r in rows if r["found"])
    if state.json_output:
        emit_json({"ok": True, "files": len(rows), "found": found, "alpha": alpha, "results": rows})
    else:
        _print(rows, found=found, alpha=alpha)
    if found:
        raise typer.Exit(EXIT_FINDINGS)


def _print(rows: list[dict[str, Any]], *, found: int, alpha: float) -> None:
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for col in ("file", "kind", "signal", "key", "payload", "p-value / state"):
        table.add_column(col, no_wrap=col != "file", overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(escape(r["file"]), r["media"], f"[red]{r['error']['code']}[/]")
            continue
        for i, s in enumerate(r["signals"]):
            name = s["scheme"] if s["kind"] == "watermark" else "C2PA"
            mark = "[green]yes[/]" if s["present"] else "no"
            value = s["state"] if s["kind"] == "c2pa" else f"{s['p_value']:.1e}"
            table.add_row(
                escape(r["file"]) if i == 0 else "",
                r["media"] if i == 0 else "",
                f"{name}: {mark}",
                escape(s["key_id"] or "-"),
                "-" if s["payload"] is None else str(s["payload"]),
                value,
            )
    console.print(table)
    for r in rows:
        console.print(f"{escape(r['file'])}: {escape(r['verdict'])}", soft_wrap=True)
    console.print(f"{found} of {len(rows)} files carry a DistillGuard signal (alpha {alpha:g}).")


def register(app: typer.Typer) -> None:
    """Add the ``provenance`` command to ``app``."""
    app.command("provenance")(provenance)
