"""The post-hoc lexical scheme: embedding, protected spans, exact test, lexicon validation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._cater import CaterConfig, CaterWatermark, Lexicon, quality_cost

KeyFactory = Callable[[int], WatermarkKey]

TEXT = (
    "However, the method often helps people. Additionally, we use a simple approach to "
    "improve results quickly. Therefore the main benefits are obvious and significant. "
    "Perhaps we should begin with several ideas, since choosing an approach is difficult. "
    "We frequently utilize various techniques; the problem is mostly complex. "
) * 3


def test_embed_then_detect(key: WatermarkKey, make_key: KeyFactory) -> None:
    wm = CaterWatermark(CaterConfig(), key=key)
    res = wm.embed(TEXT)
    assert res.changed > 0 and res.eligible >= res.changed
    assert len(res.text.split()) == len(TEXT.split())
    det = wm.detect(res.text)
    assert det.statistic == det.n_scored  # every scored occurrence agrees
    assert det.p_value < 1e-4
    assert wm.embed(res.text).text == res.text  # idempotent
    other = CaterWatermark(CaterConfig(), key=make_key(99))
    assert other.detect(res.text).p_value > 1e-3


def test_protected_spans_are_untouched(key: WatermarkKey) -> None:
    wm = CaterWatermark(CaterConfig(), key=key)
    text = (
        "We often use Python.\n```\nmethod = often_use(approach)  # often\n```\n"
        "See `often use method` and https://example.com/often/method or often@method.io. "
        "The Method Company and NASA OFTEN. It costs 12 often. An approach. a method."
    )
    marked = wm.embed(text).text
    for span in (
        "```\nmethod = often_use(approach)  # often\n```",
        "`often use method`",
        "https://example.com/often/method",
        "often@method.io",
        "The Method Company",
        "OFTEN",
        "An approach",
        "a method",
    ):
        assert span in marked


def test_case_is_preserved(key: WatermarkKey) -> None:
    wm = CaterWatermark(CaterConfig(), key=key)
    for _ in range(3):
        marked = wm.embed("However, it works. Nevertheless, it works.").text
        assert marked[0].isupper()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*sorted(Lexicon.builtin().index), "the", "x", "."]), max_size=60))
def test_embed_never_changes_word_count_and_always_detects_agreement(words: list[str]) -> None:
    from datetime import UTC, datetime

    key = WatermarkKey(kid="p", created_at=datetime(2026, 1, 1, tzinfo=UTC), secret=b"p" * 32)
    wm = CaterWatermark(CaterConfig(), key=key)
    text = " ".join(words)
    marked = wm.embed(text).text
    assert len(marked.split()) == len(text.split())
    agree, probs = wm.score(marked)
    assert agree == len(probs)


def test_null_false_positive_rate(make_key: KeyFactory) -> None:
    rng = np.random.default_rng(0)
    vocab = sorted(Lexicon.builtin().index) + ["the", "and", "of", "to"] * 20
    ps = []
    for k in range(200):
        wm = CaterWatermark(CaterConfig(), key=make_key(500 + k))
        text = " ".join(rng.choice(vocab, 80))
        ps.append(wm.detect(text).p_value)
    arr = np.array(ps)
    for alpha in (0.05, 0.2):
        assert np.mean(arr <= alpha) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / 200)


def test_quality_cost(key: WatermarkKey) -> None:
    wm = CaterWatermark(CaterConfig(), key=key)
    marked = wm.embed(TEXT)
    cost = quality_cost(TEXT, marked.text, counts={"often": 100, "frequently": 10})
    assert cost.changed == marked.changed
    assert cost.changed_fraction == pytest.approx(marked.changed / cost.words)
    with pytest.raises(InputError):
        quality_cost("a b", "a", counts={})


def test_bad_lexicons() -> None:
    with pytest.raises(InputError):
        Lexicon([["solo"]])
    with pytest.raises(InputError):
        Lexicon([["a", "b"], ["b", "c"]])
    with pytest.raises(InputError):
        Lexicon([["two words", "other"]])
