"""The keyed PRF: SipHash known answers, vectorised == scalar, uniformity, key separation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distillguard.watermark._prf import KeyedPRF, fmix64, fmix64_py, siphash_np, siphash_py

K0 = int.from_bytes(bytes(range(8)), "little")
K1 = int.from_bytes(bytes(range(8, 16)), "little")


def test_siphash24_reference_vectors() -> None:
    # Test vectors of the SipHash paper (key 00..0f): empty message and 00..0e.
    assert siphash_py(K0, K1, b"", c_rounds=2, d_rounds=4) == 0x726FDB47DD0E0E31
    assert siphash_py(K0, K1, bytes(range(15)), c_rounds=2, d_rounds=4) == 0xA129CA6149BE45E5


@settings(max_examples=50, deadline=None)
@given(
    words=st.lists(
        st.lists(st.integers(0, 2**64 - 1), min_size=3, max_size=3), min_size=1, max_size=4
    ),
    c=st.integers(1, 2),
    d=st.integers(1, 4),
)
def test_vectorised_siphash_equals_scalar(words: list[list[int]], c: int, d: int) -> None:
    arrays = [np.array(w, dtype=np.uint64) for w in words]
    got = siphash_np(K0, K1, arrays, c_rounds=c, d_rounds=d)
    for i in range(3):
        data = b"".join(w[i].to_bytes(8, "little") for w in words)
        assert int(got[i]) == siphash_py(K0, K1, data, c_rounds=c, d_rounds=d)


@given(st.integers(0, 2**64 - 1))
def test_fmix64_scalar_equals_vector(x: int) -> None:
    assert int(fmix64(np.array([x], dtype=np.uint64))[0]) == fmix64_py(x)


def test_vocab_values_equal_sequence_values() -> None:
    prf = KeyedPRF(b"k" * 32, "test")
    vocab = 3000
    for window in ([5], [1, 2, 3], [2999, 0]):
        table = prf.vocab_values(window, vocab, self_hash=False)
        cands = np.arange(vocab)
        wins = [np.full(vocab, t) for t in window]
        assert np.array_equal(table, prf.values(wins, cands))
        table_sh = prf.vocab_values(window, vocab, self_hash=True)
        assert np.array_equal(table_sh, prf.self_hash_values(wins, cands))


def test_large_token_ids_use_direct_hash_consistently() -> None:
    prf = KeyedPRF(b"k" * 32, "test")
    big = np.array([2**31 - 5, 2**30 + 7], dtype=np.int64)
    small = np.array([3, 4], dtype=np.int64)
    v = prf.values([big], small)
    assert int(prf.window_scalar([int(big[0])])) == int(prf.context_hash([big[:1]])[0])
    assert v.shape == (2,)


def test_values_are_uniform_and_keys_independent() -> None:
    rng = np.random.default_rng(3)
    toks = rng.integers(0, 50_000, 20_001)
    a = KeyedPRF(b"a" * 32, "kgw").values([toks[:-1]], toks[1:])
    b = KeyedPRF(b"b" * 32, "kgw").values([toks[:-1]], toks[1:])
    c = KeyedPRF(b"a" * 32, "other").values([toks[:-1]], toks[1:])
    ua = (a >> np.uint64(11)).astype(np.float64) / 2.0**53
    assert stats.kstest(ua, "uniform").pvalue > 1e-3
    # different keys or domains: about half the top bits agree, not all
    for other in (b, c):
        agree = np.mean((a >> np.uint64(63)) == (other >> np.uint64(63)))
        assert 0.45 < agree < 0.55


def test_repr_hides_secret() -> None:
    assert "k" * 8 not in repr(KeyedPRF(b"k" * 32, "x"))
