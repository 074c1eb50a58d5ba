"""Provenance of video outputs: an invisible keyed watermark with a payload, pooled over frames.

* :func:`watermark_video` / :func:`detect_video`: the image watermark's tile pattern in every
  frame's luma under a keyed temporal sign code; detection pools all frames into one exact
  binomial test and decodes the payload (see :mod:`distillguard.video._watermark`).
* :func:`mark_frame` / :func:`detect_frames`: the same on decoded luma planes.
* :func:`synthetic_video` / :func:`reencode`: offline test clips and a lossy re-encoding (tests,
  benchmarks).

Needs PyAV (``pip install 'distillguard[video]'``). See ``docs/multimodal.md``.
"""

from __future__ import annotations

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
    "VideoDetection",
    "VideoEmbedding",
    "VideoWatermarkConfig",
    "detect_frames",
    "detect_video",
    "frame_sign",
    "mark_frame",
    "reencode",
    "synthetic_video",
    "watermark_video",
]
