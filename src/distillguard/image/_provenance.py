"""One call each for the gateway and for investigators: protect an image, inspect an image.

:func:`protect_image` watermarks an output image with a payload and, when credentials are
given, signs a C2PA manifest over the watermarked bytes. :func:`inspect_image` tests a suspect
image under one or several watermark keys (Bonferroni over the keys) and verifies its manifest.

Example::

    out = protect_image(png, payload=account_no, key=ring.watermark_key(), credentials=creds)
    report = inspect_image(out, keys=ring.watermark_keys(), trust_anchors_pem=ca_pem)
    report.detected, report.detection.payload, report.manifest.state
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from distillguard.errors import InputError
from distillguard.image._codec import decode_image
from distillguard.image._manifest import ManifestCredentials, ManifestStatus, sign_manifest
from distillguard.image._manifest import verify_manifest as _verify
from distillguard.image._watermark import (
    ImageDetection,
    ImageWatermarkConfig,
    detect_pixels,
    watermark_image,
)
from distillguard.keyring import WatermarkKey

__all__ = ["ImageReport", "inspect_image", "protect_image"]


def protect_image(
    image_bytes: bytes,
    *,
    payload: int,
    key: WatermarkKey,
    credentials: ManifestCredentials | None = None,
    config: ImageWatermarkConfig | None = None,
    model: str | None = None,
    title: str = "model output",
    output_format: str | None = None,
) -> bytes:
    """Watermark ``image_bytes`` with ``payload`` and, with ``credentials``, sign a manifest.

    Raises:
        ImageFormatError: not a usable image; InputError: bad payload; SignatureError: C2PA
            signing failed.
    """
    marked = watermark_image(
        image_bytes, payload=payload, key=key, config=config, output_format=output_format
    )
    if credentials is None:
        return marked
    return sign_manifest(
        marked, credentials=credentials, title=title, watermark_kid=key.kid, model=model
    )


@dataclass(frozen=True)
class ImageReport:
    """The watermark test (best key, p-value corrected for the number of keys) and the manifest."""

    detection: ImageDetection
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


def inspect_image(
    image_bytes: bytes,
    *,
    keys: Sequence[WatermarkKey],
    claimed_payload: int | None = None,
    config: ImageWatermarkConfig | None = None,
    alpha: float = 1e-3,
    trust_anchors_pem: str | None = None,
    name: str = "image",
) -> ImageReport:
    """Test a suspect image under each key and verify its C2PA manifest.

    The reported detection is the key with the smallest p-value, its p-value multiplied by the
    number of keys (Bonferroni), so that trying several keys does not inflate false positives.

    Raises:
        InputError: no key given; ImageFormatError: not a usable image.
    """
    if not keys:
        raise InputError("inspect_image needs at least one watermark key")
    decoded = decode_image(image_bytes, name=name)
    results = [
        detect_pixels(
            decoded.pixels, key=k, claimed_payload=claimed_payload, config=config, alpha=alpha
        )
        for k in keys
    ]
    best = min(results, key=lambda r: r.p_value)
    p_value = min(1.0, best.p_value * len(results))
    blind = min(1.0, best.blind_p_value * len(results))
    detection = replace(best, p_value=p_value, blind_p_value=blind, detected=p_value <= alpha)
    manifest = _verify(image_bytes, trust_anchors_pem=trust_anchors_pem)
    return ImageReport(detection=detection, keys_tried=len(results), manifest=manifest)
