"""Keyed pseudo-random functions over token windows, vectorised with NumPy.

The building block is SipHash-1-3 (Aumasson and Bernstein; the variant CPython uses for ``hash``)
over 64-bit words, written twice: a scalar pure-Python version (used once per generation step for
the context, and as the reference in tests) and a NumPy version that hashes whole arrays of words
at once (detection). Sub-keys are derived from the 32-byte watermark secret with keyed BLAKE2b and
a domain string, so that each scheme and each role (context, candidate, anchor, bit index) has its
own independent key.

The value of a (context window, candidate token) pair is::

    F = SipHash(k_ctx, window tokens)        # one 64-bit word per token, oldest first
    G = SipHash(k_tok, candidate)            # cached as a table over the vocabulary
    u = fmix64(F xor G)                      # MurmurHash3's 64-bit finaliser, a bijection

so that a generation step hashes its context once (a scalar) and combines it with a cached
per-token table with a handful of vector operations, and detection is array arithmetic over the
whole sequence. ``u`` is uniform on 64-bit integers for every pair; pairs that differ give values
that are independent for every statistical purpose (F and G are keyed PRF outputs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "MASK64",
    "KeyedPRF",
    "fmix64",
    "siphash_np",
    "siphash_py",
    "to_unit",
]

MASK64 = (1 << 64) - 1
U64 = npt.NDArray[np.uint64]

_C0, _C1, _C2, _C3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
#: Largest vocabulary for which per-token hashes are kept as a lookup table.
TABLE_LIMIT = 1 << 20


def _rotl_py(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def _sipround_py(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & MASK64
    v1 = _rotl_py(v1, 13) ^ v0
    v0 = _rotl_py(v0, 32)
    v2 = (v2 + v3) & MASK64
    v3 = _rotl_py(v3, 16) ^ v2
    v0 = (v0 + v3) & MASK64
    v3 = _rotl_py(v3, 21) ^ v0
    v2 = (v2 + v1) & MASK64
    v1 = _rotl_py(v1, 17) ^ v2
    v2 = _rotl_py(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash_py(k0: int, k1: int, data: bytes, *, c_rounds: int = 1, d_rounds: int = 3) -> int:
    """SipHash-c-d of ``data`` under the 128-bit key ``(k0, k1)`` (scalar reference version)."""
    v = [k0 ^ _C0, k1 ^ _C1, k0 ^ _C2, k1 ^ _C3]
    n = len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v[3] ^= m
        for _ in range(c_rounds):
            _sipround_py(v)
        v[0] ^= m
    last = int.from_bytes(data[full:], "little") | ((n & 0xFF) << 56)
    v[3] ^= last
    for _ in range(c_rounds):
        _sipround_py(v)
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(d_rounds):
        _sipround_py(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _words_py(k0: int, k1: int, words: list[int]) -> int:
    """SipHash-1-3 of 64-bit words (each little-endian), the scalar twin of :func:`siphash_np`."""
    return siphash_py(k0, k1, b"".join((w & MASK64).to_bytes(8, "little") for w in words))


def _rotl_np(x: U64, b: int) -> U64:
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


def _sipround_np(v0: U64, v1: U64, v2: U64, v3: U64) -> tuple[U64, U64, U64, U64]:
    v0 += v1
    v1 = _rotl_np(v1, 13)
    v1 ^= v0
    v0 = _rotl_np(v0, 32)
    v2 += v3
    v3 = _rotl_np(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = _rotl_np(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = _rotl_np(v1, 17)
    v1 ^= v2
    v2 = _rotl_np(v2, 32)
    return v0, v1, v2, v3


def siphash_np(k0: int, k1: int, words: list[U64], *, c_rounds: int = 1, d_rounds: int = 3) -> U64:
    """SipHash-c-d of many messages at once: message ``i`` is ``words[0][i], words[1][i], ...``.

    Each message is ``8 * len(words)`` bytes (the words little-endian), so the result equals
    :func:`siphash_py` of those bytes.
    """
    if not words:
        raise ValueError("at least one word per message")
    n = words[0].shape[0]
    v0 = np.full(n, k0 ^ _C0, dtype=np.uint64)
    v1 = np.full(n, k1 ^ _C1, dtype=np.uint64)
    v2 = np.full(n, k0 ^ _C2, dtype=np.uint64)
    v3 = np.full(n, k1 ^ _C3, dtype=np.uint64)
    for m in words:
        v3 ^= m
        for _ in range(c_rounds):
            v0, v1, v2, v3 = _sipround_np(v0, v1, v2, v3)
        v0 ^= m
    last = np.uint64(((8 * len(words)) & 0xFF) << 56)
    v3 ^= last
    for _ in range(c_rounds):
        v0, v1, v2, v3 = _sipround_np(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= np.uint64(0xFF)
    for _ in range(d_rounds):
        v0, v1, v2, v3 = _sipround_np(v0, v1, v2, v3)
    v0 ^= v1
    v0 ^= v2
    v0 ^= v3
    return v0


_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def fmix64(x: U64) -> U64:
    """MurmurHash3's 64-bit finaliser (a bijection with full avalanche); returns a new array."""
    x = x ^ (x >> _S33)
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def fmix64_py(x: int) -> int:
    """Scalar :func:`fmix64`."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    x ^= x >> 33
    return x


def to_unit(u: U64) -> npt.NDArray[np.float64]:
    """Map uniform 64-bit integers to floats uniform on the open interval (0, 1)."""
    return ((u >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def _derive(secret: bytes, domain: str) -> tuple[int, int]:
    digest = hashlib.blake2b(
        domain.encode(), key=secret, digest_size=16, person=b"distillguard-wm1"
    ).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


@dataclass(eq=False)
class _TokenTable:
    """Per-token SipHash values, grown on demand up to :data:`TABLE_LIMIT`."""

    k0: int
    k1: int
    table: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    def ensure(self, size: int) -> None:
        if size <= self.table.shape[0]:
            return
        new = max(size, 2 * self.table.shape[0], 1024)
        ids = np.arange(new, dtype=np.uint64)
        self.table = siphash_np(self.k0, self.k1, [ids])

    def __call__(self, tokens: npt.NDArray[np.integer]) -> U64:
        if tokens.size == 0:
            return np.zeros(0, dtype=np.uint64)
        top = int(tokens.max())
        if top < TABLE_LIMIT:
            self.ensure(top + 1)
            return np.asarray(self.table[tokens], dtype=np.uint64)
        return siphash_np(self.k0, self.k1, [tokens.astype(np.uint64)])

    def scalar(self, token: int) -> int:
        if token < self.table.shape[0]:
            return int(self.table[token])
        return _words_py(self.k0, self.k1, [token])


class KeyedPRF:
    """The keyed functions of one scheme under one secret (see the module docstring).

    Args:
        secret: the 32-byte watermark secret.
        domain: a string naming the scheme and its parameters; different domains give
            independent functions.
    """

    __slots__ = ("_anchor", "_ctx", "_ctx_keys", "_tok")

    def __init__(self, secret: bytes, domain: str) -> None:
        self._ctx_keys = _derive(secret, domain + "/context")
        self._ctx = _TokenTable(*self._ctx_keys)
        self._tok = _TokenTable(*_derive(secret, domain + "/candidate"))
        self._anchor = _TokenTable(*_derive(secret, domain + "/anchor"))

    def __repr__(self) -> str:
        return "KeyedPRF(<secret hidden>)"

    # --- vectorised (detection) -------------------------------------------------------------

    def context_hash(self, windows: Sequence[npt.NDArray[np.integer]]) -> U64:
        """F over many windows: ``windows[j][i]`` is the j-th token (oldest first) of window i."""
        if len(windows) == 1:
            return self._ctx(windows[0])
        k0, k1 = self._ctx_keys
        return siphash_np(k0, k1, [w.astype(np.uint64) for w in windows])

    def candidate_hash(self, tokens: npt.NDArray[np.integer]) -> U64:
        """G of candidate tokens."""
        return self._tok(tokens)

    def anchor_hash(self, tokens: npt.NDArray[np.integer]) -> U64:
        """H of tokens, the per-token values whose minimum anchors a self-hash window."""
        return self._anchor(tokens)

    def values(
        self, windows: Sequence[npt.NDArray[np.integer]], tokens: npt.NDArray[np.integer]
    ) -> U64:
        """u = fmix64(F(window) xor G(token)) for aligned arrays of windows and tokens."""
        f = self.context_hash(windows)
        f ^= self.candidate_hash(tokens)
        return fmix64(f)

    def self_hash_values(
        self, windows: Sequence[npt.NDArray[np.integer]], tokens: npt.NDArray[np.integer]
    ) -> U64:
        """Self-hash: u = fmix64(fmix64(min(H over window and token)) xor G(token))."""
        anchor = self.anchor_hash(tokens)
        for w in windows:
            np.minimum(anchor, self.anchor_hash(w), out=anchor)
        # the minimum is a small number: spread it over 64 bits before combining, so that two
        # anchors differ in random-looking bits (as two context hashes F do)
        mixed = fmix64(anchor)
        mixed ^= self.candidate_hash(tokens)
        return fmix64(mixed)

    # --- one context, every candidate (generation) -------------------------------------------

    def vocab_values(self, window: list[int], vocab_size: int, *, self_hash: bool) -> U64:
        """u for one context window and every candidate ``0 .. vocab_size-1``."""
        self._tok.ensure(vocab_size)
        g = self._tok.table[:vocab_size]
        if self_hash:
            self._anchor.ensure(vocab_size)
            m = min(self._anchor.scalar(t) for t in window)
            anchor = np.minimum(self._anchor.table[:vocab_size], np.uint64(m))
            return fmix64(fmix64(anchor) ^ g)
        self._ctx.ensure(vocab_size)
        return fmix64(g ^ np.uint64(self.window_scalar(window)))

    def vocab_values_batch(
        self, windows: Sequence[Sequence[int]], vocab_size: int, *, self_hash: bool
    ) -> U64:
        """:meth:`vocab_values` for several contexts at once, shape ``(len(windows), vocab)``."""
        self._tok.ensure(vocab_size)
        g = self._tok.table[:vocab_size]
        if self_hash:
            self._anchor.ensure(vocab_size)
            mins = np.array(
                [min(self._anchor.scalar(t) for t in w) for w in windows], dtype=np.uint64
            )
            anchor = np.minimum(self._anchor.table[None, :vocab_size], mins[:, None])
            return fmix64(fmix64(anchor) ^ g[None, :])
        self._ctx.ensure(vocab_size)  # contexts of one token: table lookups, no scalar hashing
        f = np.array([self.window_scalar(list(w)) for w in windows], dtype=np.uint64)
        return fmix64(g[None, :] ^ f[:, None])

    def window_scalar(self, window: list[int]) -> int:
        """F of one window, as a Python int (position keys of multi-bit payloads)."""
        if len(window) == 1:
            return self._ctx.scalar(window[0])
        return _words_py(*self._ctx_keys, window)
