"""Tournament sampling of Dathathri et al., "Scalable watermarking for identifying large language
model outputs" (Nature, 2024; SynthID-Text).

Each (context window, candidate) gets ``depth`` pseudo-random bits ``g_1 .. g_m`` (the bits of one
keyed 64-bit value). Sampling runs a tournament: candidates drawn from the model meet in pairs,
layer by layer, and the one with the larger ``g_l`` wins. With two candidates per match and binary
g-values the winner's distribution has a closed form, applied layer by layer to the whole
vocabulary (the paper's vectorised tournament)::

    p_l(x) = p_{l-1}(x) * (1 + g_l(x) - E_{p_{l-1}}[g_l])

Detection counts the g-values equal to 1 over the scored tokens and layers. Without the key every
g-value is a fair coin, independent across layers (distinct bits) and, after deduplication, across
tokens, so the count is Binomial(n * depth, 1/2): an exact tail, no approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import DetectionResult, TokenScores
from distillguard.watermark._scheme import WindowScheme, softmax
from distillguard.watermark._stats import binomial_sf

__all__ = ["SynthIDConfig", "SynthIDWatermark"]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SynthIDConfig:
    """Parameters of tournament sampling.

    Attributes:
        depth: tournament layers ``m`` (1..64), i.e. g-values per token.
        context_width: previous tokens the g-values depend on.
    """

    depth: int = 16
    context_width: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 64:
            raise InputError(f"depth must be in 1..64, got {self.depth}")
        if not 1 <= self.context_width <= 64:
            raise InputError(f"context_width must be in 1..64, got {self.context_width}")


class SynthIDWatermark(WindowScheme):
    """Tournament sampling under one key.

    ``process_logits`` returns the log of the tournament winner's distribution; sample from it
    (greedy decoding keeps only part of the signal).
    """

    _name = "synthid-binomial"

    def __init__(self, config: SynthIDConfig, *, key: WatermarkKey) -> None:
        self.config = config
        depth = config.depth
        self._mask = np.uint64((1 << depth) - 1 if depth < 64 else (1 << 64) - 1)
        super().__init__(
            key=key, context_width=config.context_width, domain=f"synthid/h={config.context_width}"
        )

    def g_values(self, values: U64) -> npt.NDArray[np.uint8]:
        """The ``depth`` g-values of each value, shape ``(n, depth)``."""
        shifts = np.arange(self.config.depth, dtype=np.uint64)
        return ((values[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)

    def _token_scores(self, values: U64) -> F64:
        return np.asarray(np.bitwise_count(values & self._mask), dtype=np.float64)

    def _process(self, values: U64, logits: F64) -> F64:
        p = softmax(logits)
        for layer in range(self.config.depth):
            g = ((values >> np.uint64(layer)) & np.uint64(1)).astype(np.float64)
            p = p * (1.0 + g - float(p @ g))
        with np.errstate(divide="ignore"):
            return np.asarray(np.log(np.maximum(p, 0.0)), dtype=np.float64)

    def test(self, scores: TokenScores) -> DetectionResult:
        """Exact binomial test of the number of g-values equal to 1."""
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
        trials = n * self.config.depth
        ones = round(total)
        return DetectionResult(
            method=self._name,
            key_id=self.key_id,
            statistic=float(ones),
            p_value=binomial_sf(ones, trials, 0.5),
            n_scored=n,
            n_tokens=n_tokens,
            n_duplicates=n_duplicates,
            expected=trials / 2,
            details={
                "depth": self.config.depth,
                "context_width": self.config.context_width,
                "mean_g": ones / trials if trials else 0.0,
            },
        )
