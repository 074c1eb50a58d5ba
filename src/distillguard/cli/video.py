"""``distillguard video``: watermark video outputs, detect the watermark in suspect videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.cli._media import (
    ClaimedPayloadOption,
    KidOption,
    bits_cell,
    key_candidates,
    manifest_credentials,
    media_files,
    trust_anchors,
)
from distillguard.errors import DistillGuardError, InputError
from distillguard.keyring import Keyring, WatermarkKey

__all__ = ["register"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts")

video_app = typer.Typer(
    help=(
        "Provenance of video outputs: an invisible keyed watermark carrying a payload (account "
        "id) in every frame under a temporal code; one exact test pooled over all frames.\n\n"
        "Example: `distillguard video embed out.mp4 marked.mp4 --payload 42 && "
        "distillguard video detect ./suspects`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@video_app.command("embed")
def embed(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="Video to watermark (any format FFmpeg reads).")],
    dest: Annotated[Path, typer.Argument(help="Where to write the watermarked video (.mp4).")],
    payload: Annotated[
        int, typer.Option("--payload", "-p", help="Integer payload: account or cluster id.")
    ],
    codec: Annotated[
        str, typer.Option("--codec", help="libx264 (H.264) or libx265 (H.265).")
    ] = "libx264",
    crf: Annotated[int, typer.Option("--crf", help="Output quality (x264/x265 CRF).")] = 18,
    c2pa: Annotated[
        bool,
        typer.Option(
            "--c2pa/--no-c2pa",
            help="Also sign a C2PA manifest into the MP4 (needs image.c2pa_chain).",
        ),
    ] = True,
) -> None:
    """Watermark every frame of a video with the active watermark key and a payload.

    With `[image] c2pa_chain` set, a C2PA manifest is signed into the MP4 too. Audio is not
    copied. Example: `distillguard video embed out.mp4 marked.mp4 --payload 42`
    """
    from distillguard.video import VideoWatermarkConfig, embed_and_sign

    state = state_of(ctx)
    settings = state.settings()
    ring = Keyring.load(settings.keyring_path)
    key = ring.watermark_key()
    if not source.is_file():
        raise InputError(f"{source} is not a file")
    creds = manifest_credentials(settings, ring) if c2pa else None
    report = embed_and_sign(
        source,
        dest,
        payload=payload,
        key=key,
        credentials=creds,
        config=VideoWatermarkConfig(codec=codec, crf=crf),
        title=dest.name,
    )
    signed = creds is not None
    result = {"ok": True, "out": str(dest), "kid": key.kid, "payload": payload, "c2pa": signed}
    result.update(report.to_dict())
    if state.json_output:
        emit_json(result)
        return
    console.print(
        f"Wrote {dest} ({report.frames} frames, {report.seconds:.1f} s, watermark key "
        f"{key.kid}, payload {payload}).",
        soft_wrap=True,
    )
    if c2pa and not signed:
        console.print("No C2PA manifest: set image.c2pa_chain (or run `distillguard image certs`).")


def _detect_one(
    path: Path,
    *,
    keys: list[WatermarkKey],
    claimed: int | None,
    alpha: float,
    anchors: str | None,
) -> dict[str, Any]:
    from distillguard.video import inspect_video

    row: dict[str, Any] = {"file": str(path)}
    try:
        report = inspect_video(
            path, keys=keys, claimed_payload=claimed, alpha=alpha, trust_anchors_pem=anchors
        )
    except DistillGuardError as exc:
        row.update({"error": exc.message, "code": exc.code})
        return row
    row.update(report.to_dict())
    return row


@video_app.command("detect")
def detect(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="A video, or a folder searched recursively.")],
    payload: ClaimedPayloadOption = None,
    kid: KidOption = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 1e-3,
) -> None:
    """Detect the watermark (payload, p-value pooled over all frames) and verify C2PA in each
    video.

    Every watermark key of the keyring is tried unless `--kid` is given (the p-value is then
    multiplied by the number of keys, Bonferroni). Example: `distillguard video detect clip.mp4`
    """
    state = state_of(ctx)
    ring = Keyring.load(state.settings().keyring_path)
    keys = key_candidates(ring, kid)
    if not 0.0 < alpha < 1.0:
        raise InputError(f"--alpha must be in (0, 1), got {alpha}")
    anchors = trust_anchors(state.settings())
    files = media_files(target, VIDEO_SUFFIXES)
    rows: list[dict[str, Any]] = []
    with progress_bar(state, unit="videos") as progress:
        task = progress.add_task("detecting", total=len(files))
        for path in files:
            rows.append(_detect_one(path, keys=keys, claimed=payload, alpha=alpha, anchors=anchors))
            progress.advance(task)
    detected = sum(1 for r in rows if r.get("detected"))
    if state.json_output:
        emit_json({"ok": True, "videos": len(rows), "detected": detected, "results": rows})
        return
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for col in ("file", "watermark", "payload", "bits", "frames", "p-value", "C2PA"):
        table.add_column(col, no_wrap=col != "file", overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["file"], f"[red]{r['code']}[/]", "-", "-", "-", "-", "-")
            continue
        bits = bits_cell(r)
        table.add_row(
            r["file"],
            "[green]yes[/]" if r["detected"] else "no",
            "-" if r["payload"] is None else str(r["payload"]),
            bits,
            str(r["frames"]),
            f"{r['p_value']:.1e}",
            r["c2pa"]["state"],
        )
    console.print(table)
    for r in rows:
        if "error" in r:
            console.print(f"[red]error[/] {r['code']} {r['error']}", soft_wrap=True)
    console.print(f"{detected} of {len(rows)} videos carry the watermark (alpha {alpha}).")


def register(app: typer.Typer) -> None:
    """Add the ``video`` subcommand group to ``app``."""
    app.add_typer(video_app, name="video")
