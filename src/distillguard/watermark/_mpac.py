"""Multi-bit payloads by position-keyed message bits, after Yoo et al., "Advancing Beyond
Identification: Multi-bit Watermark for Large Language Models" (MPAC, NAACL 2024).

A payload of ``bits`` bits (an account or cluster id) is embedded as follows: a keyed PRF of the
context window picks which bit ``j`` the next token carries; a second keyed PRF of (window,
candidate) splits the vocabulary into two halves; ``delta`` is added to the half that matches bit
``j`` of the payload. Every watermarked token therefore votes for one bit.

Decoding counts, for each bit ``j``, the ``n_j`` scored tokens that carry it and ``a_j`` of them in
the "1" half; bit ``j`` decodes to the majority. The number of tokens that agree with the decoded
payload, ``S = sum_j max(a_j, n_j - a_j)``, is the maximum agreement over *all* ``2**bits``
payloads, and its null distribution (each vote a fair coin) is computed exactly by convolution
(:func:`~distillguard.watermark._stats.max_agreement_sf`), so the p-value accounts for the search
over payloads without a ``2**bits`` Bonferroni factor. Testing one known payload (was it account
X?) is a plain exact binomial test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import (
    DedupTape,
    DetectionResult,
    TokenScores,
    as_token_array,
)
from distillguard.watermark._prf import KeyedPRF
from distillguard.watermark._scheme import WindowScheme
from distillguard.watermark._stats import binomial_sf, max_agreement_sf

__all__ = ["MPACConfig", "MPACWatermark", "PayloadResult", "PayloadTokenScores"]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MPACConfig:
    """Parameters of the multi-bit scheme.

    Attributes:
        bits: payload length (1..64; at least 16 to tell accounts apart).
        delta: logit bias added to the half of the vocabulary matching the carried bit.
        context_width: previous tokens the bit position and the split depend on.
    """

    bits: int = 16
    delta: float = 2.0
    context_width: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 64:
            raise InputError(f"bits must be in 1..64, got {self.bits}")
        if self.delta < 0:
            raise InputError(f"delta must be non-negative, got {self.delta}")
        if not 1 <= self.context_width <= 64:
            raise InputError(f"context_width must be in 1..64, got {self.context_width}")


@dataclass(frozen=True)
class PayloadTokenScores(TokenScores):
    """:class:`TokenScores` (score = 1 for a vote in the "1" half) with each vote's bit index."""

    bit_index: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)


@dataclass(frozen=True)
class PayloadResult:
    """A decoded payload.

    Attributes:
        payload: the decoded payload (bit ``j`` is ``(payload >> j) & 1``).
        p_value: exact probability, without the watermark, that some payload agrees with at
            least ``agreement`` tokens (the search over payloads is accounted for).
        agreement: tokens agreeing with the decoded payload.
        n_scored: tokens scored.
        votes: tokens carrying each bit.
        bit_margins: ``|a_j - (n_j - a_j)|`` per bit (0: the bit is a coin toss).
        key_id: the watermark key.
    """

    payload: int
    p_value: float
    agreement: int
    n_scored: int
    votes: tuple[int, ...]
    bit_margins: tuple[int, ...]
    key_id: str
    method: str = "mpac-max-agreement"

    @property
    def undetermined_bits(self) -> int:
        """Bits with no vote or a tie (their decoded value is arbitrary)."""
        return sum(1 for m in self.bit_margins if m == 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "key_id": self.key_id,
            "payload": self.payload,
            "payload_hex": f"{self.payload:x}",
            "p_value": self.p_value,
            "agreement": self.agreement,
            "n_scored": self.n_scored,
            "votes": list(self.votes),
            "bit_margins": list(self.bit_margins),
            "undetermined_bits": self.undetermined_bits,
        }


