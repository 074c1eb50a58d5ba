"""Calibration of the per-account signals and the account and campaign scores.

**Calibration from legitimate traffic.** Each continuous signal is turned into a robust z-score
against the log's own accounts: ``z = (x - median) / (1.4826 * MAD)``. Median and MAD stay put as
long as fewer than half of the accounts are campaign accounts, so the reference is the legitimate
majority. A signal *fires* above ``z_fire`` (default 4, about 3e-5 one-sided for a normal
variable; real signals have heavier tails, which is why the false-positive rates are measured on
clean traffic by the tests and ``eval-scan``, not assumed). The elicitation share is a count, and
is tested exactly: one-sided binomial test of the account's count against the base rate ``p0`` of
the log (the mean share of the least eliciting 75% of accounts, at least ``p0_floor``).

**Scores.** Each fired signal contributes ``w_i * s_i`` (``s_i`` in 0..1 grows with the evidence)
to a noisy-or account score ``own = 1 - prod(1 - w_i s_i)``. A community of at least
``min_campaign`` accounts gets ``community = mean(own) * (1 - 1/sqrt(size))`` raised by its
synchrony; an account's final score is ``1 - (1 - own_weight * own) * (1 - community)``, so that
strong individual evidence and a strong community both count, and a lone oddball or a large
community of ordinary accounts does not. Accounts at or above ``flag_threshold`` are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["ScoreParams", "binomial_evidence", "robust_z"]


def _default_signal_weights() -> dict[str, float]:
    return {
        "elicitation": 0.75,
        "payment": 0.5,
        "signup_burst": 0.3,
        "regularity": 0.15,
        "harvest": 0.15,
        "sweep": 0.2,
    }


@dataclass(frozen=True)
class ScoreParams:
    """Thresholds and weights of the scores (defaults documented in docs/scan.md)."""

    z_fire: float = 4.0
    alpha_elicitation: float = 1e-3
    p0_floor: float = 0.02
    min_exchanges: int = 5
    min_campaign: int = 3
    own_weight: float = 0.5
    flag_threshold: float = 0.5
    weights: dict[str, float] = field(default_factory=_default_signal_weights)


def robust_z(x: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Robust z-scores of ``x`` against the median and MAD of ``x[mask]``.

    If the MAD is 0, the standard deviation is used, and 1 if that is 0 too.
    """
    ref = x[mask] if mask is not None else x
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        return np.zeros_like(x, dtype=np.float64)
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826
    if mad <= 0:
        mad = float(np.std(ref)) or 1.0
    return np.asarray((x - med) / mad, dtype=np.float64)


def binomial_evidence(k: np.ndarray, n: np.ndarray, p0: float) -> np.ndarray:
    """One-sided p-values P[X >= k], X ~ Binomial(n, p0), elementwise."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return np.asarray(np.where(n > 0, stats.binom.sf(k - 1, n, p0), 1.0), dtype=np.float64)


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    return np.asarray(np.clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float64)
