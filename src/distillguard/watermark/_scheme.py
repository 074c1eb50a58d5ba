"""The machinery shared by the window-keyed schemes (KGW, Aaronson, SynthID, MPAC)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import (
    DedupTape,
    DetectionResult,
    TokenScores,
    as_token_array,
    first_occurrences,
    windows_of,
)
from distillguard.watermark._prf import KeyedPRF, fmix64

__all__ = ["WindowScheme", "softmax"]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


def softmax(logits: F64) -> F64:
    """Numerically stable softmax of a 1-D array of logits (``-inf`` allowed)."""
    z = np.asarray(logits, dtype=np.float64)
    top = np.max(z)
    e = np.exp(z - top)
    return np.asarray(e / e.sum(), dtype=np.float64)


class WindowScheme:
    """Base of schemes whose pseudo-random values depend on (context window, candidate)."""

    _name: str = "window"
    _self_hash: bool = False

    def __init__(self, *, key: WatermarkKey, context_width: int, domain: str) -> None:
        if context_width < 1:
            raise InputError("context_width must be at least 1")
        self._key_id = key.kid
        self._width = context_width
        self._prf = KeyedPRF(key.secret, domain)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """The watermark key id."""
        return self._key_id

    @property
    def context_width(self) -> int:
        """Tokens of context each position's pseudo-random values depend on."""
        return self._width

    @property
    def method(self) -> str:
        """The test's method name."""
        return self._name

    # --- hooks ---------------------------------------------------------------------------------

    def _token_scores(self, values: U64) -> F64:
        raise NotImplementedError

    def test(self, scores: TokenScores) -> DetectionResult:
        """The exact test of pooled scores."""
        raise NotImplementedError

    def _process(self, values: U64, logits: F64) -> F64:
        raise NotImplementedError

    def test_totals(
        self, *, total: float, n_scored: int, n_tokens: int, n_duplicates: int
    ) -> DetectionResult:
        """The exact test from pooled totals (sum of per-token scores, tokens scored)."""
        raise InputError(f"{self._name} cannot be tested from totals")

    # --- shared --------------------------------------------------------------------------------

    def _values(self, windows: list[npt.NDArray[np.int64]], tokens: npt.NDArray[np.int64]) -> U64:
        if self._self_hash:
            return self._prf.self_hash_values(windows, tokens)
        return self._prf.values(windows, tokens)

    def last_window(self, window: Sequence[int]) -> list[int]:
        """The last ``context_width`` tokens of ``window`` (there must be that many)."""
        last = [int(t) for t in window[-self._width :]]
        if len(last) < self._width:
            raise InputError(
                f"generation needs at least {self._width} tokens of context (a prompt or BOS)"
            )
        return last

    def process_logits(self, window: Sequence[int], logits: F64) -> F64:
        """Return watermarked logits for the next token after ``window`` (the last tokens)."""
        last = self.last_window(window)
        arr = np.asarray(logits, dtype=np.float64)
        values = self._prf.vocab_values(last, arr.shape[0], self_hash=self._self_hash)
        return self._process(values, arr)

    def process_candidates(
        self, window: Sequence[int], candidates: npt.NDArray[np.integer], logits: F64
    ) -> F64:
        """Like :meth:`process_logits` over a sparse vocabulary: ``logits[i]`` is the logit of
        token id ``candidates[i]`` (for word-level generators whose ids are not ``0..V-1``)."""
        last = self.last_window(window)
        cand = np.asarray(candidates, dtype=np.int64)
        windows = [np.full(cand.shape[0], t, dtype=np.int64) for t in last]
        return self._process(self._values(windows, cand), np.asarray(logits, dtype=np.float64))

    def score_tokens(
        self,
        tokens: Sequence[int] | npt.NDArray[np.integer],
        *,
        prompt_len: int = 0,
        dedup: bool = True,
        tape: DedupTape | None = None,
        mask: npt.NDArray[np.bool_] | None = None,
    ) -> TokenScores:
        """Per-token scores of ``tokens``.

        Args:
            tokens: token ids, prompt first.
            prompt_len: the first ``prompt_len`` tokens are a prompt: context only, never scored.
            dedup: score each (context window, token) once (within this text; across texts too
                when a ``tape`` is given).
            tape: a :class:`DedupTape` shared across texts.
            mask: positions allowed to be scored (e.g. a k-gram filter), same length as tokens.
        """
        arr = as_token_array(tokens)
        if prompt_len < 0:
            raise InputError("prompt_len must be non-negative")
        windows, cand, positions = windows_of(arr, width=self._width, start=prompt_len)
        values = self._values(windows, cand)
        keys = values  # dedup on the PRF's input: equal inputs, equal values
        if mask is not None:
            if mask.shape != arr.shape:
                raise InputError(f"mask has shape {mask.shape}, tokens {arr.shape}")
            sel = mask[positions]
            values, keys, positions = values[sel], keys[sel], positions[sel]
        n_candidates = int(positions.shape[0])
        if tape is not None:
            keep = tape.admit(keys)
        elif dedup:
            keep = first_occurrences(keys)
        else:
            keep = None
        if keep is not None:
            values, keys, positions = values[keep], keys[keep], positions[keep]
        return TokenScores(
            method=self._name,
            key_id=self._key_id,
            positions=positions,
            scores=self._token_scores(values),
            keys=keys,
            n_tokens=int(arr.shape[0]),
            n_candidates=n_candidates,
        )

    def detect_many(
        self,
        documents: Sequence[npt.NDArray[np.integer]],
        *,
        prompt_lens: Sequence[int] | None = None,
    ) -> list[DetectionResult]:
        """Test many texts at once: one vectorised pass over all their tokens.

        Equivalent to ``[self.detect(d, prompt_len=p) for d, p in ...]`` (each text deduplicated
        on its own), but without a Python call per text on the hashing path.
        """
        docs = [as_token_array(d) for d in documents]
        plens = np.asarray(prompt_lens if prompt_lens is not None else [0] * len(docs))
        if plens.shape[0] != len(docs):
            raise InputError("prompt_lens must have one entry per document")
        lengths = np.array([d.shape[0] for d in docs], dtype=np.int64)
        if not docs or int(lengths.sum()) == 0:
            return [
                self.test_totals(total=0.0, n_scored=0, n_tokens=int(n), n_duplicates=0)
                for n in lengths
            ]
        tokens = np.concatenate(docs)
        doc = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        offset = np.arange(tokens.shape[0], dtype=np.int64) - starts[doc]
        windows, cand, positions = windows_of(tokens, width=self._width, start=0)
        ok = offset[positions] >= np.maximum(self._width, plens[doc[positions]])
        windows = [w[ok] for w in windows]
        cand, positions = cand[ok], positions[ok]
        owner = doc[positions]
        values = self._values(windows, cand)
        keys = values  # dedup on the PRF's input: equal inputs, equal values
        tagged = keys ^ fmix64((owner + 1).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        keep = first_occurrences(tagged)
        scores = self._token_scores(values[keep])
        n_docs = len(docs)
        sums = np.bincount(owner[keep], weights=scores, minlength=n_docs)
        counts = np.bincount(owner[keep], minlength=n_docs)
        cands = np.bincount(owner, minlength=n_docs)
        return [
            self.test_totals(
                total=float(sums[i]),
                n_scored=int(counts[i]),
                n_tokens=int(lengths[i]),
                n_duplicates=int(cands[i] - counts[i]),
            )
            for i in range(n_docs)
        ]

    def detect(
        self,
        tokens: Sequence[int] | npt.NDArray[np.integer],
        *,
        prompt_len: int = 0,
        dedup: bool = True,
    ) -> DetectionResult:
        """Score and test in one call."""
        return self.test(self.score_tokens(tokens, prompt_len=prompt_len, dedup=dedup))
