"""The per-teacher one-vs-rest test, its null (release dates, documented providers), providers."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from distillguard.errors import InputError
from distillguard.fingerprint import FamilyMap, Fingerprint, ModelOutputs, compute_fingerprint
from distillguard.fingerprint.attribution import attribute
from distillguard.fingerprint.identity import IdentityProfile, identity_profile
from distillguard.fingerprint.teacher import (
    family_release,
    model_release,
    teacher_null,
    teacher_test,
)

WORDS = ("apple", "river", "stone", "cloud", "music", "paper", "green", "light", "quick", "slow")
# (template, provider, release date); the teacher "tutor" is released last
STYLES = {
    "tutor": (
        "Certainly! As an AI language model, I can help. {t}:\n\n1. {a}\n2. {b}\n\nHope so!",
        "acme",
        "2024-01-01",
    ),
    "beta": ("## {t}\n\n- **{a}**\n- **{b}**", "bco", "2023-01-01"),
    "gamma": ("The {t} is {a}; it is also {b} (as is well known).", "gco", "2023-02-01"),
    "delta": ("In short, {t} means {a}. Perhaps {b}?", "dco", "2023-03-01"),
    "eps": ("{t}. {a}. {b}.", "eco", "2023-04-01"),
    "zeta": ("Well, {t} — {a}, and {b}... that's it", "zco", "2023-05-01"),
    "eta": ("Consider {t}: first {a}, then {b}.", "hco", "2025-01-01"),
}


def _texts(
    family: str, seed: int, n: int = 80, mix: str | None = None, share: float = 0.0
) -> ModelOutputs:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        fam = mix if mix is not None and rng.random() < share else family
        t, a, b = (WORDS[(i * k + seed) % len(WORDS)] for k in (1, 5, 7))
        text = STYLES[fam][0].format(t=t, a=a, b=b)
        if rng.random() < 0.4:
            text += " " + rng.choice(WORDS)
        texts.append(text)
    return ModelOutputs(
        name="", prompt_ids=tuple(range(n)), instructions=("q",) * n, texts=tuple(texts)
    )


def _named(out: ModelOutputs, name: str) -> ModelOutputs:
    return ModelOutputs(
        name=name, prompt_ids=out.prompt_ids, instructions=out.instructions, texts=out.texts
    )


@pytest.fixture(scope="module")
def lib() -> tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]]:
    fps, fams, provs, released, ids = [], {}, {}, {}, {}
    for k, (fam, (_, prov, date)) in enumerate(STYLES.items()):
        for v in range(2):
            name = f"{fam}{v}"
            out = _named(_texts(fam, seed=10 * k + v), name)
            fps.append(compute_fingerprint(out))
            ids[name] = identity_profile(out)
            fams[name], provs[name], released[name] = fam, prov, date
    return fps, FamilyMap(families=fams, providers=provs, released=released), ids


def test_null_is_released_before_or_documented(
    lib: tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]],
) -> None:
    fps, fam, _ = lib
    names = [f.name for f in fps]
    null = teacher_null(["tutor0", "tutor1"], names, fam, documented_providers=("hco",))
    # everything before 2024-01-01 qualifies by date; eta (2025) only as a documented provider
    assert set(null) == {
        f"{f}{v}" for f in ("beta", "gamma", "delta", "eps", "zeta", "eta") for v in (0, 1)
    }
    assert null["eta0"] == "documented provider hco"
    assert null["beta0"].startswith("released 2023-01-01")
    assert "eta0" not in teacher_null(["tutor0"], names, fam, documented_providers=())
    assert family_release(["tutor0", "tutor1"], fam) == dt.date(2024, 1, 1)
    assert model_release("nobody", fam) is None


def test_student_is_attributed_to_its_teacher_and_provider(
    lib: tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]],
) -> None:
    fps, fam, ids = lib
    out = _named(_texts("eps", seed=99, mix="tutor", share=0.6), "student")
    res = teacher_test(
        compute_fingerprint(out),
        fps,
        fam,
        "tutor",
        alpha=0.01,
        suspect_identity=identity_profile(out),
        reference_identity=ids,
    )
    assert res.family.learned and res.family.p_value < 0.01
    assert (
        res.provider == "acme" and res.provider_answer is not None and res.provider_answer.learned
    )
    assert res.family.identity is not None and res.family.identity["suspect_count"] > 0
    assert res.provider_set_p is not None
    assert res.provider_answer.p_value == min(1.0, 2 * min(res.family.p_value, res.provider_set_p))
    doc = res.to_dict()
    assert doc["learned_from_teacher"] is True and doc["family"]["null"]
    assert doc["provider_set_p"] == res.provider_set_p


def test_independent_model_is_not_accused(
    lib: tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]],
) -> None:
    fps, fam, ids = lib
    out = _named(_texts("gamma", seed=123), "indep")
    res = teacher_test(
        compute_fingerprint(out),
        fps,
        fam,
        "tutor",
        alpha=0.01,
        suspect_identity=identity_profile(out),
        reference_identity=ids,
    )
    assert not res.family.learned and res.family.p_value > 0.05


def test_too_small_null_and_unknown_teacher_are_errors(
    lib: tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]],
) -> None:
    fps, fam, _ = lib
    suspect = fps[0]
    with pytest.raises(InputError, match="no reference of family"):
        teacher_test(suspect, fps, fam, "omega")
    # eta is released last and no provider is documented: 12 references qualify by date, but
    # for "beta" (the first) only none do
    with pytest.raises(InputError, match="cannot have learned"):
        teacher_test(suspect, fps, fam, "beta", documented_providers=())


def test_attribute_reports_provider_and_identity(
    lib: tuple[list[Fingerprint], FamilyMap, dict[str, IdentityProfile]],
) -> None:
    fps, fam, ids = lib
    out = _named(_texts("eps", seed=99, mix="tutor", share=0.6), "student")
    res = attribute(
        compute_fingerprint(out),
        fps,
        fam,
        alpha=0.01,
        suspect_identity=identity_profile(out),
        reference_identity=ids,
    )
    assert res.verdict == "tutor" and res.provider_verdict == "acme"
    doc = res.to_dict()
    assert doc["provider_ranking"][0]["provider"] == "acme"
    assert doc["ranking"][0]["identity"]["formulas"]
    assert "identity" in doc["channels"]
    ident = doc["explanation"]["identity"]
    assert ident["formulas"] == ["as_an_ai"]
    assert "As an AI language model" in ident["suspect_sentences"][0]["sentence"]


def test_a_family_verdict_implies_its_provider() -> None:
    """Closed testing: the provider's p-value is its best family's adjusted p-value."""
    from distillguard.fingerprint.attribution import FamilyScore, _provider_ranking

    def fs(family: str, provider: str, p: float, raw: float) -> FamilyScore:
        return FamilyScore(family, 3.0, p, raw, family + "0", {}, provider=provider)

    scores = [fs("a", "openai", 0.008, 0.0008)]
    scores += [fs(f"o{i}", "openai", 0.9, 0.5) for i in range(4)]
    scores += [fs(f"x{i}", f"prov{i}", 0.9, 0.5) for i in range(11)]
    ranking = _provider_ranking(scores)
    assert ranking[0].provider == "openai" and ranking[0].family == "a"
    assert ranking[0].p_value == 0.008 < 0.01
    assert len(ranking) == 12
