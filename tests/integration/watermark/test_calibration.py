"""Calibration on real unwatermarked text (AlpacaEval outputs, tokenized with the word tokenizer).

The folder is ``../shared/data/alpaca_eval_dev/outputs`` relative to the repository root; the test
is skipped when it is absent. The full run over every output and more keys is
``benchmarks/calibrate_watermark.py``; this one uses a subset to stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from distillguard.keyring import WatermarkKey
from distillguard.watermark import (
    AaronsonConfig,
    AaronsonWatermark,
    KGWConfig,
    KGWWatermark,
    SynthIDConfig,
    SynthIDWatermark,
    WordTokenizer,
)
from distillguard.watermark._calibration import (
    empirical_fpr,
    find_alpaca_outputs,
    load_alpaca_outputs,
)
from distillguard.watermark._scheme import WindowScheme

FOLDER = find_alpaca_outputs(Path(__file__).resolve().parents[3])
pytestmark = pytest.mark.skipif(
    FOLDER is None, reason="../shared/data/alpaca_eval_dev/outputs is not present"
)


def key(i: int) -> WatermarkKey:
    return WatermarkKey(
        kid=f"cal-{i}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        secret=(i + 77).to_bytes(8, "little") * 4,
    )


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    assert FOLDER is not None
    tok = WordTokenizer()
    return [tok.encode(t) for t in load_alpaca_outputs(FOLDER, limit=6000)]


BUILDERS: dict[str, Callable[[WatermarkKey], WindowScheme]] = {
    "kgw": lambda k: KGWWatermark(KGWConfig(), key=k),
    "kgw-selfhash": lambda k: KGWWatermark(KGWConfig.robust(), key=k),
    "aaronson": lambda k: AaronsonWatermark(AaronsonConfig(), key=k),
    "synthid": lambda k: SynthIDWatermark(SynthIDConfig(), key=k),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_false_positive_rate_on_real_text(docs: list[np.ndarray], name: str) -> None:
    p_values: list[float] = []
    for i in range(5):
        scheme = BUILDERS[name](key(i))
        p_values.extend(r.p_value for r in scheme.detect_many(docs))
    rows = empirical_fpr(np.array(p_values), levels=(1e-2, 1e-3))
    for row in rows:
        assert row.not_above, row  # never significantly more false positives than nominal
        if name == "aaronson":  # continuous statistic: exact size
            assert row.within, row
    # and not vacuously conservative: the rate at 1e-2 is within a factor 2 of nominal
    assert rows[0].fpr > 0.005


def test_detect_many_equals_detect(docs: list[np.ndarray]) -> None:
    for scheme in (
        KGWWatermark(KGWConfig(), key=key(1)),
        KGWWatermark(KGWConfig.robust(), key=key(1)),
        SynthIDWatermark(SynthIDConfig(), key=key(2)),
    ):
        subset = docs[:200]
        plens = [min(5, len(d)) for d in subset]
        many = scheme.detect_many(subset, prompt_lens=plens)
        for d, p, r in zip(subset, plens, many, strict=True):
            one = scheme.detect(d, prompt_len=p)
            assert (r.n_scored, r.statistic, r.n_duplicates) == (
                one.n_scored,
                one.statistic,
                one.n_duplicates,
            )
            assert r.p_value == pytest.approx(one.p_value)


def test_without_dedup_real_text_is_miscalibrated(docs: list[np.ndarray]) -> None:
    # Why dedup is on by default: repeated phrases make the undeduplicated test anti-conservative.
    scheme = KGWWatermark(KGWConfig(), key=key(3))
    with_dedup = np.array([r.p_value for r in scheme.detect_many(docs[:3000])])
    without = np.array([scheme.detect(d, dedup=False).p_value for d in docs[:3000]])
    assert np.mean(without <= 1e-2) > np.mean(with_dedup <= 1e-2)
