"""Shared fixtures of the radioactivity tests: keys and synthetic watermarked text."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from distillguard.keyring import WatermarkKey
from distillguard.watermark import KGWConfig, KGWWatermark
from distillguard.watermark._scheme import softmax

KeyFactory = Callable[[int], WatermarkKey]
VOCAB = 400


def make_key(seed: int) -> WatermarkKey:
    """A deterministic watermark key for tests."""
    secret = hashlib.sha256(f"radio-test-{seed}".encode()).digest()
    return WatermarkKey(
        kid=f"test-{seed}", created_at=datetime(2026, 1, 1, tzinfo=UTC), secret=secret
    )


@pytest.fixture
def key() -> WatermarkKey:
    return make_key(0)


def random_tokens(n: int, seed: int, vocab: int = VOCAB) -> npt.NDArray[np.int64]:
    """Unwatermarked token ids."""
    return np.random.default_rng(seed).integers(0, vocab, n).astype(np.int64)


def marked_tokens(
    wm: KGWWatermark, n: int, seed: int, vocab: int = VOCAB, temperature: float = 1.0
) -> npt.NDArray[np.int64]:
    """Tokens from a synthetic random LM with the watermark applied at each step."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(vocab,)) * 2.0
    out = [int(x) for x in rng.integers(0, vocab, wm.context_width)]
    for _ in range(n - 1):
        logits = wm.process_logits(out[-wm.context_width :], base + rng.normal(size=vocab))
        out.append(int(rng.choice(vocab, p=softmax(logits / temperature))))
    return np.asarray(out, dtype=np.int64)


def kgw(key: WatermarkKey, width: int = 1) -> KGWWatermark:
    """KGW, gamma 0.25, delta 3 under ``key``."""
    return KGWWatermark(KGWConfig(gamma=0.25, delta=3.0, context_width=width), key=key)
