"""Shared plumbing of ``distillguard image detect`` and ``distillguard video detect``.

Both walk a file or folder of suspect media, try one or every watermark key, and print one row
a file; the pieces that are the same for both live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from distillguard.errors import ConfigurationError, InputError
from distillguard.keyring import KeyPurpose, Keyring, WatermarkKey

if TYPE_CHECKING:
    from distillguard.config import Settings
    from distillguard.image import ManifestCredentials

__all__ = [
    "ClaimedPayloadOption",
    "KidOption",
    "bits_cell",
    "key_candidates",
    "manifest_credentials",
    "media_files",
    "trust_anchors",
]

#: ``--payload/-p`` of a detect command: a claimed payload to test.
ClaimedPayloadOption = Annotated[
    int | None,
    typer.Option("--payload", "-p", help="Claimed payload: test it and report bit accuracy."),
]
#: ``--kid`` of a detect command: one watermark key instead of every key.
KidOption = Annotated[
    str | None, typer.Option("--kid", help="Watermark key id (default: every key).")
]


def key_candidates(ring: Keyring, kid: str | None) -> list[WatermarkKey]:
    """The watermark key ``kid``, or every watermark key of the keyring when ``kid`` is None."""
    if kid is not None:
        return [ring.watermark_key(kid)]
    return ring.watermark_keys()


def media_files(target: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """``target`` itself if it is a file, else its files (recursively, sorted) whose suffix,
    lower-cased, is one of ``suffixes``.

    Raises:
        InputError: ``target`` is neither a file nor a folder.
    """
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise InputError(f"{target} is neither a file nor a folder")
    return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def bits_cell(row: dict[str, Any]) -> str:
    """The ``bits`` column of a detection row: payload bits matched when a payload was claimed,
    else the sync bits matched."""
    if row["bit_accuracy"] is not None:
        return f"{row['payload_matches']}/{row['payload_bits']}"
    return f"sync {row['sync_matches']}/{row['sync_bits']}"


def manifest_credentials(settings: Settings, ring: Keyring) -> ManifestCredentials | None:
    """The C2PA signing credentials of ``[image]`` (``c2pa_chain`` with ``c2pa_key``, or the
    keyring's ledger key), or None when ``c2pa_chain`` is not set."""
    from distillguard.image import ManifestCredentials

    image = settings.image
    if image.c2pa_chain is None:
        return None
    key = None if image.c2pa_key else ring.signing_key(KeyPurpose.LEDGER).private_key
    return ManifestCredentials.from_pem(
        chain_path=image.c2pa_chain,
        key_path=image.c2pa_key,
        private_key=key,
        tsa_url=image.tsa_url,
    )


def trust_anchors(settings: Settings) -> str | None:
    """The PEM trust anchors of ``[image] trust_anchors``, or None when unset.

    Raises:
        ConfigurationError: the file cannot be read.
    """
    if settings.image.trust_anchors is None:
        return None
    try:
        return settings.image.trust_anchors.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read trust anchors: {exc}") from None
