"""Radioactivity: did a suspect model learn from our watermarked outputs?

A model fine-tuned on text carrying our generation-time watermark inherits its bias (Sander et al.,
"Watermarking Makes Language Models Radioactive", NeurIPS 2024). This package turns that into a
calibrated test with controls:

* :mod:`~distillguard.radioactivity.pipeline`: the vectorised scoring pipeline (deduplication
  tape, k-gram filter, exact test, streaming p-value curve);
* :mod:`~distillguard.radioactivity.open_mode`: weights available, teacher forcing ("reading
  mode"); :mod:`~distillguard.radioactivity.closed_mode`: an OpenAI-compatible API only;
* :mod:`~distillguard.radioactivity.tracing`: which multi-bit payload (account, cluster) the
  suspect learned;
* :mod:`~distillguard.radioactivity.results`: typed results, the JSON result file, plots;
* :mod:`~distillguard.radioactivity.lab`: the CPU lab (teacher, watermarked harvest, students).

See ``docs/radioactivity.md``.
"""

from __future__ import annotations

from distillguard.radioactivity.closed_mode import EndpointConfig, SuspectClient, score_closed
from distillguard.radioactivity.pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    ScoringTape,
    TokenText,
    window_hashes,
)
from distillguard.radioactivity.results import ModeResult, RadioactivityReport, plot_curves
from distillguard.radioactivity.tracing import CandidateResult, TraceResult, trace_payload

__all__ = [
    "CandidateResult",
    "CurvePoint",
    "EndpointConfig",
    "KgramFilter",
    "ModeResult",
    "RadioactivityReport",
    "RadioactivityScorer",
    "ScoringTape",
    "SuspectClient",
    "TokenText",
    "TraceResult",
    "plot_curves",
    "score_closed",
    "trace_payload",
    "window_hashes",
]
