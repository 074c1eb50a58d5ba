"""The scoring pipeline: dedup tape, k-gram filter, exact test, streaming curve."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distillguard.errors import InputError
from distillguard.radioactivity import (
    KgramFilter,
    RadioactivityScorer,
    ScoringTape,
    TokenText,
    window_hashes,
)
from distillguard.watermark import AaronsonConfig, AaronsonWatermark, KGWWatermark

from .conftest import kgw, make_key, marked_tokens, random_tokens


def naive_score(
    wm: KGWWatermark,
    texts: list[TokenText],
    flt_windows: set[tuple[int, ...]] | None = None,
) -> tuple[int, int]:
    """Per-token reference: Python set for the tape, tuples for windows."""
    h = wm.context_width
    seen: set[tuple[int, ...]] = set()
    greens = n = 0
    for t in texts:
        toks = t.tokens.tolist()
        for p in range(max(h, t.prompt_len), len(toks)):
            window = tuple(toks[p - h : p])
            if flt_windows is not None and window not in flt_windows:
                continue
            k = (*window, toks[p])
            if k in seen:
                continue
            seen.add(k)
            s = wm.score_tokens(np.array([*window, toks[p]]), dedup=False)
            greens += int(s.scores.sum())
            n += 1
    return greens, n


@pytest.mark.parametrize("width", [1, 2, 3])
def test_matches_naive_per_token_scoring(width: int) -> None:
    wm = kgw(make_key(1), width)
    texts = [TokenText.of(random_tokens(60, s, vocab=12), prompt_len=s % 5) for s in range(20)]
    texts.append(texts[3])  # an exact repeat scores nothing new
    sc = RadioactivityScorer(wm)
    sc.add_texts(texts[:7])
    sc.add_texts(texts[7:])
    greens, n = naive_score(wm, texts)
    res = sc.result()
    assert (res.n_scored, res.statistic) == (n, greens)
    assert res.n_duplicates > 0


def test_filter_matches_naive_and_counts() -> None:
    wm = kgw(make_key(2), 2)
    ours = [TokenText.of(random_tokens(80, s, vocab=10)) for s in range(10)]
    flt = KgramFilter.from_texts(ours, width=2, top=30)
    assert len(flt) == 30
    windows: dict[tuple[int, ...], int] = {}
    for t in ours:
        toks = t.tokens.tolist()
        for p in range(2, len(toks)):
            windows[tuple(toks[p - 2 : p])] = windows.get(tuple(toks[p - 2 : p]), 0) + 1
    top_counts = sorted(windows.values(), reverse=True)
    # the 30 kept windows are among the most frequent: the 30th count bounds every dropped one
    kept = {w for w in windows if flt.contains(window_hashes(np.array([*w, 0]), width=2))[2]}
    assert len(kept) == 30
    assert min(windows[w] for w in kept) >= top_counts[30]
    theirs = [TokenText.of(random_tokens(50, 100 + s, vocab=10)) for s in range(10)]
    sc = RadioactivityScorer(wm, kgram_filter=flt)
    sc.add_texts(theirs)
    greens, n = naive_score(wm, theirs, kept)
    assert (sc.result().n_scored, sc.result().statistic) == (n, greens)
    assert sc.n_filtered_out > 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 40))
def test_filter_monotone(seed: int, small: int, extra: int) -> None:
    """A larger top-N filter keeps a superset of windows, so never fewer scored tokens."""
    ours = [TokenText.of(random_tokens(40, seed + s, vocab=15)) for s in range(5)]
    theirs = [TokenText.of(random_tokens(40, seed + 50 + s, vocab=15)) for s in range(5)]
    wm = kgw(make_key(3))
    scored = []
    for top in (small, small + extra, None):
        sc = RadioactivityScorer(wm, kgram_filter=KgramFilter.from_texts(ours, width=1, top=top))
        sc.add_texts(theirs)
        scored.append(sc.n_scored)
    plain = RadioactivityScorer(wm)
    plain.add_texts(theirs)
    assert scored[0] <= scored[1] <= scored[2] <= plain.n_scored


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=0, max_size=300), st.integers(1, 5))
def test_tape_admits_each_key_once(values: list[int], splits: int) -> None:
    # tape keys are 64-bit PRF outputs: map the small integers to random-looking words
    pool = np.random.default_rng(0).integers(0, 2**63, 51, dtype=np.int64).astype(np.uint64) * 2 + 1
    keys = pool[np.asarray(values, dtype=np.int64)]
    values = keys.tolist()
    tape = ScoringTape()
    admitted: list[int] = []
    for part in np.array_split(keys, splits):
        admitted.extend(part[tape.admit(part)].tolist())
    assert sorted(admitted) == sorted(set(values))
    assert len(tape) == len(set(values))
    assert tape.contains(keys).all()


def test_null_p_values_uniform() -> None:
    """Unwatermarked tokens, 200 keys: p-values are uniform (KS), with and without a filter."""
    texts = [TokenText.of(random_tokens(150, s)) for s in range(30)]
    flt = KgramFilter.from_texts(texts[:10], width=1, top=150)
    for f in (None, flt):
        ps = []
        for k in range(200):
            sc = RadioactivityScorer(kgw(make_key(1000 + k)), kgram_filter=f)
            sc.add_texts(texts)
            ps.append(sc.result().p_value)
        # discrete binomial p-values are conservative: compare against U(0,1) from above
        assert stats.kstest(ps, "uniform").pvalue > 1e-3 or np.mean(np.array(ps) <= 0.05) <= 0.05
        assert np.mean(np.array(ps) <= 0.05) <= 0.1
        assert np.mean(np.array(ps) <= 0.5) > 0.35


def test_aaronson_null_uniform_and_detects() -> None:
    texts = [TokenText.of(random_tokens(150, s)) for s in range(20)]
    ps = []
    for k in range(150):
        sc = RadioactivityScorer(
            AaronsonWatermark(AaronsonConfig(context_width=1), key=make_key(k))
        )
        sc.add_texts(texts)
        ps.append(sc.result().p_value)
    assert stats.kstest(ps, "uniform").pvalue > 1e-3


def test_detects_watermarked_text_and_curve_decreases() -> None:
    wm = kgw(make_key(5))
    texts = [TokenText.of(marked_tokens(wm, 120, s)) for s in range(12)]
    sc = RadioactivityScorer(wm)
    points = [sc.add_texts(texts[i : i + 3]) for i in range(0, 12, 3)]
    assert sc.result().p_value < 1e-20
    assert [p.n_texts for p in points] == [3, 6, 9, 12]
    curve = sc.curve
    assert curve[-1].n_scored == sc.n_scored
    assert all(a.n_scored < b.n_scored for a, b in itertools.pairwise(curve))
    assert curve[-1].p_value < curve[len(curve) // 2].p_value < curve[0].p_value
    # a different key sees nothing
    other = RadioactivityScorer(kgw(make_key(6)))
    other.add_texts(texts)
    assert other.result().p_value > 1e-3


def test_pairs_equal_texts_when_predictions_are_the_text() -> None:
    """Scoring (window, real next token) pairs is scoring the text itself."""
    wm = kgw(make_key(7), 2)
    toks = marked_tokens(kgw(make_key(7), 2), 200, 1)
    a = RadioactivityScorer(wm)
    a.add_texts([TokenText.of(toks)])
    b = RadioactivityScorer(wm)
    wins = np.stack([toks[j : len(toks) - 2 + j] for j in range(2)], axis=1)
    b.add_pairs(wins, toks[2:], n_texts=1)
    assert (a.result().statistic, a.result().n_scored) == (
        b.result().statistic,
        b.result().n_scored,
    )


def test_bad_input() -> None:
    wm = kgw(make_key(8), 2)
    sc = RadioactivityScorer(wm)
    with pytest.raises(InputError):
        sc.add_pairs(np.zeros((3, 1), np.int64), np.zeros(3, np.int64), n_texts=1)
    with pytest.raises(InputError):
        sc.add_pairs(np.zeros((3, 2), np.int64), np.zeros(4, np.int64), n_texts=1)
    with pytest.raises(InputError):
        sc.add_pairs(-np.ones((3, 2), np.int64), np.zeros(3, np.int64), n_texts=1)
    with pytest.raises(InputError):
        TokenText.of([[1, 2]])  # type: ignore[list-item]
    with pytest.raises(InputError):
        TokenText.of([1, -2])
    with pytest.raises(InputError):
        TokenText.of([1, 2], prompt_len=-1)
    with pytest.raises(InputError):
        RadioactivityScorer(wm, kgram_filter=KgramFilter.from_texts([], width=1))
    with pytest.raises(InputError):
        KgramFilter.from_texts([], width=2, top=-1)
    # empty and too-short texts score nothing and give p = 1
    sc.add_texts([TokenText.of([]), TokenText.of([5]), TokenText.of([1, 2])])
    assert sc.result().n_scored == 0 and sc.result().p_value == 1.0
