"""Typed results of a radioactivity run: one :class:`ModeResult` per scored subject (the suspect,
its control), a :class:`RadioactivityReport` pairing them, JSON and plot output.

These are the run's in-memory results (a :class:`ModeResult` holds the live
:class:`~distillguard.watermark.DetectionResult`; the report decides the verdict). The file
they write is the results format of :mod:`distillguard.results`: :meth:`ModeResult.to_subject`
and :meth:`RadioactivityReport.to_result` give its model, and :meth:`RadioactivityReport.write_json`
writes through :func:`~distillguard.results.write_radioactivity`; readers use
:func:`~distillguard.results.read_radioactivity`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillguard.radioactivity._pipeline import RadioactivityScorer
from distillguard.results import (
    RADIOACTIVITY_FORMAT,
    CurvePoint,
    PooledTest,
    RadioactivityResult,
    SubjectResult,
    write_radioactivity,
)
from distillguard.watermark import DetectionResult

__all__ = ["ModeResult", "RadioactivityReport", "plot_curves"]

#: JSON format version of :meth:`RadioactivityReport.to_dict` (defined by the results format).
FORMAT = RADIOACTIVITY_FORMAT


@dataclass(frozen=True)
class ModeResult:
    """The test of one subject (a suspect, or its control) in one mode.

    Attributes:
        subject: what was scored (a model path, an endpoint URL, a file, a lab name).
        mode: ``"open"`` (teacher forcing, top-1 predictions), ``"closed"`` (generated answers)
            or ``"texts"`` (given texts).
        role: ``"suspect"`` or ``"control"``.
        detection: the exact pooled test (statistic, p-value, scored tokens, method, key).
        curve: the pooled p-value against scored tokens, as the run went.
        n_texts: texts (prompts, or texts read) scored.
        n_filtered_out: candidate tokens left out by the k-gram filter.
        filter: the filter's summary (``None`` when off).
        notes: why the numbers are what they are (e.g. which key a control used).
    """

    subject: str
    mode: str
    role: str
    detection: DetectionResult
    curve: tuple[CurvePoint, ...]
    n_texts: int
    n_filtered_out: int
    filter: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def p_value(self) -> float:
        """The pooled p-value."""
        return self.detection.p_value

    @classmethod
    def from_scorer(
        cls,
        scorer: RadioactivityScorer,
        *,
        subject: str,
        mode: str,
        role: str,
        n_texts: int,
        notes: Sequence[str] = (),
    ) -> ModeResult:
        """Freeze a finished :class:`RadioactivityScorer`."""
        return cls(
            subject=subject,
            mode=mode,
            role=role,
            detection=scorer.result(),
            curve=scorer.curve,
            n_texts=n_texts,
            n_filtered_out=scorer.n_filtered_out,
            filter=scorer.kgram_filter.to_dict() if scorer.kgram_filter is not None else None,
            notes=tuple(notes),
        )

    def to_subject(self) -> SubjectResult:
        """This result in the results format's model."""
        d = self.detection
        return SubjectResult(
            subject=self.subject,
            mode=self.mode,
            role=self.role,
            detection=PooledTest(
                method=d.method,
                statistic=d.statistic,
                p_value=d.p_value,
                n_scored=d.n_scored,
                key_id=d.key_id,
                n_tokens=d.n_tokens,
                n_duplicates=d.n_duplicates,
                expected=d.expected,
                details=d.details,
            ),
            curve=self.curve,
            n_texts=self.n_texts,
            n_filtered_out=self.n_filtered_out,
            filter=self.filter,
            notes=self.notes,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.to_subject().to_dict()


@dataclass(frozen=True)
class RadioactivityReport:
    """A suspect's result beside its control's, with the verdict at ``alpha``.

    The verdict is positive only when the suspect rejects at ``alpha`` *and* the control does
    not: a control that rejects means the setup (texts, tokenizer, prompts) is not independent of
    the key, and no conclusion can be drawn.
    """

    suspect: ModeResult
    control: ModeResult | None
    alpha: float
    tracing: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``"radioactive"``, ``"not detected"`` or ``"inconclusive (control rejected)"``."""
        if self.control is not None and self.control.p_value <= self.alpha:
            return "inconclusive (control rejected)"
        if self.suspect.p_value <= self.alpha:
            return "radioactive"
        return "not detected"

    def to_result(self) -> RadioactivityResult:
        """This report in the results format's model (the verdict decided here, frozen)."""
        return RadioactivityResult(
            suspect=self.suspect.to_subject(),
            control=self.control.to_subject() if self.control is not None else None,
            alpha=self.alpha,
            verdict=self.verdict,
            tracing=self.tracing,
            extra=self.extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the result file format ``distillguard-radioactivity/1``)."""
        return self.to_result().to_dict()

    def write_json(self, path: Path) -> None:
        """Write the result file to ``path`` (:func:`~distillguard.results.write_radioactivity`)."""
        write_radioactivity(path, self.to_result())


def plot_curves(
    results: Sequence[ModeResult],
    path: Path,
    *,
    alpha: float = 1e-3,
    title: str = "radioactivity: p-value against scored tokens",
) -> Path:
    """A PNG of each result's p-value curve (log scale), with ``alpha`` drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for r in results:
        xs = [p.n_scored for p in r.curve]
        ys = [max(p.p_value, 1e-300) for p in r.curve]
        style = "--" if r.role == "control" else "-"
        ax.plot(xs, ys, style, label=f"{r.role}: {r.subject} ({r.mode})")
    ax.axhline(alpha, color="grey", linewidth=0.8, linestyle=":", label=f"alpha = {alpha:g}")
    ax.set_yscale("log")
    ax.set_xlabel("scored tokens (after filter and deduplication)")
    ax.set_ylabel("pooled p-value")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