class MPACWatermark(WindowScheme):
    """The multi-bit scheme under one key, optionally bound to a payload for generation.

    Example::

        wm = MPACWatermark(MPACConfig(bits=16), key=key).for_payload(0xBEEF)
        logits = wm.process_logits(context_ids, logits)
        decoded = wm.decode(token_ids)          # PayloadResult(payload=0xbeef, p_value=...)
    """

    _name = "mpac-max-agreement"

    def __init__(
        self, config: MPACConfig, *, key: WatermarkKey, payload: int | None = None
    ) -> None:
        self.config = config
        if payload is not None and not 0 <= payload < (1 << config.bits):
            raise InputError(f"payload {payload} does not fit in {config.bits} bits")
        self.payload = payload
        self._key = key
        super().__init__(
            key=key, context_width=config.context_width, domain=f"mpac/h={config.context_width}"
        )
        self._pos_prf = KeyedPRF(key.secret, f"mpac-position/h={config.context_width}")

    def for_payload(self, payload: int) -> MPACWatermark:
        """The same scheme and key, bound to ``payload`` for generation."""
        return MPACWatermark(self.config, key=self._key, payload=payload)

    def bit_index(self, windows: list[I64]) -> I64:
        """The payload bit each window's token carries."""
        h = self._pos_prf.context_hash(windows)
        return (h % np.uint64(self.config.bits)).astype(np.int64)

    def _token_scores(self, values: U64) -> F64:
        return (values >> np.uint64(63)).astype(np.float64)

    def process_logits(self, window: Sequence[int], logits: F64) -> F64:
        """Watermarked logits: ``delta`` on the half of the vocabulary matching the carried bit."""
        if self.payload is None:
            raise InputError("bind a payload with for_payload() before generating")
        last = self.last_window(window)
        arr = np.asarray(logits, dtype=np.float64)
        values = self._prf.vocab_values(last, arr.shape[0], self_hash=False)
        j = self._pos_prf.window_scalar(last) % self.config.bits
        bit = (self.payload >> j) & 1
        side = (values >> np.uint64(63)).astype(np.int64)
        return np.asarray(arr + self.config.delta * (side == bit), dtype=np.float64)

    def process_candidates(
        self, window: Sequence[int], candidates: npt.NDArray[np.integer], logits: F64
    ) -> F64:
        """:meth:`process_logits` over a sparse vocabulary: ``logits[i]`` is ``candidates[i]``'s."""
        if self.payload is None:
            raise InputError("bind a payload with for_payload() before generating")
        last = self.last_window(window)
        cand = np.asarray(candidates, dtype=np.int64)
        values = self._prf.values([np.full(cand.shape[0], t, dtype=np.int64) for t in last], cand)
        bit = (self.payload >> (self._pos_prf.window_scalar(last) % self.config.bits)) & 1
        side = (values >> np.uint64(63)).astype(np.int64)
        return np.asarray(logits + self.config.delta * (side == bit), dtype=np.float64)

    def score_tokens(
        self,
        tokens: Sequence[int] | npt.NDArray[np.integer],
        *,
        prompt_len: int = 0,
        dedup: bool = True,
        tape: DedupTape | None = None,
        mask: npt.NDArray[np.bool_] | None = None,
    ) -> PayloadTokenScores:
        """Per-token votes (see :meth:`WindowScheme.score_tokens`) with their bit indices."""
        arr = as_token_array(tokens)
        base = super().score_tokens(arr, prompt_len=prompt_len, dedup=dedup, tape=tape, mask=mask)
        h = self.context_width
        windows = [arr[base.positions - h + j] for j in range(h)]
        return PayloadTokenScores(
            method=base.method,
            key_id=base.key_id,
            positions=base.positions,
            scores=base.scores,
            keys=base.keys,
            n_tokens=base.n_tokens,
            n_candidates=base.n_candidates,
            bit_index=self.bit_index(windows),
        )

    def decode_scores(self, scores: PayloadTokenScores) -> PayloadResult:
        """Decode the payload from scored votes (pool several texts' scores first if needed)."""
        b = self.config.bits
        votes = np.bincount(scores.bit_index, minlength=b)[:b]
        ones = np.bincount(scores.bit_index, weights=scores.scores, minlength=b)[:b]
        ones_i = np.rint(ones).astype(np.int64)
        zeros_i = votes - ones_i
        bits = ones_i > zeros_i
        payload = int(sum(1 << j for j in range(b) if bits[j]))
        agreement = int(np.maximum(ones_i, zeros_i).sum())
        return PayloadResult(
            payload=payload,
            p_value=max_agreement_sf(agreement, votes),
            agreement=agreement,
            n_scored=scores.n_scored,
            votes=tuple(int(v) for v in votes),
            bit_margins=tuple(int(abs(o - z)) for o, z in zip(ones_i, zeros_i, strict=True)),
            key_id=self.key_id,
        )

    def decode(
        self, tokens: Sequence[int] | npt.NDArray[np.integer], *, prompt_len: int = 0
    ) -> PayloadResult:
        """Decode the payload carried by ``tokens``."""
        return self.decode_scores(self.score_tokens(tokens, prompt_len=prompt_len))

    def test_payload(self, scores: PayloadTokenScores, payload: int) -> DetectionResult:
        """Exact binomial test that the text carries this one payload (no search)."""
        bits = (np.int64(payload) >> scores.bit_index) & 1
        agree = int((scores.scores.astype(np.int64) == bits).sum())
        n = scores.n_scored
        return DetectionResult(
            method="mpac-binomial",
            key_id=self.key_id,
            statistic=float(agree),
            p_value=binomial_sf(agree, n, 0.5),
            n_scored=n,
            n_tokens=scores.n_tokens,
            n_duplicates=scores.n_duplicates,
            expected=n / 2,
            details={"payload": payload, "bits": self.config.bits},
        )

    def test(self, scores: TokenScores) -> DetectionResult:
        """Zero-bit test: is *some* payload present (the decoding p-value)."""
        if not isinstance(scores, PayloadTokenScores):
            raise InputError("MPAC scores must come from MPACWatermark.score_tokens")
        decoded = self.decode_scores(scores)
        return DetectionResult(
            method=self._name,
            key_id=self.key_id,
            statistic=float(decoded.agreement),
            p_value=decoded.p_value,
            n_scored=decoded.n_scored,
            n_tokens=scores.n_tokens,
            n_duplicates=scores.n_duplicates,
            expected=float("nan"),
            details={"payload": decoded.payload, "bits": self.config.bits},
        )
