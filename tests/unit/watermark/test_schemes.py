"""Generation and detection of every generation-time scheme, on a synthetic language model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark import (
    AaronsonConfig,
    AaronsonWatermark,
    DedupTape,
    DetectionResult,
    KGWConfig,
    KGWWatermark,
    MPACConfig,
    MPACWatermark,
    SynthIDConfig,
    SynthIDWatermark,
    WatermarkScheme,
    detect_multi_key,
)
from distillguard.watermark._scheme import softmax

V = 500
KeyFactory = Callable[[int], WatermarkKey]


def schemes(key: WatermarkKey) -> list[WatermarkScheme]:
    return [
        KGWWatermark(KGWConfig(), key=key),
        KGWWatermark(KGWConfig.robust(), key=key),
        AaronsonWatermark(AaronsonConfig(context_width=2), key=key),
        SynthIDWatermark(SynthIDConfig(depth=8, context_width=2), key=key),
    ]


def generate(wm: WatermarkScheme, n: int, seed: int, prompt: list[int]) -> list[int]:
    """A synthetic LM: random logits with spread 3 per step, sampled after the watermark."""
    rng = np.random.default_rng(seed)
    toks = list(prompt)
    for _ in range(n):
        logits = rng.normal(size=V) * 3.0
        p = softmax(wm.process_logits(toks, logits))
        toks.append(int(rng.choice(V, p=p)))
    return toks


@pytest.mark.parametrize("index", range(4))
def test_watermarked_text_is_detected_and_other_key_is_not(
    index: int, make_key: KeyFactory
) -> None:
    wm = schemes(make_key(1))[index]
    other = schemes(make_key(2))[index]
    toks = generate(wm, 150, seed=index, prompt=[1, 2, 3, 4])
    res = wm.detect(toks, prompt_len=4)
    assert res.p_value < 1e-8
    assert res.n_scored <= 150
    assert res.key_id == "wm-1" and res.method == wm.method
    assert other.detect(toks, prompt_len=4).p_value > 1e-3


def _randomized(wm: WatermarkScheme, res: DetectionResult, u: float) -> float:
    """The randomized p-value P[X > k] + U P[X = k], exactly uniform under the null."""
    if isinstance(wm, KGWWatermark):
        trials, q = res.n_scored, wm.config.gamma
    elif isinstance(wm, SynthIDWatermark):
        trials, q = res.n_scored * wm.config.depth, 0.5
    else:
        return res.p_value  # continuous statistic: already uniform
    k = int(res.statistic)
    return float(stats.binom.sf(k, trials, q) + u * stats.binom.pmf(k, trials, q))


@pytest.mark.parametrize("index", range(4))
def test_null_p_values_are_uniform(index: int, make_key: KeyFactory) -> None:
    # Fixed seed: 300 random keys x random texts. The exact p-values are super-uniform
    # (P[p <= a] <= a); randomizing the discrete tests' ties makes them exactly uniform (KS).
    rng = np.random.default_rng(1234 + index)
    ps, randomized = [], []
    for k in range(300):
        wm = schemes(make_key(1000 + k))[index]
        res = wm.detect(rng.integers(0, V, 120))
        ps.append(res.p_value)
        randomized.append(_randomized(wm, res, float(rng.uniform())))
    assert stats.kstest(np.array(randomized), "uniform").pvalue > 1e-3
    arr = np.array(ps)
    for alpha in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(arr <= alpha) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / 300)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(10, 400), greens=st.integers(0, 400))
def test_kgw_p_value_monotone_in_evidence(n: int, greens: int) -> None:
    from distillguard.watermark._stats import binomial_sf

    g = min(greens, n)
    assert binomial_sf(g, n, 0.25) >= binomial_sf(min(g + 1, n + 1), n, 0.25)
    # same green fraction, more tokens: smaller p-value when the fraction is above gamma
    if g / n > 0.4:
        assert binomial_sf(2 * g, 2 * n, 0.25) <= binomial_sf(g, n, 0.25)


def test_p_value_decreases_with_length(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    toks = generate(wm, 300, seed=5, prompt=[9])
    ps = [wm.detect(toks[: 1 + n], prompt_len=1).p_value for n in (50, 150, 300)]
    assert ps[0] > ps[1] > ps[2]


def test_dedup_removes_repeated_windows(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    toks = [3, 4] * 100
    res = wm.detect(toks)
    assert res.n_scored == 2  # windows (3,4) and (4,3)
    assert res.n_duplicates == 197
    assert wm.detect(toks, dedup=False).n_scored == 199


def test_dedup_tape_across_texts(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    tape = DedupTape()
    a = wm.score_tokens([1, 2, 3, 4, 5], tape=tape)
    b = wm.score_tokens([1, 2, 3, 9, 5], tape=tape)
    assert a.n_scored == 4
    assert b.n_scored == 2  # (3,9) and (9,5) are new
    assert len(tape) == 6
    assert tape.contains(a.keys).all()
    pooled = a.concat(b)
    assert wm.test(pooled).n_scored == 6


def test_mask_restricts_scored_positions(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    toks = np.arange(20)
    mask = np.zeros(20, dtype=bool)
    mask[[3, 7, 11]] = True
    s = wm.score_tokens(toks, mask=mask)
    assert s.positions.tolist() == [3, 7, 11]
    with pytest.raises(InputError):
        wm.score_tokens(toks, mask=np.ones(5, dtype=bool))


def test_prompt_is_not_scored_but_is_context(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    toks = generate(wm, 60, seed=3, prompt=list(range(40)))
    s = wm.score_tokens(toks, prompt_len=40)
    assert s.positions.min() == 40
    assert s.n_candidates == 60


def test_bad_inputs(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    with pytest.raises(InputError):
        wm.detect([[1, 2], [3, 4]])  # type: ignore[list-item]
    with pytest.raises(InputError):
        wm.detect([1, -2, 3])
    with pytest.raises(InputError):
        wm.detect(np.array([0.5, 1.5]))
    with pytest.raises(InputError):
        wm.detect([1, 2, 3], prompt_len=-1)
    with pytest.raises(InputError):
        wm.process_logits([], np.zeros(V))
    for bad in (
        lambda: KGWConfig(gamma=0.0),
        lambda: KGWConfig(gamma=1.0),
        lambda: KGWConfig(delta=-1),
        lambda: KGWConfig(context_width=0),
        lambda: SynthIDConfig(depth=65),
        lambda: AaronsonConfig(context_width=0),
        lambda: MPACConfig(bits=0),
    ):
        with pytest.raises(InputError):
            bad()
    empty = wm.detect([1])
    assert empty.n_scored == 0 and empty.p_value == 1.0


def test_aaronson_is_distortion_free_in_distribution(key: WatermarkKey) -> None:
    # Over many contexts, the emitted token follows the model's distribution.
    wm = AaronsonWatermark(AaronsonConfig(context_width=1), key=key)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    counts = np.zeros(4)
    for ctx in range(4000):
        out = wm.process_logits([ctx + 10], np.log(probs))
        counts[int(np.argmax(out))] += 1
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-3


def test_multi_key_holm(make_key: KeyFactory) -> None:
    keys = [make_key(i) for i in (11, 12, 13)]
    wms: list[WatermarkScheme] = [KGWWatermark(KGWConfig(), key=k) for k in keys]
    toks = generate(wms[1], 120, seed=8, prompt=[1])
    res = detect_multi_key(wms, toks, prompt_len=1)
    assert res.best_key_id == "wm-12"
    assert res.p_value < 1e-6
    assert res.p_value == pytest.approx(min(1.0, 3 * res.results[1].p_value))
    assert res.to_dict()["keys"][1]["adjusted_p_value"] == res.p_value
    with pytest.raises(InputError):
        detect_multi_key([], toks)
    with pytest.raises(InputError):
        detect_multi_key(wms, toks, correction="none")


def test_mpac_round_trip_and_null(make_key: KeyFactory) -> None:
    wm = MPACWatermark(MPACConfig(bits=16, delta=2.5), key=make_key(3))
    for payload in (0xBEEF, 0x0001, 0xFFFF):
        toks = generate(wm.for_payload(payload), 500, seed=payload, prompt=[1])
        decoded = wm.decode(toks, prompt_len=1)
        assert decoded.payload == payload
        assert decoded.p_value < 1e-6
        scores = wm.score_tokens(toks, prompt_len=1)
        assert wm.test_payload(scores, payload).p_value < decoded.p_value * 2**16
        assert (
            wm.test_payload(scores, payload ^ 0xFF00).p_value
            > wm.test_payload(scores, payload).p_value
        )
    rng = np.random.default_rng(0)
    nulls = np.array([wm.decode(rng.integers(0, V, 200)).p_value for _ in range(150)])
    assert np.mean(nulls <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 150)
    with pytest.raises(InputError):
        wm.process_logits([1], np.zeros(V))
    with pytest.raises(InputError):
        wm.for_payload(1 << 16)
    # sparse candidates agree with the dense processor
    bound = wm.for_payload(0x1234)
    dense = bound.process_logits([5], np.zeros(V))
    cands = np.array([3, 77, 499])
    assert np.array_equal(bound.process_candidates([5], cands, np.zeros(3)), dense[cands])


def test_process_candidates_matches_dense(key: WatermarkKey) -> None:
    for wm in schemes(key):
        logits = np.random.default_rng(0).normal(size=V)
        cands = np.arange(V)
        window = [1, 2, 3, 4]
        dense = wm.process_logits(window, logits)
        sparse = wm.process_candidates(window, cands, logits)  # type: ignore[attr-defined]
        assert np.allclose(np.exp(dense - dense.max()), np.exp(sparse - sparse.max()))


@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(20, 300), index=st.sampled_from([0, 2]))
def test_null_uniformity_property(seed: int, length: int, index: int) -> None:
    """For any seed and length: over 200 random keys and texts, randomized p-values pass KS."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(seed)
    values = []
    for k in range(200):
        secret = rng.bytes(32)
        key = WatermarkKey(kid=f"h{k}", created_at=datetime(2026, 1, 1, tzinfo=UTC), secret=secret)
        wm = schemes(key)[index]
        res = wm.detect(rng.integers(0, V, length))
        values.append(_randomized(wm, res, float(rng.uniform())))
    assert stats.kstest(np.array(values), "uniform").pvalue > 1e-4


def test_cached_green_masks_equal_fresh_ones(key: WatermarkKey) -> None:
    for config in (KGWConfig(), KGWConfig.robust()):
        wm = KGWWatermark(config, key=key)
        windows = [[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]]
        first = wm.green_masks(windows, V)
        again = wm.green_masks(windows[::-1], V)  # from the cache
        for row, window in enumerate(windows):
            fresh = wm.green(
                wm._prf.vocab_values(window[-config.context_width :], V, self_hash=config.self_hash)
            )
            assert np.array_equal(first[row], fresh)
            assert np.array_equal(again[2 - row], fresh)
        assert wm.green_masks([[9, 9, 9, 9]], 2 * V).shape == (1, 2 * V)  # new vocab size
