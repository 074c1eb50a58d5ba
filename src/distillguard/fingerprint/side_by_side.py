"""Canary, radioactivity and lineage evidence about one suspect, side by side.

Three tests answer three different questions about a suspect model, with different strengths:

- **canaries** (``fingerprint probe-canaries``): does the suspect state keyed facts that were
  planted only in answers served to the suspected accounts? An exact test whose null (the suspect
  never saw those answers) cannot be confused by style: the strongest evidence that *those
  accounts'* harvest went into the suspect.
- **radioactivity** (``distillguard radioactivity``): do the suspect's outputs carry our
  watermark's statistical trace? Evidence that it trained on our watermarked outputs (any account).
- **lineage** (``fingerprint attribute``, ``--teacher``): does the suspect resemble one of the
  reference families (or our model) more than models that cannot have learned from it do?
  Evidence of a relation, calibrated against the reference library, not of copying.

:func:`side_by_side` puts the three results (any may be missing) in one list of rows with the
same fields (question, verdict, p-value, level, what a positive result shows, where it misleads),
and :func:`side_by_side_markdown` renders them as a table for an analyst or a report. The rows do
not combine the tests into one p-value: they answer different questions and a court reads each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from distillguard.results import AttributionResult, RadioactivityResult

__all__ = ["EvidenceRow", "side_by_side", "side_by_side_markdown"]


@dataclass(frozen=True)
class EvidenceRow:
    """One test's answer about the suspect.

    Attributes:
        channel: ``"canaries"``, ``"radioactivity"``, ``"lineage"`` or ``"lineage --teacher"``.
        question: what the test asks, in words.
        ran: whether a result was given (``False``: the row says what running it would add).
        positive: the test rejects its null at its level (``None`` when not run).
        verdict: the test's own verdict in words.
        p_value: the p-value behind the verdict (``None`` when not run).
        alpha: the level it was judged at.
        detail: the counts or names behind the verdict.
        shows: what a positive result is evidence of.
        misleads: where it misleads or says nothing.
    """

    channel: str
    question: str
    ran: bool
    positive: bool | None
    verdict: str
    p_value: float | None
    alpha: float | None
    detail: str
    shows: str
    misleads: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


_CANARY_Q = "Does the suspect state facts planted only in answers to the suspected accounts?"
_CANARY_SHOWS = (
    "the suspect was trained on answers served to those accounts (exact test; style cannot "
    "cause it)"
)
_CANARY_LIMITS = (
    "silent when the suspect did not memorise the facts, when the harvest predates the canary "
    "action, or when the distiller filtered unusual entities; 'no evidence' is not innocence"
)
_RADIO_Q = "Do the suspect's outputs carry our watermark's statistical trace?"
_RADIO_SHOWS = "the suspect trained on our watermarked outputs (from any account)"
_RADIO_LIMITS = (
    "needs enough scored tokens and a watermark that was on when the data was harvested; "
    "a rejected control makes the result inconclusive"
)
_LINEAGE_Q = "Does the suspect resemble a reference family more than unrelated models do?"
_LINEAGE_SHOWS = (
    "a relation to that family beyond what unrelated references show (calibrated against the "
    "reference library); it does not show copying, when, or through which account"
)
_LINEAGE_LIMITS = (
    "shared third-party data (human data of 2023 carries ChatGPT's style), terse models that "
    "look alike, and undocumented relations among the references; resemblance has no direction"
)
_TEACHER_Q = "Did the suspect learn from this teacher (one-vs-rest, null: references that cannot)?"


def side_by_side(
    *,
    canaries: Mapping[str, Any] | None = None,
    radioactivity: RadioactivityResult | None = None,
    attribution: AttributionResult | None = None,
) -> list[EvidenceRow]:
    """The three tests' answers about one suspect, one row each (and one for ``--teacher``).

    Args:
        canaries: the JSON object ``fingerprint probe-canaries --json`` prints.
        radioactivity: a radioactivity result (:func:`distillguard.results.read_radioactivity`).
        attribution: an attribution result (:func:`distillguard.results.read_attribution`);
            its ``teacher`` member (``--teacher``) adds a row.
    """
    rows = [_canary_row(canaries), _radio_row(radioactivity), _lineage_row(attribution)]
    teacher = attribution.extra.get("teacher") if attribution is not None else None
    if isinstance(teacher, Mapping):
        rows.append(_teacher_row(teacher, attribution.alpha if attribution else None))
    return rows


def _not_run(channel: str, question: str, how: str, shows: str, misleads: str) -> EvidenceRow:
    return EvidenceRow(
        channel=channel,
        question=question,
        ran=False,
        positive=None,
        verdict=f"not run ({how})",
        p_value=None,
        alpha=None,
        detail="",
        shows=shows,
        misleads=misleads,
    )


def _canary_row(c: Mapping[str, Any] | None) -> EvidenceRow:
    if c is None:
        return _not_run(
            "canaries",
            _CANARY_Q,
            "distillguard fingerprint probe-canaries",
            _CANARY_SHOWS,
            _CANARY_LIMITS,
        )
    positive = bool(c.get("verdict"))
    return EvidenceRow(
        channel="canaries",
        question=_CANARY_Q,
        ran=True,
        positive=positive,
        verdict="recalls planted canaries" if positive else "no evidence",
        p_value=_float(c.get("p_value")),
        alpha=_float(c.get("alpha")),
        detail=(
            f"{c.get('planted_hits')} of {c.get('planted')} planted facts stated, "
            f"{c.get('decoy_hits')} of {c.get('decoys')} decoys"
        ),
        shows=_CANARY_SHOWS,
        misleads=_CANARY_LIMITS,
    )


def _radio_row(r: RadioactivityResult | None) -> EvidenceRow:
    if r is None:
        return _not_run(
            "radioactivity",
            _RADIO_Q,
            "distillguard radioactivity",
            _RADIO_SHOWS,
            _RADIO_LIMITS,
        )
    alpha = r.alpha
    verdict = r.verdict or (
        ("radioactive" if r.p_value < alpha else "not detected")
        if alpha is not None
        else "p-value only"
    )
    detail = f"{r.n_scored} tokens scored" if r.n_scored is not None else ""
    if r.control is not None:
        detail += f"; control p = {r.control.p_value:.3g}"
    return EvidenceRow(
        channel="radioactivity",
        question=_RADIO_Q,
        ran=True,
        positive=verdict == "radioactive",
        verdict=verdict,
        p_value=r.p_value,
        alpha=alpha,
        detail=detail,
        shows=_RADIO_SHOWS,
        misleads=_RADIO_LIMITS,
    )


def _lineage_row(a: AttributionResult | None) -> EvidenceRow:
    if a is None:
        return _not_run(
            "lineage",
            _LINEAGE_Q,
            "distillguard fingerprint attribute",
            _LINEAGE_SHOWS,
            _LINEAGE_LIMITS,
        )
    top = a.ranking[0] if a.ranking else None
    if a.verdict is not None:
        verdict = f"related to {a.verdict}" + (
            f" ({a.provider_verdict})" if a.provider_verdict else ""
        )
    else:
        verdict = "no evidence"
    detail = ""
    if top is not None:
        detail = (
            f"closest family {top.family} (reference {top.reference}), statistic "
            f"{top.statistic:.2f} null SDs"
        )
    return EvidenceRow(
        channel="lineage",
        question=_LINEAGE_Q,
        ran=True,
        positive=a.verdict is not None,
        verdict=verdict,
        p_value=top.p_value if top is not None else None,
        alpha=a.alpha,
        detail=detail,
        shows=_LINEAGE_SHOWS,
        misleads=_LINEAGE_LIMITS,
    )


def _teacher_row(t: Mapping[str, Any], alpha: float | None) -> EvidenceRow:
    # today's shape: {"teacher", "family": {...}, "provider_answer": {...}}; an older, flat
    # shape: {"target", "learned", "p_value"}
    family = t.get("family")
    fam: Mapping[str, Any] = family if isinstance(family, Mapping) else t
    provider = t.get("provider_answer")
    prov = provider if isinstance(provider, Mapping) else None
    learned = bool(fam.get("learned"))
    teacher = t.get("teacher") or fam.get("target")
    verdict = f"learned from {teacher}" if learned else f"no evidence of learning from {teacher}"
    detail = f"null: {len(fam.get('null') or {})} references"
    if prov is not None:
        detail += (
            f"; provider {prov.get('target')}: "
            f"{'learned' if prov.get('learned') else 'no evidence'} "
            f"(p = {_fmt(_float(prov.get('p_value')))})"
        )
    return EvidenceRow(
        channel="lineage --teacher",
        question=_TEACHER_Q,
        ran=True,
        positive=learned,
        verdict=verdict,
        p_value=_float(fam.get("p_value")),
        alpha=_float(t.get("alpha")) if t.get("alpha") is not None else alpha,
        detail=detail,
        shows=_LINEAGE_SHOWS,
        misleads=_LINEAGE_LIMITS,
    )


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def side_by_side_markdown(rows: list[EvidenceRow]) -> str:
    """The rows as a Markdown table (and the limits under it)."""
    lines = [
        "| evidence | question | verdict | p-value | level | detail |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r.channel,
            r.question,
            r.verdict,
            _fmt(r.p_value),
            _fmt(r.alpha),
            r.detail.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in rows:
        lines.append(
            f"- **{r.channel}**: a positive result shows {r.shows}; misleads: {r.misleads}."
        )
    return "\n".join(lines) + "\n"
