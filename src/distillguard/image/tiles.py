"""The image watermark's tile machinery, for schemes built on it (the video watermark).

Video frames are images: :mod:`distillguard.video` marks every frame with the same key-derived
tile pattern and detects it with the same whitening, fold and correlation, pooled over frames.
These are those pieces, under public names; their behaviour is documented in
:mod:`distillguard.image._watermark` and ``docs/multimodal.md``.

* :data:`TILE`, :data:`CHIP`: the tile side and the chip side, in canonical-frame pixels;
* :func:`key_patterns`: the key's chip-to-bit map, chip signs, sync bits and correlation
  templates (an object with ``sync``, ``tile_signs``, ``chip_bit``, ``templates_fft``);
* :func:`payload_signs` / :func:`signs_to_payload`: a payload as ±1 bits and back;
* :func:`activity_mask`: the local-activity gain of the embedding;
* :func:`whiten`, :func:`fold`, :func:`evaluate_fold`: detection on a canonical frame (a
  hypothesis with ``correlations``, ``sync_matches``, ``p_value``, ``strength``, ``label``).
"""

from __future__ import annotations

from distillguard.image._watermark import CHIP, TILE
from distillguard.image._watermark import _activity_mask as activity_mask
from distillguard.image._watermark import _evaluate as evaluate_fold
from distillguard.image._watermark import _fold as fold
from distillguard.image._watermark import _patterns as key_patterns
from distillguard.image._watermark import _payload_signs as payload_signs
from distillguard.image._watermark import _signs_to_payload as signs_to_payload
from distillguard.image._watermark import _whiten as whiten

__all__ = [
    "CHIP",
    "TILE",
    "activity_mask",
    "evaluate_fold",
    "fold",
    "key_patterns",
    "payload_signs",
    "signs_to_payload",
    "whiten",
]
