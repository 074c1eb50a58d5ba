"""One call each for the gateway and for investigators: protect a video, inspect a video.

:func:`protect_video` watermarks a video with a payload and, when credentials are given, signs
a C2PA manifest into the MP4 (hard-bound by the BMFF hash: any re-encoding or edit breaks it,
the watermark stays). :func:`inspect_video` tests a suspect video under one or several watermark
keys (Bonferroni over the keys) and verifies its manifest.

Example::

    out = protect_video(mp4_bytes, payload=account_no, key=ring.watermark_key(), credentials=creds)
    report = inspect_video(path, keys=ring.watermark_keys(), trust_anchors_pem=ca_pem)
    report.detected, report.detection.payload, report.manifest.state
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distillguard.errors import InputError
from distillguard.image import ManifestCredentials, ManifestStatus, sign_manifest, verify_manifest
from distillguard.keyring import WatermarkKey
from distillguard.video._watermark import (
    VideoDetection,
    VideoEmbedding,
    VideoWatermarkConfig,
    detect_video,
    watermark_video,
)

__all__ = [
    "VIDEO_SCHEME",
    "VideoReport",
    "embed_and_sign",
    "inspect_video",
    "protect_video",
    "sign_video",
]

#: The watermark scheme named in the C2PA assertion of a signed video.
VIDEO_SCHEME = "distillguard-video-wm-v1"
#: Largest video :func:`protect_video` accepts as bytes (the gateway's answers).
MAX_VIDEO_BYTES = 1 << 30


def sign_video(
    path: Path,
    *,
    credentials: ManifestCredentials,
    watermark_kid: str | None = None,
    model: str | None = None,
    title: str = "model output",
) -> None:
    """Sign a C2PA manifest into the MP4 file at ``path`` (rewritten in place).

    Raises:
        ImageFormatError: not an MP4; SignatureError: the C2PA library refused to sign;
            InputError: the file cannot be read or written.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    signed = sign_manifest(
        data,
        credentials=credentials,
        title=title,
        watermark_kid=watermark_kid,
        model=model,
        mime="video/mp4",
        watermark_scheme=VIDEO_SCHEME,
    )
    try:
        path.write_bytes(signed)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def protect_video(
    video_bytes: bytes,
    *,
    payload: int,
    key: WatermarkKey,
    credentials: ManifestCredentials | None = None,
    config: VideoWatermarkConfig | None = None,
    model: str | None = None,
    title: str = "model output",
) -> bytes:
    """Watermark a video (any format FFmpeg reads) with ``payload``; returns MP4 bytes, with a
    signed C2PA manifest when ``credentials`` are given.

    Raises:
        InputError: not a readable video, too large, or a bad payload; SignatureError: signing
            failed.
    """
    if len(video_bytes) > MAX_VIDEO_BYTES:
        raise InputError(f"video of {len(video_bytes)} bytes, more than {MAX_VIDEO_BYTES}")
    with tempfile.TemporaryDirectory(prefix="dg-video-") as tmp:
        source = Path(tmp) / "in"
        dest = Path(tmp) / "out.mp4"
        source.write_bytes(video_bytes)
        watermark_video(source, dest, payload=payload, key=key, config=config)
        if credentials is not None:
            sign_video(
                dest, credentials=credentials, watermark_kid=key.kid, model=model, title=title
            )
        return dest.read_bytes()


@dataclass(frozen=True)
class VideoReport:
    """The watermark test (best key, p-value corrected for the number of keys) and the manifest."""

    detection: VideoDetection
    keys_tried: int
    manifest: ManifestStatus

    @property
    def detected(self) -> bool:
        """The watermark of one of the keys is present at the detection's level."""
        return self.detection.detected

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            **self.detection.to_dict(),
            "keys_tried": self.keys_tried,
            "c2pa": self.manifest.to_dict(),
        }


def inspect_video(
    path: Path | str,
    *,
    keys: Sequence[WatermarkKey],
    claimed_payload: int | None = None,
    config: VideoWatermarkConfig | None = None,
    alpha: float = 1e-3,
    trust_anchors_pem: str | None = None,
) -> VideoReport:
    """Test a suspect video under each key and verify its C2PA manifest.

    The reported detection is the key with the smallest p-value, its p-values multiplied by
    the number of keys (Bonferroni); its payload is ``None`` unless the mark was found (blind
    or as claimed) after that correction.

    Raises:
        InputError: no key given, or the file is not a readable video.
    """
    if not keys:
        raise InputError("inspect_video needs at least one watermark key")
    path = Path(path)
    results = [
        detect_video(path, key=k, claimed_payload=claimed_payload, config=config, alpha=alpha)
        for k in keys
    ]
    best = min(results, key=lambda r: r.p_value)
    p_value = min(1.0, best.p_value * len(results))
    blind = min(1.0, best.blind_p_value * len(results))
    found = p_value <= alpha or blind <= alpha
    detection = replace(
        best,
        p_value=p_value,
        blind_p_value=blind,
        detected=p_value <= alpha,
        payload=best.payload if found else None,
    )
    manifest = _manifest(path, trust_anchors_pem)
    return VideoReport(detection=detection, keys_tried=len(results), manifest=manifest)


def _manifest(path: Path, trust_anchors_pem: str | None) -> ManifestStatus:
    """The C2PA state of an ISO BMFF video (MP4, MOV, ...); other containers carry none here."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head[4:8] != b"ftyp":
        return ManifestStatus(state="absent")
    return verify_manifest(path, trust_anchors_pem=trust_anchors_pem)


def embed_and_sign(
    source: Path | str,
    dest: Path | str,
    *,
    payload: int,
    key: WatermarkKey,
    credentials: ManifestCredentials | None = None,
    config: VideoWatermarkConfig | None = None,
    model: str | None = None,
    title: str = "model output",
) -> VideoEmbedding:
    """:func:`watermark_video`, then (with ``credentials``) a C2PA manifest signed into
    ``dest``, which must then be an ``.mp4``.

    Raises:
        InputError: as :func:`watermark_video`, or credentials with a non-MP4 ``dest``.
    """
    dest = Path(dest)
    if credentials is not None and dest.suffix.lower() not in (".mp4", ".m4v"):
        raise InputError(f"{dest}: C2PA manifests are written into MP4 files here (.mp4)")
    report = watermark_video(source, dest, payload=payload, key=key, config=config)
    if credentials is not None:
        sign_video(dest, credentials=credentials, watermark_kid=key.kid, model=model, title=title)
    return report
