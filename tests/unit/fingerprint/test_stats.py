"""Properties of the attribution statistics: Holm, the null model, double centring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.fingerprint.stats import NullModel, bonferroni, double_center, holm

p_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30)


@given(p_lists)
def test_holm_bounds_and_order(ps: list[float]) -> None:
    adj = holm(ps)
    assert len(adj) == len(ps)
    for p, a in zip(ps, adj, strict=True):
        assert p <= a + 1e-15 <= 1.0 + 1e-15
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    sorted_adj = [adj[i] for i in order]
    assert sorted_adj == sorted(sorted_adj)


@given(p_lists)
def test_holm_at_least_as_powerful_as_bonferroni(ps: list[float]) -> None:
    for p, a in zip(ps, holm(ps), strict=True):
        assert a <= bonferroni(p, len(ps)) + 1e-15


def test_holm_known_values() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_rejects_bad_p() -> None:
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


@given(
    st.floats(min_value=-5, max_value=5),
    st.floats(min_value=0.01, max_value=1.0),
    st.floats(min_value=-3, max_value=3),
    st.floats(min_value=0.01, max_value=3),
)
def test_null_p_value_monotone(loc: float, scale: float, a: float, d: float) -> None:
    null = NullModel(location=loc, scale=scale, units=20)
    assert 0.0 <= null.p_value(a + d) <= null.p_value(a) <= 1.0


@settings(deadline=None, max_examples=10)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_null_p_values_are_valid_under_the_null(seed: int) -> None:
    """Fit on k draws, test a fresh draw: P(p < alpha) must not exceed alpha (beyond noise)."""
    rng = np.random.default_rng(seed)
    k, trials, alpha = 20, 2000, 0.05
    rejections = 0
    for _ in range(trials):
        sample = rng.normal(size=k)
        null = NullModel.fit(sample, units=k)
        rejections += null.p_value(float(rng.normal())) < alpha
    # binomial(2000, 0.05): sd ~ 9.7, so 5 sd above the nominal count
    assert rejections <= trials * alpha + 50


def test_null_needs_data() -> None:
    with pytest.raises(ValueError):
        NullModel.fit([1.0, 2.0], units=10)
    with pytest.raises(ValueError):
        NullModel.fit([1.0, 2.0, 3.0], units=2)


@given(
    st.lists(st.floats(min_value=-1, max_value=1), min_size=6, max_size=6),
    st.lists(st.floats(min_value=-1, max_value=1), min_size=5, max_size=5),
)
def test_double_center_removes_additive_effects(rows: list[float], cols: list[float]) -> None:
    matrix = np.add.outer(np.array(rows), np.array(cols))
    mask = np.ones((6, 5), dtype=bool)
    resid = double_center(matrix, mask, n_references=5)
    assert np.allclose(resid[:5][mask[:5]], 0.0, atol=1e-9)
    assert np.allclose(resid[5], 0.0, atol=1e-9)


def test_double_center_keeps_an_interaction() -> None:
    rng = np.random.default_rng(0)
    matrix = np.add.outer(rng.normal(size=7), rng.normal(size=6))
    matrix[6, 2] += 1.0  # the suspect resembles reference 2 beyond the additive effects
    mask = ~np.eye(7, 6, dtype=bool)
    resid = double_center(matrix, mask, n_references=6)
    assert int(np.argmax(resid[6])) == 2
    assert resid[6, 2] > 0.5
