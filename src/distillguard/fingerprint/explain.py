"""Evidence for an attribution: signature phrases the suspect shares with a reference.

A phrase (word 2-4-gram) is a *shared signature* when both the suspect and the reference use it in
far more of their answers than the other references typically do. The score of a phrase is the
smaller of the two log-odds ratios against the other references' median answer rate, so that a
phrase only one of the two over-uses scores low.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillguard.fingerprint.outputs import ModelOutputs

__all__ = ["SharedPhrase", "shared_phrases"]

_EPS = 0.002


@dataclass(frozen=True)
class SharedPhrase:
    """One phrase over-used by both the suspect and the reference.

    Attributes:
        phrase: the word n-gram (lower-cased).
        suspect_rate: share of the suspect's answers that contain it.
        reference_rate: share of the reference's answers that contain it.
        others_rate: median share among the other references.
        score: the smaller log-odds ratio of the two against ``others_rate``.
    """

    phrase: str
    suspect_rate: float
    reference_rate: float
    others_rate: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "phrase": self.phrase,
            "suspect_rate": round(self.suspect_rate, 4),
            "reference_rate": round(self.reference_rate, 4),
            "others_rate": round(self.others_rate, 4),
            "score": round(self.score, 3),
        }


def _logit(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.log((p + _EPS) / (1.0 - p + _EPS))


def shared_phrases(
    suspect: ModelOutputs,
    reference: ModelOutputs,
    others: Sequence[ModelOutputs],
    *,
    top: int = 10,
    min_rate: float = 0.01,
) -> list[SharedPhrase]:
    """The ``top`` phrases both ``suspect`` and ``reference`` over-use relative to ``others``.

    Only phrases in at least ``min_rate`` of the suspect's and the reference's answers count.
    """
    if top < 1:
        raise ValueError("top must be at least 1")
    if not others:
        raise ValueError("at least one other reference is needed")
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(
        analyzer="word",
        ngram_range=(2, 4),
        binary=True,
        lowercase=True,
        token_pattern=r"(?u)\b\w+\b",
        min_df=max(2, int(min_rate * len(suspect))),
    )
    try:
        vec.fit([*suspect.texts, *reference.texts])
    except ValueError:  # no phrase frequent enough (tiny or empty inputs)
        return []
    vocab = vec.get_feature_names_out()

    def rate(m: ModelOutputs) -> np.ndarray[Any, Any]:
        x = vec.transform(m.texts)
        return np.asarray(x.sum(axis=0)).ravel() / max(len(m.texts), 1)

    rs, rr = rate(suspect), rate(reference)
    ro = np.median(np.stack([rate(o) for o in others]), axis=0)
    score = np.minimum(_logit(rs) - _logit(ro), _logit(rr) - _logit(ro))
    keep = (rs >= min_rate) & (rr >= min_rate) & (score > 0)
    order = [i for i in np.argsort(-score) if keep[i]][:top]
    return [
        SharedPhrase(
            phrase=str(vocab[i]),
            suspect_rate=float(rs[i]),
            reference_rate=float(rr[i]),
            others_rate=float(ro[i]),
            score=float(score[i]),
        )
        for i in order
    ]
