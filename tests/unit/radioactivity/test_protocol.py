"""The suspect/control protocol (:func:`run_test`, :func:`score_under_keys`) on synthetic texts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError
from distillguard.radioactivity import (
    RadioactivityScorer,
    TextsSubject,
    TokenText,
    run_test,
    score_under_keys,
)
from distillguard.watermark import MPACConfig, MPACWatermark

from .conftest import kgw, make_key, marked_tokens, random_tokens


def _texts(tokens: list[np.ndarray]) -> list[TokenText]:
    return [TokenText.of(t) for t in tokens]


MARKED = _texts([marked_tokens(kgw(make_key(0)), 150, s) for s in range(6)])
CLEAN = _texts([random_tokens(150, 100 + s) for s in range(6)])


def test_watermarked_suspect_with_unused_key_control() -> None:
    suspect = TextsSubject(name="suspect.jsonl", texts=MARKED)
    report = run_test(suspect, kgw(make_key(0)), control=kgw(make_key(1)), alpha=1e-3)
    assert report.verdict == "radioactive"
    assert report.suspect.p_value < 1e-6
    assert report.control is not None and report.control.p_value > 1e-3
    # the same texts, scored once, under both keys: same tokens scored
    assert report.control.detection.n_scored == report.suspect.detection.n_scored
    assert report.control.subject == "suspect.jsonl (key test-1)"
    assert report.control.role == "control" and report.suspect.role == "suspect"
    assert any("unused key" in n for n in report.control.notes)


def test_clean_subject_control_that_is_not_clean_makes_it_inconclusive() -> None:
    report = run_test(
        TextsSubject(name="clean", texts=CLEAN),
        kgw(make_key(0)),
        control=TextsSubject(name="not clean", texts=MARKED),
    )
    assert report.suspect.p_value > 1e-3
    assert report.verdict.startswith("inconclusive")


def test_score_under_keys_matches_scoring_each_key_alone() -> None:
    schemes = [kgw(make_key(k)) for k in range(4)]
    results = score_under_keys(TextsSubject(name="s", texts=MARKED, batch_size=2), schemes)
    for scheme, result in zip(schemes, results, strict=True):
        alone = RadioactivityScorer(scheme)
        alone.add_texts(MARKED)
        assert result.detection.p_value == alone.result().p_value
        assert result.detection.n_scored == alone.result().n_scored
    assert [r.role for r in results] == ["suspect", "control", "control", "control"]


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(min_value=1, max_value=8))
def test_batching_does_not_change_the_pooled_test(batch: int) -> None:
    scheme = kgw(make_key(0))
    (one,) = score_under_keys(TextsSubject(name="s", texts=MARKED, batch_size=None), [scheme])
    (many,) = score_under_keys(TextsSubject(name="s", texts=MARKED, batch_size=batch), [scheme])
    assert many.detection.p_value == one.detection.p_value
    assert many.detection.n_scored == one.detection.n_scored
    assert len(many.curve) >= len(one.curve)


def test_false_positive_rate_on_clean_texts_under_many_keys() -> None:
    """Clean texts under 200 unrelated keys: the test rejects at alpha = 0.05 about 5% of the
    time (exact test; dependent keys share texts, so a loose binomial bound)."""
    texts = _texts([random_tokens(80, 1000 + s) for s in range(4)])
    schemes = [kgw(make_key(k)) for k in range(200)]
    results = score_under_keys(TextsSubject(name="clean", texts=texts), schemes)
    rejected = sum(r.p_value <= 0.05 for r in results)
    assert rejected <= 20  # mean 10 at the nominal level; 20 is > 3 sd above it


def test_tracing_decodes_the_payload() -> None:
    key = make_key(3)
    wm = MPACWatermark(MPACConfig(bits=8, context_width=1), key=key).for_payload(0xA5)
    texts = _texts([marked_tokens(wm, 200, s) for s in range(6)])  # type: ignore[arg-type]
    scheme = MPACWatermark(MPACConfig(bits=8, context_width=1), key=key)
    report = run_test(
        TextsSubject(name="s", texts=texts),
        scheme,
        control=MPACWatermark(MPACConfig(bits=8, context_width=1), key=make_key(4)),
        trace=True,
        candidates={"alice": 0xA5, "bob": 0x11},
    )
    assert report.tracing is not None and report.tracing["label"] == "alice"


def test_bad_arguments() -> None:
    subject = TextsSubject(name="s", texts=MARKED)
    with pytest.raises(InputError, match="alpha"):
        run_test(subject, kgw(make_key(0)), control=kgw(make_key(1)), alpha=1.5)
    with pytest.raises(InputError, match="differ"):
        run_test(subject, kgw(make_key(0)), control=kgw(make_key(0)))
    with pytest.raises(InputError, match="MPAC"):
        run_test(subject, kgw(make_key(0)), control=kgw(make_key(1)), trace=True)
    with pytest.raises(InputError, match="no texts"):
        run_test(TextsSubject(name="e", texts=[]), kgw(make_key(0)), control=kgw(make_key(1)))
    with pytest.raises(InputError, match="widths"):
        score_under_keys(subject, [kgw(make_key(0)), kgw(make_key(1), width=2)])
    with pytest.raises(InputError, match="role"):
        score_under_keys(subject, [kgw(make_key(0))], roles=["a", "b"])
    with pytest.raises(InputError, match="at least one"):
        score_under_keys(subject, [])
