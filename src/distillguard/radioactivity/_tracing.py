"""Tracing: which payload (account or cluster id) of the multi-bit watermark a suspect learned.

When the gateway watermarks each account's (or cluster's) answers with its own MPAC payload, a
student trained on a harvest inherits the payloads' bit votes. Pooling the suspect's scored tokens
(open or closed mode, same tape and filter) and decoding them says where the harvest came from:

* **blind decoding** (no candidate list): the majority bit per position; the p-value is the exact
  tail of the *maximum* agreement over all ``2**bits`` payloads
  (:func:`~distillguard.watermark._stats.max_agreement_sf`), so the search is accounted for;
* **candidates** (the payloads actually issued, e.g. the accounts of a campaign): an exact
  binomial test per candidate, Bonferroni-corrected for the number of candidates; the smallest
  adjusted p-value names the source. With a short list this is far more powerful than blind
  decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distillguard.errors import InputError
from distillguard.watermark import MPACWatermark, PayloadResult, PayloadTokenScores, bonferroni

__all__ = ["CandidateResult", "TraceResult", "trace_payload"]


@dataclass(frozen=True)
class CandidateResult:
    """One candidate payload's test.

    Attributes:
        label: the candidate's name (an account or cluster id).
        payload: its payload.
        agreement: scored tokens whose vote agrees with the payload.
        p_value: exact binomial p-value (no correction).
        adjusted_p_value: Bonferroni-adjusted over all candidates.
    """

    label: str
    payload: int
    agreement: int
    p_value: float
    adjusted_p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "label": self.label,
            "payload": self.payload,
            "agreement": self.agreement,
            "p_value": self.p_value,
            "adjusted_p_value": self.adjusted_p_value,
        }


@dataclass(frozen=True)
class TraceResult:
    """Where the suspect's watermark came from.

    Attributes:
        decoded: blind decoding over all payloads (payload, max-agreement p-value, votes).
        candidates: per-candidate tests, best first (empty without a candidate list).
        payload: the answer: the best candidate's payload, or the decoded one without candidates.
        label: the best candidate's label (``None`` without candidates).
        p_value: the p-value of the answer, accounting for the search (over candidates, or over
            all payloads).
        method: how ``p_value`` was computed.
        n_scored: tokens that voted.
    """

    decoded: PayloadResult
    candidates: tuple[CandidateResult, ...]
    payload: int
    label: str | None
    p_value: float
    method: str
    n_scored: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "payload": self.payload,
            "payload_hex": f"{self.payload:x}",
            "label": self.label,
            "p_value": self.p_value,
            "method": self.method,
            "n_scored": self.n_scored,
            "decoded": self.decoded.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


def trace_payload(
    scheme: MPACWatermark,
    scores: PayloadTokenScores,
    *,
    candidates: Mapping[str, int] | None = None,
) -> TraceResult:
    """Decode the payload carried by pooled scores, and test candidate payloads when given."""
    if not isinstance(scores, PayloadTokenScores):
        raise InputError("tracing needs scores from an MPAC scheme (PayloadTokenScores)")
    decoded = scheme.decode_scores(scores)
    if not candidates:
        return TraceResult(
            decoded=decoded,
            candidates=(),
            payload=decoded.payload,
            label=None,
            p_value=decoded.p_value,
            method=f"mpac max-agreement over all 2^{scheme.config.bits} payloads (exact)",
            n_scored=scores.n_scored,
        )
    limit = 1 << scheme.config.bits
    for label, payload in candidates.items():
        if not 0 <= payload < limit:
            raise InputError(f"candidate {label!r}: payload {payload} does not fit in the bits")
    labels = list(candidates)
    tests = [scheme.test_payload(scores, candidates[lbl]) for lbl in labels]
    adjusted = bonferroni([t.p_value for t in tests])
    rows = sorted(
        (
            CandidateResult(
                label=lbl,
                payload=candidates[lbl],
                agreement=int(t.statistic),
                p_value=t.p_value,
                adjusted_p_value=a,
            )
            for lbl, t, a in zip(labels, tests, adjusted, strict=True)
        ),
        key=lambda c: (c.adjusted_p_value, -c.agreement, c.label),
    )
    best = rows[0]
    return TraceResult(
        decoded=decoded,
        candidates=tuple(rows),
        payload=best.payload,
        label=best.label,
        p_value=best.adjusted_p_value,
        method=f"exact binomial per candidate, Bonferroni over {len(rows)} candidates",
        n_scored=scores.n_scored,
    )
