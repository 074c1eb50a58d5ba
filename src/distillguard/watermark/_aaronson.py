"""Gumbel-max ("exponential") watermark of Aaronson (2022), analysed by Fernandez et al. (2023).

At each step a keyed PRF of (context window, candidate) gives every candidate a uniform ``r_v``; the
generator emits ``argmax_v r_v ** (1 / p_v)``, which is an exact sample of the model's distribution
``p`` when the ``r`` are uniform (the Gumbel-max trick), yet is determined by the key.

Detection sums ``-log(1 - r_t)`` over the scored tokens. Without the key each term is Exp(1) and
independent (after deduplication), so the sum over ``n`` tokens is Gamma(n, 1): the p-value is its
exact upper tail (Fernandez et al., "Three Bricks to Consolidate Watermarks for LLMs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import DetectionResult, TokenScores
from distillguard.watermark._prf import to_unit
from distillguard.watermark._scheme import WindowScheme, softmax
from distillguard.watermark._stats import gamma_sf

__all__ = ["AaronsonConfig", "AaronsonWatermark"]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AaronsonConfig:
    """Parameters of the Gumbel-max scheme.

    Attributes:
        context_width: previous tokens the values depend on.
    """

    context_width: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.context_width <= 64:
            raise InputError(f"context_width must be in 1..64, got {self.context_width}")


class AaronsonWatermark(WindowScheme):
    """The Gumbel-max scheme under one key.

    ``process_logits`` returns logits that put all mass on the chosen token (0 for it, ``-inf``
    elsewhere), so greedy decoding and sampling both emit it. Apply temperature, top-k and top-p
    before it.
    """

    _name = "aaronson-gamma"

    def __init__(self, config: AaronsonConfig, *, key: WatermarkKey) -> None:
        self.config = config
        super().__init__(
            key=key, context_width=config.context_width, domain=f"aaronson/h={config.context_width}"
        )

    def choose(self, values: U64, logits: F64) -> int:
        """The token the scheme emits: ``argmax log(r_v) / p_v``."""
        probs = softmax(logits)
        r = to_unit(values)
        with np.errstate(divide="ignore"):
            score = np.where(probs > 0, np.log(r) / probs, -np.inf)
        return int(np.argmax(score))

    def _token_scores(self, values: U64) -> F64:
        return np.asarray(-np.log1p(-to_unit(values)), dtype=np.float64)

    def _process(self, values: U64, logits: F64) -> F64:
        out = np.full(logits.shape[0], -np.inf, dtype=np.float64)
        out[self.choose(values, logits)] = 0.0
        return out

    def test(self, scores: TokenScores) -> DetectionResult:
        """Exact gamma test of the score sum."""
        return self.test_totals(
            total=float(scores.scores.sum()),
            n_scored=scores.n_scored,
            n_tokens=scores.n_tokens,
            n_duplicates=scores.n_duplicates,
        )

    def test_totals(
        self, *, total: float, n_scored: int, n_tokens: int, n_duplicates: int
    ) -> DetectionResult:
        """The test from pooled totals (sum of scores, tokens scored), e.g. over a corpus."""
        n = n_scored
        return DetectionResult(
            method=self._name,
            key_id=self.key_id,
            statistic=total,
            p_value=gamma_sf(total, n),
            n_scored=n,
            n_tokens=n_tokens,
            n_duplicates=n_duplicates,
            expected=float(n),
            details={"context_width": self.config.context_width},
        )
