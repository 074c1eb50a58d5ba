"""``distillguard image``: watermark and sign image outputs, detect both in suspect images."""

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
from distillguard.config import ImageSettings
from distillguard.errors import DistillGuardError, InputError
from distillguard.image import (
    ImageWatermarkConfig,
    inspect_image,
    make_test_credentials,
    protect_image,
)
from distillguard.keyring import KeyPurpose, Keyring, WatermarkKey

__all__ = ["register"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")

image_app = typer.Typer(
    help=(
        "Provenance of image outputs: an invisible keyed watermark carrying a payload (account "
        "or cluster id) and a signed C2PA manifest; detection of both in suspect images.\n\n"
        "Example: `distillguard image embed out.png marked.png --payload 42 && "
        "distillguard image detect ./suspects`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _config(settings: ImageSettings) -> ImageWatermarkConfig:
    return ImageWatermarkConfig(
        payload_bits=settings.payload_bits,
        sync_bits=settings.sync_bits,
        strength=settings.strength,
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


@image_app.command("embed")
def embed(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="Image to watermark (JPEG, PNG, WebP, TIFF).")],
    dest: Annotated[Path, typer.Argument(help="Where to write the watermarked image.")],
    payload: Annotated[
        int, typer.Option("--payload", "-p", help="Integer payload: account or cluster id.")
    ],
    c2pa: Annotated[
        bool,
        typer.Option(
            "--c2pa/--no-c2pa",
            help="Also sign a C2PA manifest (needs image.c2pa_chain; see `image certs`).",
        ),
    ] = True,
    output_format: Annotated[
        str | None, typer.Option("--format", help="png or jpeg (default: the input's format).")
    ] = None,
) -> None:
    """Watermark one image with the active watermark key and a payload, then sign it (C2PA).

    Example: `distillguard image embed out.png marked.png --payload 42`
    """
    state = state_of(ctx)
    settings = state.settings()
    ring = Keyring.load(settings.keyring_path)
    key = ring.watermark_key()
    data = _read(source)
    creds = manifest_credentials(settings, ring) if c2pa else None
    marked = protect_image(
        data,
        payload=payload,
        key=key,
        credentials=creds,
        config=_config(settings.image),
        title=dest.name,
        output_format=output_format.upper() if output_format else None,
    )
    signed = creds is not None
    try:
        dest.write_bytes(marked)
    except OSError as exc:
        raise InputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    result = {"ok": True, "out": str(dest), "kid": key.kid, "payload": payload, "c2pa": signed}
    if state.json_output:
        emit_json(result)
        return
    console.print(f"Wrote {dest} (watermark key {key.kid}, payload {payload}).", soft_wrap=True)
    if c2pa and not signed:
        console.print("No C2PA manifest: set image.c2pa_chain (or run `distillguard image certs`).")


def _detect_one(
    path: Path,
    *,
    keys: list[WatermarkKey],
    config: ImageWatermarkConfig,
    claimed: int | None,
    alpha: float,
    anchors: str | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {"file": str(path)}
    try:
        report = inspect_image(
            _read(path),
            keys=keys,
            claimed_payload=claimed,
            config=config,
            alpha=alpha,
            trust_anchors_pem=anchors,
            name=str(path),
        )
    except DistillGuardError as exc:
        row.update({"error": exc.message, "code": exc.code})
        return row
    row.update(report.to_dict())
    return row


@image_app.command("detect")
def detect(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="An image, or a folder searched recursively.")],
    payload: ClaimedPayloadOption = None,
    kid: KidOption = None,
) -> None:
    """Detect the watermark (payload, bit accuracy, p-value) and verify C2PA in each image.

    Every watermark key of the keyring is tried unless `--kid` is given (the p-value is then
    multiplied by the number of keys, Bonferroni).

    Example: `distillguard --json image detect ./suspects`
    """
    state = state_of(ctx)
    settings = state.settings()
    ring = Keyring.load(settings.keyring_path)
    keys = key_candidates(ring, kid)
    anchors = trust_anchors(settings)
    files = media_files(target, IMAGE_SUFFIXES)
    config = _config(settings.image)
    rows: list[dict[str, Any]] = []
    with progress_bar(state, unit="images") as progress:
        task = progress.add_task("detecting", total=len(files))
        for path in files:
            rows.append(
                _detect_one(
                    path,
                    keys=keys,
                    config=config,
                    claimed=payload,
                    alpha=settings.image.alpha,
                    anchors=anchors,
                )
            )
            progress.advance(task)
    detected = sum(1 for r in rows if r.get("detected"))
    if state.json_output:
        emit_json({"ok": True, "images": len(rows), "detected": detected, "results": rows})
        return
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for col in ("file", "watermark", "payload", "bits", "p-value", "C2PA"):
        table.add_column(col, no_wrap=col != "file", overflow="fold")
    errors = [r for r in rows if "error" in r]
    for r in rows:
        if "error" in r:
            table.add_row(r["file"], f"[red]{r['code']}[/]", "-", "-", "-", "-")
            continue
        bits = bits_cell(r)
        mark = "[green]yes[/]" if r["detected"] else "no"
        payload_text = "-" if r["payload"] is None else str(r["payload"])
        table.add_row(
            r["file"], mark, payload_text, bits, f"{r['p_value']:.1e}", r["c2pa"]["state"]
        )
    console.print(table)
    for r in errors:
        console.print(f"[red]error[/] {r['code']} {r['error']}", soft_wrap=True)
    console.print(
        f"{detected} of {len(rows)} images carry the watermark (alpha {settings.image.alpha})."
    )


@image_app.command("certs")
def certs(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Folder for chain.pem and test-ca.pem.")],
    organization: Annotated[
        str, typer.Option("--org", help="Organisation named in the certificates.")
    ] = "DistillGuard test provider",
) -> None:
    """Create a TEST certificate chain for the keyring's ledger key, to sign C2PA manifests.

    Verifiers trust it only if given test-ca.pem. A provider uses its real certificate instead
    (image.c2pa_chain and image.c2pa_key). Example: `distillguard image certs ~/distillguard-c2pa`
    """
    state = state_of(ctx)
    ring = Keyring.load(state.settings().keyring_path)
    creds = make_test_credentials(
        ring.signing_key(KeyPurpose.LEDGER).private_key, organization=organization
    )
    out.mkdir(parents=True, exist_ok=True)
    chain_path = out / "chain.pem"
    ca_path = out / "test-ca.pem"
    chain_path.write_text(creds.credentials.certificate_chain_pem)
    ca_path.write_text(creds.ca_pem)
    if state.json_output:
        emit_json({"ok": True, "chain": str(chain_path), "ca": str(ca_path)})
        return
    console.print(f"Wrote {chain_path} and {ca_path}. Add to distillguard.toml:", soft_wrap=True)
    console.print(
        f'[image]\nc2pa_chain = "{chain_path}"\ntrust_anchors = "{ca_path}"',
        markup=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add the ``image`` subcommand group to ``app``."""
    app.add_typer(image_app, name="image")
