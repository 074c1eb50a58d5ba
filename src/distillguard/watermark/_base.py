"""What every watermark scheme shares: typed results, the deduplication tape, windows, multi-key.

A scheme (:class:`WatermarkScheme`) is one frozen configuration plus one watermark key. The same
object biases logits at generation time and scores text at detection time, so the two can never
disagree about parameters. Detection is split in two steps that the radioactivity test reuses:

1. :meth:`WatermarkScheme.score_tokens` turns a token-id sequence into per-token scores
   (:class:`TokenScores`): which positions were scored, each position's score, and each
   position's (context window, token) key, after prompt stripping, an optional position mask
   (e.g. a k-gram filter) and deduplication (within the text, and across texts with a
   :class:`DedupTape`);
2. :meth:`WatermarkScheme.test` turns scores into a :class:`DetectionResult` with an exact p-value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.watermark._stats import bonferroni, holm

__all__ = [
    "DedupTape",
    "DetectionResult",
    "MultiKeyResult",
    "TokenScores",
    "WatermarkScheme",
    "as_token_array",
    "detect_multi_key",
    "first_occurrences",
    "windows_of",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def as_token_array(tokens: Sequence[int] | npt.NDArray[np.integer]) -> I64:
    """Token ids as a 1-D int64 array; refuses negative ids and other shapes."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise InputError(f"token ids must be a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"token ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and int(arr.min()) < 0:
        raise InputError("token ids must be non-negative")
    return arr


def windows_of(tokens: I64, *, width: int, start: int) -> tuple[list[I64], I64, I64]:
    """The context windows of positions ``start .. n-1`` (each needs ``width`` tokens before it).

    Returns ``(windows, candidates, positions)`` where ``windows[j][i]`` is the j-th token
    (oldest first) before position ``positions[i]``.
    """
    n = tokens.shape[0]
    first = max(start, width)
    if first >= n:
        empty = np.zeros(0, dtype=np.int64)
        return [empty] * width, empty, empty
    windows = [tokens[first - width + j : n - width + j] for j in range(width)]
    return windows, tokens[first:], np.arange(first, n, dtype=np.int64)


def first_occurrences(keys: U64) -> npt.NDArray[np.bool_]:
    """Mask of the first occurrence of each distinct key, in one sort.

    Keys are packed with their position into one 64-bit word (the low bits hold the position,
    the high bits the key's top bits) and sorted once; for sequences up to 2**24 tokens at least
    40 key bits remain, so that two distinct windows collide with probability below 2**-40.
    """
    n = keys.shape[0]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if n >= 1 << 24:
        _, idx = np.unique(keys, return_index=True)
        keep[idx] = True
        return keep
    pos_bits = max(1, int(n - 1).bit_length())
    packed = (keys >> np.uint64(pos_bits)) << np.uint64(pos_bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    hi = packed >> np.uint64(pos_bits)
    first = np.ones(n, dtype=bool)
    first[1:] = hi[1:] != hi[:-1]
    keep[(packed[first] & np.uint64((1 << pos_bits) - 1)).astype(np.int64)] = True
    return keep


class DedupTape:
    """The (context window, token) keys already scored, across texts.

    Scoring many texts (a dataset, or a suspect model's many answers) with one tape counts each
    window once over the whole run, which keeps the null distribution exact when texts repeat.
    Keys are kept in a few sorted runs that are merged by size (like an LSM tree), so admitting
    ``N`` keys in many small batches costs ``O(N log N)`` overall.
    """

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[U64] = []

    def __len__(self) -> int:
        return sum(int(r.shape[0]) for r in self._runs)

    def __repr__(self) -> str:
        return f"DedupTape({len(self)} windows)"

    def contains(self, keys: U64) -> npt.NDArray[np.bool_]:
        """Mask of ``keys`` already on the tape (does not record anything)."""
        found = np.zeros(keys.shape[0], dtype=bool)
        for run in self._runs:
            idx = np.searchsorted(run, keys)
            idx[idx == run.shape[0]] = 0
            found |= run[idx] == keys
        return found

    def admit(self, keys: U64) -> npt.NDArray[np.bool_]:
        """Mask of ``keys`` never seen before (first occurrences only); records them as seen."""
        fresh = first_occurrences(keys)
        if self._runs and keys.size:
            fresh &= ~self.contains(keys)
        new = np.sort(keys[fresh])
        if new.size:
            self._runs.append(new)
            # merge while the newest run is at least half the size of the one before it
            while len(self._runs) > 1 and 2 * self._runs[-1].size >= self._runs[-2].size:
                top = self._runs.pop()
                merged = np.concatenate([self._runs.pop(), top])
                merged.sort()
                self._runs.append(merged)
        return fresh


@dataclass(frozen=True)
class TokenScores:
    """Per-token scores of one text under one scheme and key.

    Attributes:
        method: the scheme's method name (e.g. ``"kgw-binomial"``).
        key_id: the watermark key id.
        positions: indices into the token sequence of the scored tokens.
        scores: each scored token's score (1/0 green for KGW, ``-log(1-r)`` for Aaronson, the
            number of g-values equal to 1 for SynthID).
        keys: each scored token's key, the 64-bit PRF value of its (window, token) input: two
            positions share a key exactly when the PRF saw the same input (for a self-hash
            scheme, the same (anchor, token)), which is what deduplication must remove.
        n_tokens: tokens in the sequence (prompt included).
        n_candidates: tokens that had a full context after the prompt and passed the mask.
    """

    method: str
    key_id: str
    positions: I64 = field(repr=False)
    scores: F64 = field(repr=False)
    keys: U64 = field(repr=False)
    n_tokens: int
    n_candidates: int

    @property
    def n_scored(self) -> int:
        """Tokens scored (after deduplication)."""
        return int(self.positions.shape[0])

    @property
    def n_duplicates(self) -> int:
        """Candidates dropped as repeats of an already-scored window."""
        return self.n_candidates - self.n_scored

    def concat(self, other: TokenScores) -> TokenScores:
        """These scores followed by another text's (same method and key)."""
        if (other.method, other.key_id) != (self.method, self.key_id):
            raise InputError("cannot pool scores of different methods or keys")
        return TokenScores(
            method=self.method,
            key_id=self.key_id,
            positions=np.concatenate([self.positions, other.positions]),
            scores=np.concatenate([self.scores, other.scores]),
            keys=np.concatenate([self.keys, other.keys]),
            n_tokens=self.n_tokens + other.n_tokens,
            n_candidates=self.n_candidates + other.n_candidates,
        )


@dataclass(frozen=True)
class DetectionResult:
    """The verdict of one exact test.

    Attributes:
        method: the test (e.g. ``"kgw-binomial"``, ``"aaronson-gamma"``).
        key_id: the watermark key tested.
        statistic: the test statistic (green count, score sum, ...).
        p_value: the exact probability of a statistic at least this large in text that does not
            carry the watermark.
        n_scored: tokens that entered the test.
        n_tokens: tokens in the input.
        n_duplicates: tokens left out as repeated windows.
        expected: the statistic's mean under the null hypothesis.
        details: scheme-specific values (``gamma``, ``depth``, ...).
    """

    method: str
    key_id: str
    statistic: float
    p_value: float
    n_scored: int
    n_tokens: int
    n_duplicates: int
    expected: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "key_id": self.key_id,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_scored": self.n_scored,
            "n_tokens": self.n_tokens,
            "n_duplicates": self.n_duplicates,
            "expected": self.expected,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class MultiKeyResult:
    """Tests under several keys combined with a multiple-testing correction.

    Attributes:
        results: one result per key, in the order given.
        adjusted: the corrected p-value of each key (Holm or Bonferroni).
        correction: ``"holm"`` or ``"bonferroni"``.
        p_value: the family-wise p-value that *some* key's watermark is present.
        best_key_id: the key with the smallest corrected p-value.
    """

    results: tuple[DetectionResult, ...]
    adjusted: tuple[float, ...]
    correction: str
    p_value: float
    best_key_id: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "p_value": self.p_value,
            "best_key_id": self.best_key_id,
            "correction": self.correction,
            "keys": [
                {**r.to_dict(), "adjusted_p_value": a}
                for r, a in zip(self.results, self.adjusted, strict=True)
            ],
        }


