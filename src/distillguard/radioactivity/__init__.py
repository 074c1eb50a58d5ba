"""Radioactivity: did a suspect model learn from our watermarked outputs?

A model fine-tuned on text carrying our generation-time watermark inherits its bias (Sander et al.,
"Watermarking Makes Language Models Radioactive", NeurIPS 2024). This package turns that into a
calibrated test with controls. The API, all importable from here:

* the protocol: :func:`run_test` (a suspect and its control, the verdict) and
  :func:`score_under_keys` (one query scored under several keys), on an :class:`OpenSubject`
  (weights available, teacher forcing: "reading mode"), a :class:`ClosedSubject` (an
  OpenAI-compatible API only, asked through :class:`SuspectClient`) or a :class:`TextsSubject`;
* the scoring pipeline: :class:`RadioactivityScorer` (deduplication tape, k-gram filter
  :class:`KgramFilter`, exact test, streaming p-value curve of :class:`CurvePoint`);
* tracing: :func:`trace_payload`, which multi-bit payload (account, cluster) the suspect learned;
* results: :class:`ModeResult`, :class:`RadioactivityReport` (the JSON result file), plots.

The lab that trains a teacher and students to measure all this is an experiment outside the
package (``experiments/radioactivity_lab``). See ``docs/radioactivity.md``.
"""

from __future__ import annotations

from distillguard.radioactivity._closed_mode import (
    Encoder,
    EndpointConfig,
    SuspectClient,
    score_closed,
)
from distillguard.radioactivity._open_mode import load_suspect, own_answers, predictions, score_open
from distillguard.radioactivity._pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    ScoringTape,
    TokenText,
    answer_plan,
    window_hashes,
)
from distillguard.radioactivity._protocol import (
    ClosedSubject,
    Mode,
    OpenSubject,
    Subject,
    TextsSubject,
    run_test,
    score_under_keys,
)
from distillguard.radioactivity._results import ModeResult, RadioactivityReport, plot_curves
from distillguard.radioactivity._tracing import CandidateResult, TraceResult, trace_payload

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
