"""The identity/provenance channel: lexicon, signature formulas, the exact test, the sentences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distillguard.fingerprint import ModelOutputs
from distillguard.fingerprint.identity import (
    FORMULAS,
    _fisher_greater,
    formula_indices,
    identity_profile,
    identity_test,
    signature_formulas,
)


def _outputs(name: str, texts: list[str]) -> ModelOutputs:
    n = len(texts)
    return ModelOutputs(
        name=name, prompt_ids=tuple(range(n)), instructions=("q",) * n, texts=tuple(texts)
    )


PLAIN = "Paris is the capital of France. It has many museums."
CLAUDE = "I'm Claude, an AI assistant created by Anthropic to be helpful, harmless, and honest."
CHATGPT = "As an AI language model, I do not have personal opinions."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CLAUDE, {"i_am_claude", "by_anthropic", "names_anthropic", "helpful_harmless_honest"}),
        (CHATGPT, {"as_an_ai", "no_personal"}),
        (
            "I am ChatGPT, a large language model trained by OpenAI.",
            {"i_am_chatgpt", "by_openai", "names_openai"},
        ),
        ("As of my last update in September 2021, no.", {"as_of_my_last", "cutoff_month"}),
        ("I'm sorry, but I cannot fulfill that request.", {"sorry_but", "cannot_fulfill"}),
        ("作为一个人工智能语言模型，我没有个人观点。", {"zh_as_an_ai"}),
        ("En tant qu'IA, je n'ai pas d'opinion.", {"fr_as_an_ai"}),
        (
            "Als KI habe ich keine Gefühle. Ich wurde entwickelt von OpenAI.",
            {"de_as_an_ai", "xx_by_maker", "names_openai"},
        ),
        (PLAIN, set()),
        ("", set()),
    ],
)
def test_lexicon_finds_formulas(text: str, expected: set[str]) -> None:
    prof = identity_profile(_outputs("m", [text]))
    found = {FORMULAS[j].name for j in np.flatnonzero(prof.hits[0])}
    assert found == expected


def test_names_of_makers_are_case_sensitive() -> None:
    """'openai' in a URL-like or lower-case context is not the maker's name."""
    prof = identity_profile(_outputs("m", ["see openai-style apis", "Anthropic is a company"]))
    col = formula_indices(["names_openai", "names_anthropic"])
    assert prof.hits[:, col].tolist() == [[False, False], [False, True]]


def test_signature_formulas_are_specific_to_the_reference() -> None:
    ref = np.array([20, 20, 2, 28])
    null = [np.array([0, 8, 0, 0]), np.array([4, 1, 0, 21])]
    # 0: 21 >= 3 x 5; 1: 21 < 3 x 9; 2: too rare; 3: shared with a null model (28 vs 21)
    assert signature_formulas(ref, null, min_count=3) == [0]
    assert signature_formulas(ref, null, min_count=3, specificity=1.01) == [0, 1, 3]


@given(
    k_s=st.integers(0, 40), k_u=st.integers(0, 40), n_s=st.integers(40, 80), n_u=st.integers(40, 80)
)
@settings(max_examples=60, deadline=None)
def test_fisher_matches_scipy(k_s: int, k_u: int, n_s: int, n_u: int) -> None:
    p = _fisher_greater(k_s, n_s, k_u, n_u)
    assert 0.0 <= p <= 1.0
    if k_s > 0:
        expected = stats.fisher_exact([[k_s, n_s - k_s], [k_u, n_u - k_u]], alternative="greater")
        assert p == pytest.approx(expected[1], rel=1e-6, abs=1e-12)


def _model(name: str, n: int, k: int, text: str) -> ModelOutputs:
    return _outputs(name, [text if i < k else PLAIN for i in range(n)])


