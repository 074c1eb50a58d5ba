"""The scoring pipeline of the radioactivity test: deduplication tape, k-gram filter, exact test,
and a streaming p-value curve.

Everything here is vectorised: a batch of texts is concatenated into one token array, positions
whose context window would cross a text boundary (or lie in a prompt) are masked, the k-gram filter
is one ``searchsorted`` over hashed windows, and the watermark scheme scores the whole batch in one
call with a :class:`~distillguard.watermark.DedupTape` shared by the whole run, so a
(context window, token) pair is counted once however many texts repeat it.

Two kinds of input share the pipeline:

* **texts** (closed mode, or text files): the token scored at position ``p`` is the text's own
  token, its window the ``h`` tokens before it;
* **pairs** (open mode, "reading mode"): the token scored is the suspect's top-1 prediction, its
  window the ``h`` real tokens before the predicted position. Pairs are laid out as blocks
  ``[w_1 .. w_h, prediction]`` and only block ends are scored, which keeps to the scheme's public
  scoring API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.results import CurvePoint
from distillguard.watermark import (
    DetectionResult,
    TokenScores,
    WatermarkScheme,
    as_token_array,
    first_occurrences,
)

__all__ = [
    "CurvePoint",
    "KgramFilter",
    "RadioactivityScorer",
    "ScoringTape",
    "TokenText",
    "answer_plan",
    "window_hashes",
]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: U64) -> U64:
    """SplitMix64 finaliser (bijective on 64-bit words)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def window_hashes(tokens: I64, *, width: int) -> U64:
    """A 64-bit hash of the ``width`` tokens before each position (unkeyed; for the k-gram filter).

    ``out[p]`` hashes ``tokens[p-width : p]``; positions ``p < width`` get 0 (they have no full
    window and are never scored).
    """
    n = tokens.shape[0]
    out = np.zeros(n, dtype=np.uint64)
    if n <= width:
        return out
    with np.errstate(over="ignore"):
        h = np.full(n - width, _GOLD, dtype=np.uint64)
        for j in range(width):
            h = _mix(h ^ (tokens[j : n - width + j].astype(np.uint64) + _GOLD))
    out[width:] = h
    return out


class ScoringTape:
    """The (context window, token) keys already scored in a run, across all batches.

    Same contract as :class:`~distillguard.watermark.DedupTape` (``admit`` returns the mask
    of first occurrences and records them), tuned for long runs: keys are kept in sorted runs
    merged by size, and each batch is looked up with *sorted* needles, so every run is walked
    once, front to back, instead of one cache-missing binary search per key.
    """

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[U64] = []

    def __len__(self) -> int:
        return sum(int(r.shape[0]) for r in self._runs)

    def __repr__(self) -> str:
        return f"ScoringTape({len(self)} windows)"

    def contains(self, keys: U64) -> BoolArr:
        """Mask of ``keys`` already on the tape (records nothing)."""
        found = np.zeros(keys.shape[0], dtype=bool)
        if not self._runs or keys.shape[0] == 0:
            return found
        order = np.argsort(keys, kind="stable")
        needles = keys[order]
        hit = np.zeros(keys.shape[0], dtype=bool)
        for run in self._runs:
            idx = np.searchsorted(run, needles)
            idx[idx == run.shape[0]] = 0
            hit |= run[idx] == needles
        found[order] = hit
        return found

    def admit(self, keys: U64) -> BoolArr:
        """Mask of the first occurrence of each key not yet on the tape; records them."""
        fresh = first_occurrences(keys)
        if self._runs and keys.shape[0]:
            fresh &= ~self.contains(keys)
        new = np.sort(keys[fresh])
        if new.shape[0]:
            self._runs.append(new)
            while len(self._runs) > 1 and 2 * self._runs[-1].shape[0] >= self._runs[-2].shape[0]:
                top = self._runs.pop()
                merged = np.concatenate([self._runs.pop(), top])
                merged.sort(kind="stable")
                self._runs.append(merged)
        return fresh


@dataclass(frozen=True)
class TokenText:
    """One text as token ids: the first ``prompt_len`` tokens are context only (never scored)."""

    tokens: I64 = field(repr=False)
    prompt_len: int = 0

    @classmethod
    def of(cls, tokens: Sequence[int] | npt.NDArray[np.integer], prompt_len: int = 0) -> TokenText:
        """Validated constructor from any integer sequence."""
        arr = as_token_array(tokens)
        if prompt_len < 0:
            raise InputError("prompt_len must be non-negative")
        return cls(tokens=arr, prompt_len=min(prompt_len, int(arr.shape[0])))