@runtime_checkable
class WatermarkScheme(Protocol):
    """One scheme under one key: generation (logits processing) and detection."""

    @property
    def key_id(self) -> str:
        """The watermark key id."""

    @property
    def context_width(self) -> int:
        """Tokens of context each position's pseudo-random values depend on."""

    @property
    def method(self) -> str:
        """The test's method name."""

    def process_logits(self, window: Sequence[int], logits: F64) -> F64:
        """Return watermarked logits for the next token after ``window`` (the last tokens)."""

    def score_tokens(
        self,
        tokens: Sequence[int] | npt.NDArray[np.integer],
        *,
        prompt_len: int = 0,
        dedup: bool = True,
        tape: DedupTape | None = None,
        mask: npt.NDArray[np.bool_] | None = None,
    ) -> TokenScores:
        """Per-token scores of ``tokens`` (the first ``prompt_len`` are context only)."""

    def test(self, scores: TokenScores) -> DetectionResult:
        """The exact test of pooled scores."""

    def detect(
        self,
        tokens: Sequence[int] | npt.NDArray[np.integer],
        *,
        prompt_len: int = 0,
        dedup: bool = True,
    ) -> DetectionResult:
        """Score and test in one call."""


def detect_multi_key(
    schemes: Sequence[WatermarkScheme],
    tokens: Sequence[int] | npt.NDArray[np.integer],
    *,
    prompt_len: int = 0,
    correction: str = "holm",
) -> MultiKeyResult:
    """Test ``tokens`` under each scheme (typically one per key) and correct for multiplicity."""
    if not schemes:
        raise InputError("no watermark keys to test")
    if correction not in ("holm", "bonferroni"):
        raise InputError(f"unknown correction {correction!r}: use 'holm' or 'bonferroni'")
    arr = as_token_array(tokens)
    results = tuple(s.detect(arr, prompt_len=prompt_len) for s in schemes)
    raw = [r.p_value for r in results]
    adjusted = holm(raw) if correction == "holm" else bonferroni(raw)
    best = min(range(len(results)), key=lambda i: adjusted[i])
    return MultiKeyResult(
        results=results,
        adjusted=tuple(adjusted),
        correction=correction,
        p_value=adjusted[best],
        best_key_id=results[best].key_id,
    )
