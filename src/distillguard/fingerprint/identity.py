"""Identity and provenance evidence: what a model says about itself, counted with an exact test.

Distilled models repeat what their teacher says about itself: its name ("I am ChatGPT"), its maker
("a language model trained by OpenAI"), its policy and refusal formulas ("I'm sorry, but I cannot
fulfill that request", "helpful, harmless and honest"), its disclaimers ("I don't have personal
opinions") and its knowledge cutoff ("as of my last update in September 2021"). This module has
a fixed lexicon of such formulas (:data:`FORMULAS`, several languages), finds them in every answer
and tests whether a suspect uses a reference's *signature* formulas more often than models that
cannot have learned from that reference.

The test, for a suspect S and a reference T with a null set U (references unrelated to T):

1. T's signature set ``sig(T)``: the formulas T uses in at least ``min_count`` answers and
   :data:`SPECIFICITY` times as often as every model of U (chosen without looking at S).
2. ``k_S``: S's answers containing any formula of ``sig(T)``; ``k_u`` the same for each u in U.
3. For each u, the one-sided Fisher exact test that S's rate exceeds u's own rate; the p-value is
   the *largest* of them (an intersection-union test: S must exceed every null model, each
   judged against its own rate). It is exact for each comparison and needs no distributional
   assumption about how the formulas co-occur.

The matching sentences are kept, so that an analyst (or a court) can read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as _st

from distillguard.fingerprint.outputs import ModelOutputs

__all__ = [
    "FORMULAS",
    "KEYWORDS",
    "Formula",
    "IdentityMatch",
    "IdentityProfile",
    "IdentityTest",
    "formula_indices",
    "identity_profile",
    "identity_test",
    "signature_formulas",
]


@dataclass(frozen=True)
class Formula:
    """One identity/provenance formula of the lexicon.

    Attributes:
        name: stable identifier.
        category: ``self_identification``, ``maker``, ``policy``, ``refusal``, ``disclaimer`` or
            ``cutoff``.
        pattern: the regular expression (searched in each answer).
        provider: the provider the formula names, where it names one (display only: the test
            learns which reference uses which formula from the references' own answers).
    """

    name: str
    category: str
    pattern: str
    provider: str | None = None


_I = r"\bI(?:'m|’m| am)"
_BY = r"\b(?:created|developed|trained|made|built|designed|programmed) by"

#: The lexicon (English first, then other languages). Order is the column order of profiles.
FORMULAS: tuple[Formula, ...] = (
    Formula(
        "i_am_chatgpt", "self_identification", _I + r" ChatGPT\b|\bmy name is ChatGPT", "openai"
    ),
    Formula("i_am_gpt", "self_identification", _I + r" (?:an? )?GPT-?[34]?\b", "openai"),
    Formula(
        "i_am_claude", "self_identification", _I + r" Claude\b|\bmy name is Claude", "anthropic"
    ),
    Formula("i_am_gemini", "self_identification", _I + r" (?:Gemini|Bard|PaLM)\b", "google"),
    Formula("i_am_llama", "self_identification", _I + r" (?:LLaMA|Llama)\b", "meta"),
    Formula("i_am_qwen", "self_identification", _I + r" (?:Qwen|Tongyi)\b|我是通义千问", "alibaba"),
    Formula(
        "i_am_ai_assistant",
        "self_identification",
        _I + r" (?:just |only |simply )?an? (?:AI|artificial intelligence)(?: language)? "
        r"(?:assistant|model|chatbot)\b",
    ),
    Formula(
        "i_am_language_model",
        "self_identification",
        _I + r" (?:just |only |simply )?an? (?:AI |large |computer )*language model\b",
    ),
    Formula(
        "as_an_ai",
        "self_identification",
        r"\b[Aa]s an? (?:AI|artificial intelligence)(?: language)? (?:model|assistant)\b",
    ),
    Formula(
        "as_a_language_model", "self_identification", r"\b[Aa]s an? (?:large )?language model\b"
    ),
    Formula("just_an_ai", "self_identification", _I + r" just an AI\b"),
    Formula("by_openai", "maker", _BY + r" OpenAI\b", "openai"),
    Formula("by_anthropic", "maker", _BY + r" Anthropic\b", "anthropic"),
    Formula("by_google", "maker", _BY + r" Google\b", "google"),
    Formula("by_meta", "maker", _BY + r" Meta\b", "meta"),
    Formula("names_openai", "maker", r"\bOpenAI\b", "openai"),
    Formula("names_anthropic", "maker", r"\bAnthropic\b", "anthropic"),
    Formula(
        "helpful_harmless_honest", "policy", r"\bhelpful,? harmless,? and honest\b", "anthropic"
    ),
    Formula("socially_unbiased", "policy", r"\bsocially unbiased and positive\b", "meta"),
    Formula("within_my_programming", "policy", r"\b(?:within|against) my programming\b"),
    Formula(
        "against_guidelines",
        "policy",
        r"\b(?:against|violates?|goes against) (?:my|our|the) (?:programming|polic(?:y|ies)|"
        r"guidelines|content policy|ethical guidelines|principles)\b",
    ),
    Formula("ethical_guidelines", "policy", r"\bethical (?:guidelines|standards|principles)\b"),
    Formula(
        "not_appropriate",
        "policy",
        r"\b(?:it is|it's|it would be|would not be) (?:not )?"
        r"(?:appropriate|inappropriate)\b",
    ),
    Formula("sorry_but", "refusal", _I + r" sorry,? but\b"),
    Formula("apologize_but", "refusal", r"\bI apologi[sz]e,? but\b"),
    Formula("apologize_confusion", "refusal", r"\bI apologi[sz]e for (?:any|the) confusion\b"),
    Formula(
        "cannot_fulfill",
        "refusal",
        r"\bI (?:cannot|can't|can not) (?:fulfill|comply with|complete) (?:this|that|your)\b",
    ),
    Formula("cannot_help_with", "refusal", r"\bI (?:cannot|can't) (?:help|assist) (?:you )?with\b"),
    Formula("not_able_to", "refusal", _I + r" (?:not able|unable) to\b"),
    Formula("not_comfortable", "refusal", r"\bI (?:do not|don't) feel comfortable\b"),
    Formula(
        "no_personal",
        "disclaimer",
        r"\bI (?:do not|don't) have (?:personal |the ability to |a physical |feelings|emotions|"
        r"opinions|beliefs|preferences|personal)",
    ),
    Formula(
        "no_real_time",
        "disclaimer",
        r"\b(?:do not|don't|cannot|can't) (?:have )?(?:access to )?(?:real-time|current|up-to-date|"
        r"live) (?:information|data|events)|\bbrowse the (?:internet|web)\b",
    ),
    Formula(
        "consult_professional",
        "disclaimer",
        r"\bconsult (?:with )?(?:a|an|your) (?:qualified |licensed |medical |legal |healthcare )*"
        r"(?:professional|doctor|physician|lawyer|attorney|expert)\b",
    ),
    Formula("knowledge_cutoff", "cutoff", r"\bknowledge cut-?off\b"),
    Formula(
        "as_of_my_last",
        "cutoff",
        r"\bas of my (?:last|latest|most recent) (?:update|training|knowledge)",
    ),
    Formula(
        "training_data",
        "cutoff",
        r"\bmy (?:training data|training|knowledge)(?: only)? (?:goes up to|is current|extends|"
        r"cuts off|is limited)|\bin my training data\b",
    ),
    Formula(
        "cutoff_month",
        "cutoff",
        r"\b(?:as of|up to|until|in) (?:January|February|March|April|May|June|July|August|"
        r"September|October|November|December) 20(?:19|2\d)\b",
    ),
    # other languages (the multilingual probe set elicits them)
    Formula(
        "zh_as_an_ai",
        "self_identification",
        r"作为一(?:个|名)(?:人工智能|AI)(?:语言模型|助手|模型)?",
    ),
    Formula("zh_i_am", "self_identification", r"我是(?:一个)?(?:ChatGPT|Claude|人工智能|AI)"),
    Formula(
        "fr_as_an_ai",
        "self_identification",
        r"\b[Ee]n tant qu(?:'|’)(?:IA|intelligence artificielle|assistant|mod[eè]le de langage)",
    ),
    Formula(
        "es_as_an_ai",
        "self_identification",
        r"\b[Cc]omo (?:un )?(?:modelo de lenguaje|IA|inteligencia artificial|asistente de IA)\b",
    ),
    Formula(
        "de_as_an_ai",
        "self_identification",
        r"\b[Aa]ls (?:eine? )?(?:KI|künstliche Intelligenz|Sprachmodell|KI-Assistent)\b",
    ),
    Formula(
        "xx_by_maker",
        "maker",
        r"\b(?:entwickelt von|trainiert von|créé par|développé par|entraîné par|desarrollado por|"
        r"creado por|entrenado por)\s+(?:OpenAI|Anthropic|Google|Meta)\b|由(?:OpenAI|Anthropic)",
    ),
)

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_AI = ("an ai", "a ai", "an artificial", "a artificial")
#: Per formula, lower-cased literals of which every match contains at least one (a prefilter).
KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "i_am_chatgpt": ("chatgpt",),
    "i_am_gpt": ("gpt",),
    "i_am_claude": ("claude",),
    "i_am_gemini": ("gemini", "bard", "palm"),
    "i_am_llama": ("llama",),
    "i_am_qwen": ("qwen", "tongyi", "通义千问"),
    "i_am_ai_assistant": _AI,
    "i_am_language_model": ("language model",),
    "as_an_ai": _AI,
    "as_a_language_model": ("language model",),
    "just_an_ai": ("just an ai",),
    "by_openai": ("openai",),
    "by_anthropic": ("anthropic",),
    "by_google": ("google",),
    "by_meta": ("meta",),
    "names_openai": ("openai",),
    "names_anthropic": ("anthropic",),
    "helpful_harmless_honest": ("harmless",),
    "socially_unbiased": ("socially unbiased",),
    "within_my_programming": ("my programming",),
    "against_guidelines": ("programming", "polic", "guidelines", "principles"),
    "ethical_guidelines": ("ethical",),
    "not_appropriate": ("appropriate",),
    "sorry_but": ("sorry",),
    "apologize_but": ("apologi",),
    "apologize_confusion": ("apologi",),
    "cannot_fulfill": ("fulfill", "comply", "complete"),
    "cannot_help_with": ("help", "assist"),
    "not_able_to": ("able to",),
    "not_comfortable": ("comfortable",),
    "no_personal": ("have",),
    "no_real_time": ("real-time", "current", "up-to-date", "live", "browse"),
    "consult_professional": ("consult",),
    "knowledge_cutoff": ("cut",),
    "as_of_my_last": ("as of my",),
    "training_data": ("training", "knowledge"),
    "cutoff_month": _MONTHS,
    "zh_as_an_ai": ("作为一",),
    "zh_i_am": ("我是",),
    "fr_as_an_ai": ("en tant qu",),
    "es_as_an_ai": ("como",),
    "de_as_an_ai": ("als",),
    "xx_by_maker": ("von", "par", "por", "由"),
}

_COMPILED = tuple(
    re.compile(f.pattern, 0 if f.category == "maker" and f.name.startswith("names_") else re.I)
    for f in FORMULAS
)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


@dataclass(frozen=True)
class IdentityProfile:
    """Which formulas each answer of one model contains.

    Attributes:
        name: the model's name.
        prompt_ids: the probes answered (rows of ``hits``).
        hits: boolean (prompts x formulas) matrix.
        texts: the answers (to show matching sentences).
    """

    name: str
    prompt_ids: tuple[int, ...]
    hits: npt.NDArray[np.bool_]
    texts: tuple[str, ...]

    def subset(self, prompt_ids: Sequence[int]) -> IdentityProfile:
        """The profile restricted to ``prompt_ids`` (each must be present), in that order."""
        index = {pid: i for i, pid in enumerate(self.prompt_ids)}
        rows = [index[pid] for pid in prompt_ids]
        return IdentityProfile(
            name=self.name,
            prompt_ids=tuple(prompt_ids),
            hits=self.hits[rows],
            texts=tuple(self.texts[i] for i in rows),
        )

    def counts(self) -> npt.NDArray[np.int64]:
        """Answers containing each formula."""
        out: npt.NDArray[np.int64] = self.hits.sum(axis=0).astype(np.int64)
        return out

    def sentences(self, formulas: Sequence[int], *, limit: int = 8) -> list[IdentityMatch]:
        """Up to ``limit`` sentences matching ``formulas`` (column indices), one per answer."""
        out: list[IdentityMatch] = []
        for row in np.flatnonzero(self.hits[:, list(formulas)].any(axis=1)) if formulas else []:
            text = self.texts[row]
            for j in formulas:
                m = _COMPILED[j].search(text)
                if m is None:
                    continue
                out.append(
                    IdentityMatch(
                        prompt_id=self.prompt_ids[row],
                        formula=FORMULAS[j].name,
                        sentence=_sentence_around(text, m.start(), m.end()),
                    )
                )
                break
            if len(out) >= limit:
                break
        return out


@dataclass(frozen=True)
class IdentityMatch:
    """One sentence of an answer that contains an identity formula."""

    prompt_id: int
    formula: str
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"prompt_id": self.prompt_id, "formula": self.formula, "sentence": self.sentence}


def _sentence_around(text: str, start: int, end: int, *, max_chars: int = 300) -> str:
    lo = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        lo = m.end()
    nxt = _SENTENCE_END.search(text, end)
    hi = nxt.start() if nxt else len(text)
    sentence = text[lo:hi].strip()
    if len(sentence) > max_chars:
        centre = (start + end) // 2 - lo
        a = max(0, centre - max_chars // 2)
        sentence = "…" + sentence[a : a + max_chars].strip() + "…"
    return sentence


def identity_profile(outputs: ModelOutputs) -> IdentityProfile:
    """Find every formula of :data:`FORMULAS` in each of the model's answers.

    A formula's regular expression only runs on the answers that contain one of its
    :data:`KEYWORDS` (lower-cased literals every match must contain): most answers contain none,
    and substring tests cost a fraction of a regular-expression scan.
    """
    hits = np.zeros((len(outputs.texts), len(FORMULAS)), dtype=bool)
    lowered = [t.lower() for t in outputs.texts]
    for j, (formula, rx) in enumerate(zip(FORMULAS, _COMPILED, strict=True)):
        keys = KEYWORDS[formula.name]
        for i, low in enumerate(lowered):
            if any(k in low for k in keys) and rx.search(outputs.texts[i]):
                hits[i, j] = True
    return IdentityProfile(
        name=outputs.name, prompt_ids=outputs.prompt_ids, hits=hits, texts=outputs.texts
    )


#: A signature formula is used by its reference at least this many times as often as by any
#: null model (counts + 1): a formula several unrelated providers share ("as an AI language
#: model": ChatGPT, Claude 2.1, DeepSeek, Qwen, Cohere) says nothing about *which* one taught.
SPECIFICITY = 3.0


def signature_formulas(
    reference: npt.NDArray[np.int64],
    null: Sequence[npt.NDArray[np.int64]],
    *,
    min_count: int = 3,
    specificity: float = SPECIFICITY,
) -> list[int]:
    """Formulas the reference uses in ``>= min_count`` answers and ``specificity`` times as often
    as every null model (``(count + 1) >= specificity * (null count + 1)``)."""
    if not null:
        return [int(j) for j in np.flatnonzero(reference >= min_count)]
    ceiling = np.max(np.stack(null), axis=0)
    keep = (reference >= min_count) & (reference + 1 >= specificity * (ceiling + 1))
    return [int(j) for j in np.flatnonzero(keep)]


def _fisher_greater(k_s: int, n_s: int, k_u: int, n_u: int) -> float:
    """One-sided Fisher exact p-value that the suspect's rate exceeds u's (hypergeometric tail)."""
    if k_s == 0:
        return 1.0
    total, drawn = n_s + n_u, k_s + k_u
    return float(_st.hypergeom.sf(k_s - 1, total, drawn, n_s))


@dataclass(frozen=True)
class IdentityTest:
    """The identity test of a suspect against one reference.

    Attributes:
        reference: the reference tested.
        p_value: the largest one-sided Fisher p-value over the null models (1.0 when the
            reference has no signature formula).
        formulas: the reference's signature formulas.
        suspect_count: suspect answers containing any of them; ``n_prompts`` answers in all.
        reference_count: the reference's own count.
        null_max_count: the largest count among the null models, and ``null_max_model`` its name.
        null_models: how many null models.
    """

    reference: str
    p_value: float
    formulas: tuple[str, ...]
    suspect_count: int
    reference_count: int
    null_max_count: int
    null_max_model: str | None
    null_models: int
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "reference": self.reference,
            "p_value": self.p_value,
            "formulas": list(self.formulas),
            "suspect_count": self.suspect_count,
            "reference_count": self.reference_count,
            "null_max_count": self.null_max_count,
            "null_max_model": self.null_max_model,
            "null_models": self.null_models,
            "n_prompts": self.n_prompts,
        }


def identity_test(
    suspect: IdentityProfile,
    reference: IdentityProfile,
    null: Sequence[IdentityProfile],
    *,
    min_count: int = 3,
    selection: Sequence[IdentityProfile] | None = None,
) -> IdentityTest:
    """Test the suspect against ``reference``'s signature formulas (see the module docstring).

    ``selection`` (default ``null``) are the models the signature formulas must be specific
    against; the per-teacher test passes every reference of another provider there, and only
    those that cannot have learned from the teacher as ``null``: a formula other providers'
    models use (whatever they learned from) is no evidence of *this* teacher.
    Every profile must cover the same prompts in the same order.
    """
    n = len(suspect.prompt_ids)
    ref_counts = reference.counts()
    chosen_against = null if selection is None else selection
    sig = signature_formulas(ref_counts, [u.counts() for u in chosen_against], min_count=min_count)
    if not sig or not null:
        return IdentityTest(
            reference=reference.name,
            p_value=1.0,
            formulas=tuple(FORMULAS[j].name for j in sig),
            suspect_count=0,
            reference_count=0,
            null_max_count=0,
            null_max_model=None,
            null_models=len(null),
            n_prompts=n,
        )

    def any_count(p: IdentityProfile) -> int:
        return int(p.hits[:, sig].any(axis=1).sum())

    k_s = any_count(suspect)
    k_null = [any_count(u) for u in null]
    p = max(
        _fisher_greater(k_s, n, k_u, len(u.prompt_ids)) for k_u, u in zip(k_null, null, strict=True)
    )
    worst = int(np.argmax(k_null))
    return IdentityTest(
        reference=reference.name,
        p_value=p,
        formulas=tuple(FORMULAS[j].name for j in sig),
        suspect_count=k_s,
        reference_count=any_count(reference),
        null_max_count=k_null[worst],
        null_max_model=null[worst].name,
        null_models=len(null),
        n_prompts=n,
    )


def formula_indices(names: Sequence[str]) -> list[int]:
    """Column indices of the named formulas."""
    index: Mapping[str, int] = {f.name: j for j, f in enumerate(FORMULAS)}
    return [index[n] for n in names]
