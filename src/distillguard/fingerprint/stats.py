"""Statistics of the attribution test: null calibration, tail p-values, multiple-testing correction.

Kept free of feature code so that each piece can be property-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as _st

__all__ = [
    "NullModel",
    "bonferroni",
    "double_center",
    "holm",
]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (monotone, capped at 1), in the input order.

    Rejecting every hypothesis whose adjusted p-value is below α controls the family-wise error
    rate at α under any dependence between the tests.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        p = p_values[i]
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"p-value out of [0, 1]: {p}")
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def bonferroni(p_value: float, tests: int) -> float:
    """``min(1, tests * p_value)``: the p-value of the smallest of ``tests`` p-values."""
    if tests < 1:
        raise ValueError("tests must be at least 1")
    return min(1.0, tests * p_value)


@dataclass(frozen=True)
class NullModel:
    """Location and scale of a statistic among pairs of models not related by distillation.

    The p-value of a new observation is the upper tail of a Student t prediction distribution:
    ``t_{k-1}`` scaled by ``scale * sqrt(1 + 1/k)``, where ``k`` is the number of independent
    units the null was measured on (the reference *models*, not their pairs, which share models
    and are not independent). This is conservative for a heavy-tailed null.
    """

    location: float
    scale: float
    units: int

    @classmethod
    def fit(cls, values: npt.ArrayLike, *, units: int) -> NullModel:
        """Fit the null to the statistic's values on unrelated pairs."""
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size < 3:
            raise ValueError("the null needs at least 3 unrelated pairs")
        if units < 3:
            raise ValueError("the null needs at least 3 independent units")
        scale = float(arr.std(ddof=1))
        return cls(location=float(arr.mean()), scale=max(scale, 1e-12), units=units)

    def standardise(self, value: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(value - location) / scale``."""
        return (np.asarray(value, dtype=np.float64) - self.location) / self.scale

    def p_value(self, value: float) -> float:
        """P(a statistic from an unrelated pair is >= ``value``)."""
        z = float(self.standardise(value)) / math.sqrt(1.0 + 1.0 / self.units)
        return float(_st.t.sf(z, df=self.units - 1))


def double_center(
    matrix: npt.NDArray[np.float64],
    unrelated: npt.NDArray[np.bool_],
    *,
    n_references: int,
) -> npt.NDArray[np.float64]:
    """Remove each model's overall similarity level and each reference's popularity.

    ``matrix[a, b]`` is the similarity of model ``a`` (rows: the references, then any suspects)
    to reference ``b``; ``unrelated[a, b]`` says whether the pair may serve as a null pair (for
    suspect rows: every reference). The residual is ``matrix[a, b] - row[a] - col[b]`` with
    ``row[a]`` the median similarity of ``a`` to references unrelated to it and ``col[b]`` the
    median excess similarity of unrelated references to ``b``: a generic, verbose or "hub" model
    does not look related to everything.
    """
    rows, cols = matrix.shape
    if unrelated.shape != matrix.shape or cols != n_references or rows < n_references:
        raise ValueError("matrix and mask must be (models x references)")
    row = np.array(
        [np.median(matrix[a, unrelated[a]]) if unrelated[a].any() else 0.0 for a in range(rows)]
    )
    centred = matrix - row[:, None]
    ref_part = centred[:n_references]
    ref_mask = unrelated[:n_references]
    col = np.array(
        [
            np.median(ref_part[ref_mask[:, b], b]) if ref_mask[:, b].any() else 0.0
            for b in range(cols)
        ]
    )
    out: npt.NDArray[np.float64] = centred - col[None, :]
    return out
