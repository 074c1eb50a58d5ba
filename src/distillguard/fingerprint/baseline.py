"""The naive baseline: mean paired TF-IDF cosine to each reference, the most similar one wins.

It has no null model and always names a family; it is reported beside the attribution test so
that the test's gain (and its refusal to accuse without evidence) can be seen on the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distillguard.fingerprint.outputs import FamilyMap, ModelOutputs

__all__ = ["BaselineResult", "naive_baseline"]


@dataclass(frozen=True)
class BaselineResult:
    """The family of the most similar reference and the similarity to each reference."""

    family: str
    reference: str
    similarities: dict[str, float]


def naive_baseline(
    suspect: ModelOutputs, references: Sequence[ModelOutputs], families: FamilyMap
) -> BaselineResult:
    """Mean cosine of the TF-IDF vectors of the suspect's and each reference's paired answers."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = sorted(set(suspect.prompt_ids).intersection(*(r.prompt_ids for r in references)))
    refs = [r.subset(common) for r in references]
    sus = suspect.subset(common)
    vec = TfidfVectorizer(sublinear_tf=True)
    vec.fit([t for r in refs for t in r.texts] + list(sus.texts))
    s = vec.transform(sus.texts)
    sims: dict[str, float] = {}
    for r in refs:
        m = vec.transform(r.texts)
        sims[r.name] = float(np.asarray(s.multiply(m).sum(axis=1)).mean())
    best = max(sims, key=lambda k: sims[k])
    return BaselineResult(family=families.families[best], reference=best, similarities=sims)
