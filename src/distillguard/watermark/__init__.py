"""Keyed output watermarks: generation-time schemes, a post-hoc lexical scheme, exact detection.

One module per scheme, named after its paper:

* :mod:`~distillguard.watermark.kgw`: green lists (Kirchenbauer et al. 2023), binomial test;
* :mod:`~distillguard.watermark._aaronson`: Gumbel-max sampling (Aaronson 2022), gamma test;
* :mod:`~distillguard.watermark._synthid`: tournament sampling (Dathathri et al. 2024),
  binomial test;
* :mod:`~distillguard.watermark.mpac`: multi-bit payloads (Yoo et al. 2024), exact
  max-agreement test;
* :mod:`~distillguard.watermark._cater`: post-hoc lexical choices for closed upstream models (after
  He et al. 2022, CATER), Poisson-binomial test.

Every scheme object holds one frozen configuration and one key from the keyring, and is used by
both the generator (``process_logits``) and the detector (``score_tokens`` / ``test`` /
``detect``). See ``docs/watermark.md``.
"""

from __future__ import annotations

from distillguard.watermark._aaronson import AaronsonConfig, AaronsonWatermark
from distillguard.watermark._cater import CaterConfig, CaterWatermark, Lexicon
from distillguard.watermark._scan import ScanReport, iter_records, scan_dataset, scan_dataset_text
from distillguard.watermark._stats import bonferroni, holm
from distillguard.watermark._synthid import SynthIDConfig, SynthIDWatermark
from distillguard.watermark._tokenizers import (
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    strip_chat_template,
)
from distillguard.watermark.base import (
    DedupTape,
    DetectionResult,
    MultiKeyResult,
    TokenScores,
    WatermarkScheme,
    detect_multi_key,
)
from distillguard.watermark.kgw import KGWConfig, KGWWatermark
from distillguard.watermark.mpac import (
    MPACConfig,
    MPACWatermark,
    PayloadResult,
    PayloadTokenScores,
)
from distillguard.watermark.registry import SCHEMES, build_scheme

__all__ = [
    "SCHEMES",
    "AaronsonConfig",
    "AaronsonWatermark",
    "CaterConfig",
    "CaterWatermark",
    "DedupTape",
    "DetectionResult",
    "KGWConfig",
    "KGWWatermark",
    "Lexicon",
    "MPACConfig",
    "MPACWatermark",
    "MultiKeyResult",
    "PayloadResult",
    "PayloadTokenScores",
    "ScanReport",
    "SynthIDConfig",
    "SynthIDWatermark",
    "TokenScores",
    "Tokenizer",
    "WatermarkScheme",
    "WordTokenizer",
    "bonferroni",
    "build_scheme",
    "detect_multi_key",
    "holm",
    "iter_records",
    "load_tokenizer",
    "scan_dataset",
    "scan_dataset_text",
    "strip_chat_template",
]
