"""Provenance of video outputs: an invisible keyed watermark with a payload, pooled over frames.

* :func:`watermark_video` / :func:`detect_video`: the image watermark's tile pattern in every
  frame's luma under a keyed temporal sign code; detection pools all frames into one exact
  binomial test and decodes the payload (see :mod:`distillguard.video._watermark`).
* :func:`protect_video` / :func:`inspect_video`: watermark and sign (C2PA in the MP4) in one
  call, for the gateway; test under several keys and verify the manifest, for investigators
  (:func:`embed_and_sign` and :func:`sign_video` work on files).
* :func:`mark_frame` / :func:`detect_frames`: the same on decoded luma planes.
* :func:`synthetic_video` / :func:`reencode`: offline test clips and a lossy re-encoding (tests,
  benchmarks).

Needs PyAV (``pip install 'distillguard[video]'``). See ``docs/multimodal.md``.
"""

from __future__ import annotations

from distillguard.video._provenance import (
    VIDEO_SCHEME,
    VideoReport,
    embed_and_sign,
    inspect_video,
    protect_video,
    sign_video,
)
from distillguard.video._synthetic import reencode, synthetic_video
from distillguard.video._watermark import (
    VideoDetection,
    VideoEmbedding,
    VideoWatermarkConfig,
    detect_frames,
    detect_video,
    frame_sign,
    mark_frame,
    watermark_video,
)

__all__ = [
    "VIDEO_SCHEME",
    "VideoDetection",
    "VideoEmbedding",
    "VideoReport",
    "VideoWatermarkConfig",
    "detect_frames",
    "detect_video",
    "embed_and_sign",
    "frame_sign",
    "inspect_video",
    "mark_frame",
    "protect_video",
    "reencode",
    "sign_video",
    "synthetic_video",
    "watermark_video",
]
