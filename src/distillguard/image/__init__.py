"""Provenance of image outputs: an invisible keyed watermark with a payload, and C2PA manifests.

* :func:`watermark_image` / :func:`detect_image`: DistillGuard's own tiled spread-spectrum
  watermark in the luma channel, keyed by the keyring's watermark secret, carrying a payload
  (account or cluster id) and detected blind with an exact p-value (see
  :mod:`distillguard.image._watermark`).
* :func:`sign_manifest` / :func:`verify_manifest`: C2PA manifests signed with the provider's
  Ed25519 key and its X.509 certificate chain (see :mod:`distillguard.image._manifest`).

Example::

    from distillguard.image import watermark_image, detect_image

    marked = watermark_image(png_bytes, payload=account_number, key=ring.watermark_key())
    result = detect_image(marked, key=ring.watermark_key())
    result.payload, result.p_value

See ``docs/multimodal.md``.
"""

from __future__ import annotations

from distillguard.image._manifest import (
    ManifestCredentials,
    ManifestStatus,
    SelfSignedCredentials,
    make_test_credentials,
    sign_manifest,
    verify_manifest,
)
from distillguard.image._provenance import ImageReport, inspect_image, protect_image
from distillguard.image._synthetic import synthetic_image
from distillguard.image._watermark import (
    ImageDetection,
    ImageWatermarkConfig,
    detect_image,
    detect_pixels,
    embed_pixels,
    watermark_image,
)

__all__ = [
    "ImageDetection",
    "ImageReport",
    "ImageWatermarkConfig",
    "ManifestCredentials",
    "ManifestStatus",
    "SelfSignedCredentials",
    "detect_image",
    "detect_pixels",
    "embed_pixels",
    "inspect_image",
    "make_test_credentials",
    "protect_image",
    "sign_manifest",
    "synthetic_image",
    "verify_manifest",
    "watermark_image",
]
