"""Green-list watermark of Kirchenbauer et al., "A Watermark for Large Language Models" (ICML 2023).

At each step a keyed pseudo-random function of (the last ``context_width`` tokens, the candidate)
puts a fraction ``gamma`` of the vocabulary on a green list, and ``delta`` is added to the green
logits. Green membership is decided per (window, candidate) pair by the PRF, so detection needs no
vocabulary permutation: one vectorised hash over the whole sequence. With ``self_hash`` the window's
pseudo-random anchor is the minimum of per-token values over the window *and the candidate*
(Kirchenbauer et al. 2023b, "On the Reliability of Watermarks"), which survives more edits.

Detection counts green tokens among the scored ones; under the null hypothesis (text written
without the key) each scored, deduplicated token is green with probability exactly ``gamma``,
independently, so the count is Binomial(n, gamma) and the p-value is its exact upper tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import DetectionResult, TokenScores
from distillguard.watermark._scheme import WindowScheme
from distillguard.watermark._stats import binomial_sf

__all__ = ["KGWConfig", "KGWWatermark"]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class KGWConfig:
    """Parameters of the green-list scheme, shared by generator and detector.

    Attributes:
        gamma: fraction of the vocabulary that is green (0 < gamma < 1).
        delta: logit bias added to green tokens at generation.
        context_width: previous tokens the green list depends on (``h``).
        self_hash: anchor the window on the minimum per-token value including the candidate.
    """

    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1
    self_hash: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise InputError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.delta < 0:
            raise InputError(f"delta must be non-negative, got {self.delta}")
        if not 1 <= self.context_width <= 64:
            raise InputError(f"context_width must be in 1..64, got {self.context_width}")

    @classmethod
    def robust(cls) -> KGWConfig:
        """Preset of Kirchenbauer et al. 2023b: self-hash over 4 tokens, gamma 0.25, delta 2."""
        return cls(gamma=0.25, delta=2.0, context_width=4, self_hash=True)


class KGWWatermark(WindowScheme):
    """The green-list scheme under one key (generation and detection).

    Example::

        wm = KGWWatermark(KGWConfig(), key=keyring.watermark_key())
        logits = wm.process_logits(prompt_ids, logits)        # generation step
        result = wm.detect(token_ids, prompt_len=len(prompt_ids))
    """

    _name = "kgw-binomial"

    def __init__(self, config: KGWConfig, *, key: WatermarkKey) -> None:
        self.config = config
        self._self_hash = config.self_hash
        self._threshold = np.uint64(min(int(config.gamma * 2.0**64), (1 << 64) - 1))
        self._cache: dict[tuple[int, ...], npt.NDArray[np.bool_]] = {}
        self._cache_vocab = 0
        super().__init__(
            key=key,
            context_width=config.context_width,
            domain=f"kgw/h={config.context_width}/self={int(config.self_hash)}",
        )

    def green(self, values: U64) -> npt.NDArray[np.bool_]:
        """Green membership of PRF values."""
        return np.asarray(values < self._threshold)

    def green_mask(self, window: list[int], vocab_size: int) -> npt.NDArray[np.bool_]:
        """Green list (as a mask over the vocabulary) after ``window``."""
        last = self.last_window(window)
        return self.green(self._prf.vocab_values(last, vocab_size, self_hash=self._self_hash))

    def green_masks(self, windows: list[list[int]], vocab_size: int) -> npt.NDArray[np.bool_]:
        """Green lists after several contexts at once (a batch), shape ``(len(windows), V)``.

        Masks are cached per context window (up to about 64 MiB), so a generation step whose
        contexts were seen before costs a few dictionary lookups.
        """
        lasts = [tuple(self.last_window(w)) for w in windows]
        if self._cache_vocab != vocab_size:
            self._cache.clear()
            self._cache_vocab = vocab_size
        missing = [w for w in dict.fromkeys(lasts) if w not in self._cache]
        if missing:
            values = self._prf.vocab_values_batch(
                [list(w) for w in missing], vocab_size, self_hash=self._self_hash
            )
            fresh = self.green(values)
            limit = max(16, (64 << 20) // max(vocab_size, 1))
            for w, row in zip(missing, fresh, strict=True):
                if len(self._cache) >= limit:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[w] = row
        return np.stack([self._cache[w] for w in lasts])

    def bias_rows(self, windows: list[list[int]], vocab_size: int) -> npt.NDArray[np.float32]:
        """``delta`` times the green masks of a batch, as float32 (what a processor adds)."""
        masks = self.green_masks(windows, vocab_size)
        return np.asarray(masks * np.float32(self.config.delta), dtype=np.float32)

    def _token_scores(self, values: U64) -> F64:
        return self.green(values).astype(np.float64)

    def _process(self, values: U64, logits: F64) -> F64:
        return np.asarray(logits + self.config.delta * self.green(values), dtype=np.float64)

    def test(self, scores: TokenScores) -> DetectionResult:
        """Exact binomial test of the green count."""
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
        greens = round(total)
        return DetectionResult(
            method=self._name,
            key_id=self.key_id,
            statistic=float(greens),
            p_value=binomial_sf(greens, n, self.config.gamma),
            n_scored=n,
            n_tokens=n_tokens,
            n_duplicates=n_duplicates,
            expected=self.config.gamma * n,
            details={
                "gamma": self.config.gamma,
                "green_fraction": greens / n if n else 0.0,
                "context_width": self.config.context_width,
                "self_hash": self.config.self_hash,
            },
        )
