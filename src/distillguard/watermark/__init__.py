"""Keyed output watermarks: generation-time schemes, a post-hoc lexical scheme, exact detection.

One module per scheme, named after its paper:

* :mod:`~distillguard.watermark._kgw`: green lists (Kirchenbauer et al. 2023), binomial test;
* :mod:`~distillguard.watermark._aaronson`: Gumbel-max sampling (Aaronson 2022), gamma test;
* :mod:`~distillguard.watermark._synthid`: tournament sampling (Dathathri et al. 2024),
  binomial test;
* :mod:`~distillguard.watermark._mpac`: multi-bit payloads (Yoo et al. 2024), exact
  max-agreement test;
* :mod:`~distillguard.watermark._cater`: post-hoc lexical choices for closed upstream models (after
  He et al. 2022, CATER), Poisson-binomial test.

Every scheme object holds one frozen configuration and one key from the keyring, and is used by
both the generator (``process_logits``) and the detector (``score_tokens`` / ``test`` /
``detect``). :class:`WatermarkScheme` is the interface every scheme meets, :func:`build_scheme`
builds the configured one, and :data:`SCHEMES` names them. The optional integrations are public
modules of their own: :mod:`distillguard.watermark.hf` (Hugging Face ``generate``) and
:mod:`distillguard.watermark.vllm` (vLLM logits processors). See ``docs/watermark.md``.
"""

from __future__ import annotations

from distillguard.watermark._aaronson import AaronsonConfig, AaronsonWatermark
from distillguard.watermark._base import (
    DedupTape,
    DetectionResult,
    MultiKeyResult,
    TokenScores,
    WatermarkScheme,
    as_token_array,
    detect_multi_key,
    first_occurrences,
)
from distillguard.watermark._cater import CaterConfig, CaterWatermark, Lexicon
from distillguard.watermark._kgw import KGWConfig, KGWWatermark
from distillguard.watermark._mpac import (
    MPACConfig,
    MPACWatermark,
    PayloadResult,
    PayloadTokenScores,
)
from distillguard.watermark._registry import SCHEMES, build_scheme
from distillguard.watermark._scan import ScanReport, iter_records, scan_dataset, scan_dataset_text
from distillguard.watermark._stats import bonferroni, holm
from distillguard.watermark._synthid import SynthIDConfig, SynthIDWatermark
from distillguard.watermark._tokenizers import (
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    strip_chat_template,
)

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
    "as_token_array",
    "bonferroni",
    "build_scheme",
    "detect_multi_key",
    "first_occurrences",
    "holm",
    "iter_records",
    "load_tokenizer",
    "scan_dataset",
    "scan_dataset_text",
    "strip_chat_template",
]
