"""Tracing a multi-bit payload on a synthetic harvest."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from distillguard.errors import InputError
from distillguard.radioactivity import RadioactivityScorer, TokenText, trace_payload
from distillguard.watermark import MPACConfig, MPACWatermark
from distillguard.watermark._scheme import softmax

from .conftest import make_key, random_tokens

VOCAB = 300


def payload_text(wm: MPACWatermark, n: int, seed: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=VOCAB) * 2
    out = [int(rng.integers(0, VOCAB))]
    for _ in range(n - 1):
        logits = wm.process_logits(out[-1:], base + rng.normal(size=VOCAB))
        out.append(int(rng.choice(VOCAB, p=softmax(logits))))
    return np.asarray(out, dtype=np.int64)


@pytest.fixture(scope="module")
def scheme() -> MPACWatermark:
    return MPACWatermark(MPACConfig(bits=16, delta=2.0), key=make_key(9))


def _pooled(scheme: MPACWatermark, texts: list[npt.NDArray[np.int64]]) -> object:
    sc = RadioactivityScorer(scheme)
    sc.add_texts([TokenText.of(t) for t in texts])
    return sc.pooled_scores()


def test_traces_the_harvesting_account(scheme: MPACWatermark) -> None:
    accounts = {f"acct-{i}": (0x1000 * i + 0x2A5) & 0xFFFF for i in range(1, 9)}
    leaked = scheme.for_payload(accounts["acct-5"])
    texts = [payload_text(leaked, 150, s) for s in range(6)]
    pooled = _pooled(scheme, texts)
    blind = trace_payload(scheme, pooled)  # type: ignore[arg-type]
    assert blind.payload == accounts["acct-5"]
    assert blind.p_value < 1e-6 and blind.label is None
    named = trace_payload(scheme, pooled, candidates=accounts)  # type: ignore[arg-type]
    assert named.label == "acct-5" and named.payload == accounts["acct-5"]
    assert named.p_value < blind.p_value  # a short candidate list is more powerful
    assert named.candidates[0].label == "acct-5"
    assert all(c.adjusted_p_value >= c.p_value for c in named.candidates)
    assert named.to_dict()["candidates"][0]["label"] == "acct-5"


def test_clean_text_traces_nothing(scheme: MPACWatermark) -> None:
    pooled = _pooled(scheme, [random_tokens(200, s, vocab=VOCAB) for s in range(5)])
    blind = trace_payload(scheme, pooled)  # type: ignore[arg-type]
    named = trace_payload(scheme, pooled, candidates={"a": 1, "b": 2, "c": 0xFFFF})  # type: ignore[arg-type]
    assert blind.p_value > 1e-3
    assert named.p_value > 1e-3


def test_bad_candidates(scheme: MPACWatermark) -> None:
    pooled = _pooled(scheme, [random_tokens(50, 1, vocab=VOCAB)])
    with pytest.raises(InputError):
        trace_payload(scheme, pooled, candidates={"x": 1 << 16})  # type: ignore[arg-type]
    with pytest.raises(InputError):
        trace_payload(scheme, object())  # type: ignore[arg-type]
