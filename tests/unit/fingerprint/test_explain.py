"""Shared signature phrases: found when both over-use them, not when only one does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.fingerprint import ModelOutputs
from distillguard.fingerprint.explain import SharedPhrase, shared_phrases

FILLER = [
    "the",
    "river",
    "runs",
    "past",
    "the",
    "old",
    "stone",
    "mill",
    "near",
    "the",
    "green",
    "field",
]


def _model(name: str, habit: str | None, n: int = 100, every: int = 2) -> ModelOutputs:
    texts = []
    for i in range(n):
        words = [FILLER[(i + k) % len(FILLER)] for k in range(8)]
        text = " ".join(words)
        if habit and i % every == 0:
            text = f"{text} {habit}"
        texts.append(text)
    return ModelOutputs(name, tuple(range(n)), ("q",) * n, tuple(texts))


def test_shared_habit_is_found_first() -> None:
    suspect = _model("s", "delve into the tapestry")
    ref = _model("r", "delve into the tapestry")
    others = [_model(f"o{i}", None) for i in range(5)]
    found = shared_phrases(suspect, ref, others, top=3)
    assert found
    assert all(isinstance(p, SharedPhrase) for p in found)
    assert all(p.phrase in "delve into the tapestry" for p in found)  # only the habit's n-grams
    assert found[0].suspect_rate == pytest.approx(0.5)
    assert found[0].others_rate == 0.0
    assert found[0].to_dict()["phrase"] == found[0].phrase


def test_one_sided_habit_is_not_shared() -> None:
    suspect = _model("s", "delve into the tapestry")
    ref = _model("r", None)
    others = [_model(f"o{i}", None) for i in range(5)]
    assert all("tapestry" not in p.phrase for p in shared_phrases(suspect, ref, others))


def test_common_habit_is_not_a_signature() -> None:
    habit = "as an ai language model"
    suspect, ref = _model("s", habit), _model("r", habit)
    others = [_model(f"o{i}", habit) for i in range(5)]
    assert all("language" not in p.phrase for p in shared_phrases(suspect, ref, others))


def test_bad_arguments() -> None:
    m = _model("m", None, n=4)
    with pytest.raises(ValueError):
        shared_phrases(m, m, [m], top=0)
    with pytest.raises(ValueError):
        shared_phrases(m, m, [])
    empty = ModelOutputs("e", (0, 1), ("q", "q"), ("", ""))
    assert shared_phrases(empty, empty, [empty]) == []


@settings(max_examples=30, deadline=None)
@given(texts=st.lists(st.text(max_size=80), min_size=1, max_size=20), top=st.integers(1, 5))
def test_any_text_gives_at_most_top_positive_phrases(texts: list[str], top: int) -> None:
    m = ModelOutputs("m", tuple(range(len(texts))), ("q",) * len(texts), tuple(texts))
    other = _model("o", None, n=len(texts))
    found = shared_phrases(m, m, [other], top=top)
    assert len(found) <= top
    assert all(p.score > 0 for p in found)
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