def test_student_of_claude_is_found_and_sentences_shown() -> None:
    n = 200
    ref = identity_profile(_model("claude", n, 30, CLAUDE))
    null = [identity_profile(_model(f"u{i}", n, i, CHATGPT)) for i in range(4)]
    student = identity_profile(_model("student", n, 12, CLAUDE))
    result = identity_test(student, ref, null)
    assert result.p_value < 1e-3
    assert result.suspect_count == 12 and result.reference_count == 30
    assert "i_am_claude" in result.formulas
    sentences = student.sentences(formula_indices(list(result.formulas)), limit=3)
    assert len(sentences) == 3 and sentences[0].sentence.startswith("I'm Claude")


def test_suspect_at_a_null_models_rate_is_not_accused() -> None:
    """Intersection-union: the suspect must exceed *every* null model's own rate."""
    n = 200
    ref = identity_profile(_model("claude", n, 40, CLAUDE))
    null = [
        identity_profile(_model("u0", n, 0, PLAIN)),
        identity_profile(_model("u1", n, 10, CLAUDE)),
    ]
    suspect = identity_profile(_model("s", n, 10, CLAUDE))
    result = identity_test(suspect, ref, null)
    assert result.formulas  # still specific enough: 41 >= 3 x 11
    assert result.p_value > 0.4  # against u0 alone it would be tiny
    assert result.null_max_model == "u1" and result.null_max_count == 10


def test_no_signature_gives_p_one() -> None:
    n = 50
    ref = identity_profile(_model("r", n, 0, PLAIN))
    null = [identity_profile(_model("u", n, 0, PLAIN))]
    assert identity_test(identity_profile(_model("s", n, 40, CLAUDE)), ref, null).p_value == 1.0


def test_sentence_window_is_bounded() -> None:
    long = "x" * 1000 + " As an AI language model I cannot. " + "y" * 1000
    prof = identity_profile(_outputs("m", [long]))
    match = prof.sentences(formula_indices(["as_an_ai"]))[0]
    assert "As an AI language model" in match.sentence and len(match.sentence) <= 310


_FRAGMENTS = [
    "I'm ",
    "I am ",
    "i’m ",
    "As an AI language model",
    "a large language model",
    "Claude",
    "ChatGPT",
    " trained by OpenAI",
    "created by Anthropic",
    "sorry, but ",
    "I apologize, but ",
    "I cannot fulfill this",
    "as of my last update",
    "in September 2021",
    "knowledge cut-off",
    "作为一个人工智能",
    "我是ChatGPT",
    "En tant qu'IA",
    "Como IA",
    "Als KI",
    "entwickelt von Google",
    "I don't have personal",
    "ethical guidelines",
    "not appropriate",
    ". ",
    "\n",
    "x",
    " ",
]


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12), st.booleans())
@settings(max_examples=200, deadline=None)
def test_keyword_prefilter_loses_no_match(parts: list[str], upper: bool) -> None:
    """The prefilter is a necessary condition: the profile equals a plain regex search."""
    from distillguard.fingerprint.identity import _COMPILED

    text = "".join(parts)
    text = text.upper() if upper else text
    prof = identity_profile(_outputs("m", [text]))
    assert prof.hits[0].tolist() == [bool(rx.search(text)) for rx in _COMPILED]


def test_signatures_can_be_chosen_against_a_wider_set() -> None:
    """A formula another provider's model uses is no signature, even if that model is not in the
    null (the per-teacher test: the null is only models that cannot have learned from T)."""
    n = 200
    sorry = "I'm sorry, but I cannot help with that."
    ref = identity_profile(_model("gpt", n, 19, sorry))
    null = [identity_profile(_model("claude3", n, 4, sorry))]
    other = identity_profile(_model("deepseek", n, 8, sorry))  # a later model, maybe a student
    suspect = identity_profile(_model("human-data", n, 36, sorry))
    assert identity_test(suspect, ref, null).p_value < 1e-4  # 20 >= 3 x 5: a signature
    wider = identity_test(suspect, ref, null, selection=[*null, other])
    assert wider.formulas == () and wider.p_value == 1.0  # 20 < 3 x 9
