"""Exact tail probabilities and multiple-testing corrections used by the watermark detectors.

Every function here returns an exact probability (up to floating point) rather than a normal
approximation: watermark verdicts live in the far tail (p around 1e-6 and below), where the
z-score approximation of a binomial count is off by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats as _sps

__all__ = [
    "benjamini_hochberg",
    "binomial_sf",
    "bonferroni",
    "gamma_sf",
    "holm",
    "max_agreement_sf",
    "poisson_binomial_sf",
]

F64 = npt.NDArray[np.float64]


def binomial_sf(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), exact (regularised incomplete beta)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(_sps.binom.sf(k - 1, n, p))


def gamma_sf(x: float, shape: float) -> float:
    """P[X >= x] for X ~ Gamma(shape, 1): the sum of ``shape`` independent Exp(1) variables."""
    if shape <= 0:
        return 1.0
    return float(_sps.gamma.sf(x, shape))


def _binom_pmf(n: int, p: float) -> F64:
    return np.asarray(_sps.binom.pmf(np.arange(n + 1), n, p), dtype=np.float64)


def poisson_binomial_sf(k: int, probabilities: Sequence[float] | F64) -> float:
    """P[X >= k] for X a sum of independent Bernoulli(p_i), exact.

    Equal probabilities are grouped into binomials and the groups convolved, so the cost is small
    when the probabilities take few distinct values (as for the lexical scheme, 1/2, 1/3, ...).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if k <= 0:
        return 1.0
    if k > probs.size:
        return 0.0
    values, counts = np.unique(probs, return_counts=True)
    pmf = np.ones(1, dtype=np.float64)
    for value, count in zip(values, counts, strict=True):
        pmf = np.convolve(pmf, _binom_pmf(int(count), float(value)))
    return float(min(1.0, max(0.0, pmf[k:].sum())))


def max_agreement_sf(s: int, group_sizes: Sequence[int] | npt.NDArray[np.int64]) -> float:
    """P[S >= s] where S = sum_j max(A_j, n_j - A_j) and A_j ~ Binomial(n_j, 1/2) independent.

    S is the number of tokens that agree with the best of all ``2**b`` payloads of a multi-bit
    watermark whose bit ``j`` is carried by ``n_j`` tokens, so this tail accounts exactly for the
    search over payloads (no Bonferroni factor of ``2**b`` needed).
    """
    pmf = np.ones(1, dtype=np.float64)
    for n in (int(x) for x in group_sizes):
        if n == 0:
            continue
        base = _binom_pmf(n, 0.5)
        low = (n + 1) // 2
        a = np.arange(n + 1)
        m = np.zeros(n + 1, dtype=np.float64)
        np.add.at(m, np.maximum(a, n - a), base)
        pmf = np.convolve(pmf, m[low:])
        # shift: values start at sum of the lows
        pmf = np.concatenate([np.zeros(low), pmf]) if low else pmf
    if s <= 0:
        return 1.0
    if s >= pmf.size:
        return 0.0
    return float(min(1.0, max(0.0, pmf[s:].sum())))


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values (each multiplied by the number of tests, capped at 1)."""
    m = len(p_values)
    return [min(1.0, p * m) for p in p_values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate, never weaker than
    Bonferroni), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: F64, *, alpha: float) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Benjamini-Hochberg q-values and the rejections at false-discovery rate ``alpha``.

    Returns ``(q_values, rejected)`` aligned with the input.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m, dtype=np.float64)
    q[order] = np.minimum(q_sorted, 1.0)
    return q, q <= alpha
