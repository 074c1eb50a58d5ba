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

from distillguard.radioactivity._protocol import (
    ClosedSubject,
    Mode,
    OpenSubject,
    Subject,
    TextsSubject,
    run_test,
    score_under_keys,
)
from distillguard.radioactivity.closed_mode import (
    Encoder,
    EndpointConfig,
    SuspectClient,
    score_closed,
)
from distillguard.radioactivity.open_mode import load_suspect, own_answers, predictions, score_open
from distillguard.radioactivity.pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    ScoringTape,
    TokenText,
    answer_plan,
    window_hashes,
)
from distillguard.radioactivity.results import ModeResult, RadioactivityReport, plot_curves
from distillguard.radioactivity.tracing import CandidateResult, TraceResult, trace_payload

__all__ = [
    "CandidateResult",
    "ClosedSubject",
    "CurvePoint",
    "Encoder",
    "EndpointConfig",
    "KgramFilter",
    "Mode",
    "ModeResult",
    "OpenSubject",
    "RadioactivityReport",
    "RadioactivityScorer",
    "ScoringTape",
    "Subject",
    "SuspectClient",
    "TextsSubject",
    "TokenText",
    "TraceResult",
    "answer_plan",
    "load_suspect",
    "own_answers",
    "plot_curves",
    "predictions",
    "run_test",
    "score_closed",
    "score_open",
    "score_under_keys",
    "trace_payload",
    "window_hashes",
]