class KgramFilter:
    """The context windows (k-grams, ``k`` = the scheme's context width) most frequent in our
    watermarked outputs; only tokens whose window is in the set are scored.

    A student learns the watermark where it saw it often, so scoring only those windows raises the
    signal per scored token (Sander et al. 2024, section 4). The filter looks at the *window*, not
    at the scored token: whether a window is frequent in our outputs tells nothing about the green
    status of a new (window, token) pair that the suspect produces, so the test stays exact.

    Args:
        hashes: sorted unique window hashes (see :func:`window_hashes`).
        width: the window width ``k``.
        counts: each window's count in the watermarked outputs (same order as ``hashes``).
    """

    __slots__ = ("_counts", "_hashes", "width")

    def __init__(self, *, hashes: U64, width: int, counts: I64 | None = None) -> None:
        if width < 1:
            raise InputError("the filter's window width must be at least 1")
        order = np.argsort(hashes, kind="stable")
        self._hashes = np.asarray(hashes, dtype=np.uint64)[order]
        self._counts = (
            np.asarray(counts, dtype=np.int64)[order]
            if counts is not None
            else np.ones(self._hashes.shape[0], dtype=np.int64)
        )
        self.width = width

    def __len__(self) -> int:
        return int(self._hashes.shape[0])

    def __repr__(self) -> str:
        return f"KgramFilter({len(self)} windows, k={self.width})"

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[TokenText],
        *,
        width: int,
        top: int | None = None,
        min_count: int = 1,
    ) -> KgramFilter:
        """The windows of ``texts`` (our watermarked outputs) seen at least ``min_count`` times,
        the ``top`` most frequent of them when ``top`` is given (ties broken by hash value, so
        the result does not depend on the input order)."""
        if top is not None and top < 0:
            raise InputError("top must be non-negative")
        parts = []
        for t in texts:
            h = window_hashes(t.tokens, width=width)
            start = max(width, t.prompt_len)
            parts.append(h[start:])
        allh = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        uniq, counts = np.unique(allh, return_counts=True)
        keep = counts >= min_count
        uniq, counts = uniq[keep], counts[keep]
        if top is not None and top < uniq.shape[0]:
            # most frequent first; np.unique sorted by hash, a stable sort keeps that for ties
            order = np.argsort(-counts, kind="stable")[:top]
            uniq, counts = uniq[order], counts[order]
        return cls(hashes=uniq, width=width, counts=counts.astype(np.int64))

    def contains(self, hashes: U64) -> BoolArr:
        """Mask of ``hashes`` (window hashes) in the filter."""
        if self._hashes.shape[0] == 0:
            return np.zeros(hashes.shape[0], dtype=bool)
        idx = np.searchsorted(self._hashes, hashes)
        idx[idx == self._hashes.shape[0]] = 0
        return np.asarray(self._hashes[idx] == hashes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (sizes only; the windows themselves stay private)."""
        return {
            "windows": len(self),
            "k": self.width,
            "min_count": int(self._counts.min()) if len(self) else 0,
        }


def _concat_texts(texts: Sequence[TokenText], width: int) -> tuple[I64, BoolArr, I64]:
    """All tokens, the mask of positions with a full window inside their text after the prompt,
    and each text's end offset."""
    lengths = np.fromiter((t.tokens.shape[0] for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    tokens = np.concatenate([t.tokens for t in texts]) if texts else np.zeros(0, dtype=np.int64)
    starts = ends - lengths
    first = np.fromiter((max(width, t.prompt_len) for t in texts), dtype=np.int64, count=len(texts))
    # +1 at each text's first scorable offset, -1 at its end: a running sum marks valid positions
    marks = np.zeros(tokens.shape[0] + 1, dtype=np.int64)
    begin = np.minimum(starts + first, ends)
    np.add.at(marks, begin, 1)
    np.add.at(marks, ends, -1)
    valid = np.cumsum(marks[:-1]) > 0
    return tokens, valid, ends


class RadioactivityScorer:
    """Scores a stream of batches under one scheme and key, with one tape and an optional filter.

    Each :meth:`add_texts` / :meth:`add_pairs` call scores one batch (vectorised) and returns the
    pooled :class:`CurvePoint` after it; :meth:`result` is the final pooled test and :attr:`curve`
    the p-value against scored tokens.

    Example::

        scorer = RadioactivityScorer(scheme, kgram_filter=flt)
        for batch in batches:
            point = scorer.add_texts(batch)        # p-value so far
        verdict = scorer.result()
    """

    def __init__(
        self,
        scheme: WatermarkScheme,
        *,
        kgram_filter: KgramFilter | None = None,
        dedup: bool = True,
        curve_points: int = 64,
    ) -> None:
        if kgram_filter is not None and kgram_filter.width != scheme.context_width:
            raise InputError(
                f"the k-gram filter has k={kgram_filter.width}, the scheme's context width is "
                f"{scheme.context_width}"
            )
        self.scheme = scheme
        self.kgram_filter = kgram_filter
        self._tape: ScoringTape | None = ScoringTape() if dedup else None
        self._chunks: list[TokenScores] = []
        self._n_texts = 0
        self._n_tokens = 0
        self._n_candidates = 0
        self._n_filtered_out = 0
        self._curve: list[CurvePoint] = []
        self._curve_points = curve_points
        self._totals = hasattr(scheme, "test_totals") and not _is_payload_scheme(scheme)
        self._sum = 0.0
        self._n_scored = 0

    # --- input -----------------------------------------------------------------------------

    def add_texts(self, texts: Sequence[TokenText]) -> CurvePoint:
        """Score a batch of texts (their own tokens); returns the pooled test so far."""
        width = self.scheme.context_width
        tokens, valid, ends = _concat_texts(texts, width)
        return self._score(tokens, valid, ends, n_texts=len(texts), n_tokens=tokens.shape[0])

    def add_pairs(
        self, windows: npt.NDArray[np.integer], tokens: npt.NDArray[np.integer], *, n_texts: int
    ) -> CurvePoint:
        """Score (window, token) pairs: ``windows`` has shape ``(n, h)`` (oldest token first),
        ``tokens`` shape ``(n,)`` (e.g. a suspect's predictions after each window)."""
        width = self.scheme.context_width
        win = np.asarray(windows, dtype=np.int64)
        tok = np.asarray(tokens, dtype=np.int64)
        if win.ndim != 2 or win.shape[1] != width or tok.shape != (win.shape[0],):
            raise InputError(
                f"pairs need windows of shape (n, {width}) and tokens of shape (n,), got "
                f"{win.shape} and {tok.shape}"
            )
        if tok.size and (int(tok.min()) < 0 or int(win.min()) < 0):
            raise InputError("token ids must be non-negative")
        blocks = np.concatenate([win, tok[:, None]], axis=1).reshape(-1)
        valid = np.zeros(blocks.shape[0], dtype=bool)
        valid[width :: width + 1] = True
        return self._score(blocks, valid, None, n_texts=n_texts, n_tokens=int(tok.shape[0]))

    def _score(
        self, tokens: I64, valid: BoolArr, ends: I64 | None, *, n_texts: int, n_tokens: int
    ) -> CurvePoint:
        mask = valid
        if self.kgram_filter is not None:
            in_filter = self.kgram_filter.contains(
                window_hashes(tokens, width=self.kgram_filter.width)
            )
            mask = valid & in_filter
            self._n_filtered_out += int(valid.sum() - mask.sum())
        scores = self.scheme.score_tokens(tokens, mask=mask, dedup=False)
        if self._tape is not None:
            scores = _select(scores, self._tape.admit(scores.keys))
        self._n_texts += n_texts
        self._n_tokens += n_tokens
        self._n_candidates += scores.n_candidates
        prev_n, prev_sum = self._n_scored, self._sum
        self._chunks.append(scores)
        self._n_scored += scores.n_scored
        self._sum += float(scores.scores.sum())
        if self._totals and scores.n_scored:
            self._extend_curve(scores, ends, prev_n=prev_n, prev_sum=prev_sum)
        point = self._point()
        if not self._curve or self._curve[-1].n_scored != point.n_scored:
            self._curve.append(point)
        return point

    def _extend_curve(
        self, scores: TokenScores, ends: I64 | None, *, prev_n: int, prev_sum: float
    ) -> None:
        """Intermediate points inside a large batch (log-spaced in scored tokens)."""
        cums = np.cumsum(scores.scores)
        n = scores.n_scored
        start = max(1, prev_n)
        grid = np.unique(
            np.geomspace(start, prev_n + n, num=min(self._curve_points, n) + 1).astype(np.int64)
        )
        grid = grid[(grid > prev_n) & (grid < prev_n + n)]
        if ends is not None:  # texts done once the scored token's text is
            done = self._n_texts - len(ends) + 1 + np.searchsorted(ends, scores.positions, "right")
        else:
            done = np.full(n, self._n_texts, dtype=np.int64)
        for g in grid.tolist():
            i = g - prev_n - 1
            res = self._test_totals(prev_sum + float(cums[i]), g)
            self._curve.append(
                CurvePoint(
                    n_texts=int(done[i]),
                    n_scored=g,
                    statistic=res.statistic,
                    p_value=res.p_value,
                )
            )

    # --- output ----------------------------------------------------------------------------

    def _test_totals(self, total: float, n_scored: int) -> DetectionResult:
        fn: Any = getattr(self.scheme, "test_totals")  # noqa: B009 - checked in __init__
        res: DetectionResult = fn(
            total=total,
            n_scored=n_scored,
            n_tokens=self._n_tokens,
            n_duplicates=self._n_candidates - n_scored,
        )
        return res

    def _point(self) -> CurvePoint:
        res = self.result()
        return CurvePoint(
            n_texts=self._n_texts,
            n_scored=res.n_scored,
            statistic=res.statistic,
            p_value=res.p_value,
        )

    @property
    def n_scored(self) -> int:
        """Tokens scored so far."""
        return self._n_scored

    @property
    def n_filtered_out(self) -> int:
        """Candidate tokens left out by the k-gram filter."""
        return self._n_filtered_out

    @property
    def curve(self) -> tuple[CurvePoint, ...]:
        """The pooled p-value after each batch (and log-spaced points inside batches)."""
        return tuple(sorted(self._curve, key=lambda p: p.n_scored))

    def pooled_scores(self) -> TokenScores:
        """All scored tokens so far as one :class:`TokenScores` (one concatenation)."""
        if not self._chunks:
            return self.scheme.score_tokens(np.zeros(0, dtype=np.int64))
        if len(self._chunks) > 1:
            self._chunks = [_concat_scores(self._chunks)]
        return self._chunks[0]

    def result(self) -> DetectionResult:
        """The exact pooled test over everything scored so far."""
        if self._totals:
            return self._test_totals(self._sum, self._n_scored)
        return self.scheme.test(self.pooled_scores())


def _is_payload_scheme(scheme: WatermarkScheme) -> bool:
    from distillguard.watermark import MPACWatermark

    return isinstance(scheme, MPACWatermark)


def _select(scores: TokenScores, keep: BoolArr) -> TokenScores:
    """The scored tokens where ``keep`` is true (the rest count as duplicates)."""
    import dataclasses

    values: dict[str, Any] = {}
    for f in dataclasses.fields(scores):
        v = getattr(scores, f.name)
        values[f.name] = v[keep] if isinstance(v, np.ndarray) else v
    return type(scores)(**values)


def _concat_scores(chunks: list[TokenScores]) -> TokenScores:
    """Concatenate score chunks in one pass (keeps the subclass, e.g. payload bit indices)."""
    import dataclasses

    first = chunks[0]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(first):
        parts = [getattr(c, f.name) for c in chunks]
        if isinstance(parts[0], np.ndarray):
            values[f.name] = np.concatenate(parts)
        elif f.name in ("n_tokens", "n_candidates"):
            values[f.name] = sum(parts)
        else:
            values[f.name] = parts[0]
    return type(first)(**values)


def answer_plan(
    prompts: Sequence[str], *, samples: int, temperature: float, greedy: bool
) -> list[tuple[list[str], float]]:
    """How a suspect is asked (closed mode) or made to answer (open mode's own answers): each
    prompt once at temperature 0 when ``greedy``, then each prompt ``samples`` times at
    ``temperature``, as ``(prompts, temperature)`` rounds in that order (empty rounds left out).

    The greedy answers carry most of a memorising student's evidence; low-temperature samples
    add paths near them (see ``docs/radioactivity.md``)."""
    plan = [(list(prompts), 0.0)] if greedy and prompts else []
    sampled = [p for p in prompts for _ in range(samples)]
    if sampled:
        plan.append((sampled, temperature))
    return plan
