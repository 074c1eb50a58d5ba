"""Exact tails and corrections against brute force and known values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.watermark._stats import (
    benjamini_hochberg,
    binomial_sf,
    bonferroni,
    gamma_sf,
    holm,
    max_agreement_sf,
    poisson_binomial_sf,
)


def test_binomial_sf_matches_sum() -> None:
    n, p = 30, 0.25
    for k in range(0, 32):
        want = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_sf(k, n, p) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_binomial_tail_far_beyond_z_approximation() -> None:
    # n=200, gamma=0.25, 100 greens: z ~ 8.2; the exact tail differs from the normal one a lot
    exact = binomial_sf(100, 200, 0.25)
    z = (100 - 50) / math.sqrt(200 * 0.25 * 0.75)
    normal = 0.5 * math.erfc(z / math.sqrt(2))
    assert exact > 10 * normal


def test_gamma_sf_integer_shape_is_poisson_sum() -> None:
    for n in (1, 3, 10):
        for x in (0.5, 4.0, 20.0):
            want = math.exp(-x) * sum(x**i / math.factorial(i) for i in range(n))
            assert gamma_sf(x, n) == pytest.approx(want, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([0.5, 1 / 3, 0.25]), min_size=1, max_size=10), st.integers(0, 11))
def test_poisson_binomial_brute_force(probs: list[float], k: int) -> None:
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=len(probs)):
        if sum(outcome) >= k:
            total += math.prod(p if o else 1 - p for p, o in zip(probs, outcome, strict=True))
    assert poisson_binomial_sf(k, probs) == pytest.approx(total, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4), st.integers(0, 20))
def test_max_agreement_brute_force(sizes: list[int], s: int) -> None:
    # enumerate every vote pattern and every payload
    n = sum(sizes)
    total = 0.0
    for votes in itertools.product((0, 1), repeat=n):
        idx = 0
        best = 0
        for size in sizes:
            ones = sum(votes[idx : idx + size])
            best += max(ones, size - ones)
            idx += size
        if best >= s:
            total += 0.5**n
    assert max_agreement_sf(s, sizes) == pytest.approx(total, abs=1e-12)


def test_holm_and_bonferroni() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert all(h <= b for h, b in zip(holm(p), bonferroni(p), strict=True))


def test_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    q, rejected = benjamini_hochberg(p, alpha=0.05)
    assert rejected.tolist() == [True, True] + [False] * 8
    assert q[0] == pytest.approx(0.01)
    assert np.all(q >= p)
    empty_q, empty_r = benjamini_hochberg(np.zeros(0), alpha=0.1)
    assert empty_q.size == 0 and empty_r.size == 0
