"""Leave-one-out checks on a synthetic reference library with known families."""

from __future__ import annotations

import random

import pytest

from distillguard.fingerprint import FamilyMap, Fingerprint, ModelOutputs, compute_fingerprint
from distillguard.fingerprint.evaluation import HoldoutCheck, HoldoutReport, holdout_checks

# Each family has its own opening and formatting habits; versions of a family vary its wording
# a little. Content words are shared by all, so only habits tell families apart.
HABITS = {
    "alpha": ("Sure! Here is what I know about {t}:\n\n1. {a}\n2. {b}\n\nHope this helps!", 2),
    "beta": ("## {t}\n\n- **{a}**\n- **{b}**", 2),
    "gamma": ("The {t} is {a}; it is also {b} (as is well known).", 1),
    "delta": ("As an AI language model, I think {t} is {a}. Perhaps {b}?", 1),
    "eps": ("{t}. {a}. {b}.", 1),
    "zeta": ("Well, {t} — {a}, and {b}... that's it", 1),
}
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "music",
    "paper",
    "green",
    "light",
    "quick",
    "slow",
    "bright",
    "dark",
]


def _model(name: str, family: str, seed: int, n: int = 60) -> ModelOutputs:
    rng = random.Random(seed)
    tmpl = HABITS[family][0]
    texts = []
    for i in range(n):
        t, a, b = (WORDS[(i * k) % len(WORDS)] for k in (1, 5, 7))
        text = tmpl.format(t=t, a=a, b=b)
        if rng.random() < 0.3:
            text += " " + rng.choice(WORDS)
        texts.append(text)
    ids = tuple(range(n))
    return ModelOutputs(name=name, prompt_ids=ids, instructions=("q",) * n, texts=tuple(texts))


@pytest.fixture(scope="module")
def report(library: tuple[list[Fingerprint], FamilyMap]) -> HoldoutReport:
    fps, fam = library
    return holdout_checks(fps, fam, alpha=0.05)


@pytest.fixture(scope="module")
def library() -> tuple[list[Fingerprint], FamilyMap]:
    fps = []
    families = {}
    for k, (family, (_, versions)) in enumerate(HABITS.items()):
        for v in range(versions):
            name = f"{family}{v}"
            fps.append(compute_fingerprint(_model(name, family, seed=10 * k + v)))
            families[name] = family
    return fps, FamilyMap(families=families, providers={})


def test_report_counts_and_json(
    library: tuple[list[Fingerprint], FamilyMap], report: HoldoutReport
) -> None:
    fps, fam = library
    assert isinstance(report, HoldoutReport)
    assert report.unrelated_tests == len(fps)
    assert report.same_family_tests == 4  # alpha0/1 and beta0/1 have a sibling
    doc = report.to_dict()
    assert doc["unrelated_tests"] == len(fps)
    assert len(doc["checks"]) == report.unrelated_tests + report.same_family_tests
    for c in report.checks:
        assert 0.0 <= c.top_p_value <= 1.0
        if c.kind == "unrelated":
            assert c.expected is None
            assert c.top_family != fam.families[c.held_out]  # its family was removed
        else:
            assert c.expected == fam.families[c.held_out]


def test_siblings_are_found(report: HoldoutReport) -> None:
    same = [c for c in report.checks if c.kind == "same_family"]
    assert all(c.top_family == c.expected for c in same)
    assert report.same_family_hits == sum(c.correct for c in same)


def test_check_correctness_rule() -> None:
    ok = HoldoutCheck("m", "unrelated", None, None, "x", 0.5)
    bad = HoldoutCheck("m", "unrelated", None, "x", "x", 0.001)
    assert ok.correct and not bad.correct
    report = HoldoutReport(alpha=0.01, checks=(ok, bad))
    assert report.false_accusations == 1
    assert report.same_family_tests == 0


def test_too_small_libraries_are_skipped(library: tuple[list[Fingerprint], FamilyMap]) -> None:
    fps, fam = library
    few = fps[:4]  # alpha0, alpha1, beta0, beta1: removing a family leaves one family
    report = holdout_checks(few, fam, alpha=0.01)
    assert report.unrelated_tests == 0
