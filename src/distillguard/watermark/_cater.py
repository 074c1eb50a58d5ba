"""Post-hoc lexical watermark for text from closed upstream models, after He et al., "CATER:
Intellectual Property Protection on Text Generation APIs via Conditional Watermarks" (NeurIPS 2022).

When the provider has no access to logits, it can still choose *words*: for every occurrence of a
word from a synonym group (``often`` / ``frequently``, ``method`` / ``approach`` / ``technique``),
a keyed PRF of (the previous word, the group) picks one member, and the text is rewritten to use
it. The choice is conditioned on context, so the overall word frequencies barely move (what CATER
calls conditional watermarking), while the key holder sees text that always agrees with the keyed
choice.

Left alone: fenced and inline code, URLs, e-mail addresses, numbers (not words), words written
with a capital inside a sentence or in capitals (names, acronyms), and words after ``a`` / ``an``
(the article would have to change).

Detection: each eligible occurrence (deduplicated by (previous word, group)) agrees with the keyed
choice with probability exactly ``1/k`` for a group of ``k`` members when the text was written
without the key, whatever the word frequencies (the choice is uniform and independent of the
text). The number of agreements is Poisson-binomial; the p-value is its exact tail.

The lexicon (``data/synonyms.json``, our own, shipped with the package) has single-word groups of
the same part of speech and inflection; a custom lexicon can be passed instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._base import DetectionResult
from distillguard.watermark._prf import KeyedPRF
from distillguard.watermark._stats import poisson_binomial_sf

__all__ = [
    "CaterConfig",
    "CaterWatermark",
    "EmbedResult",
    "Lexicon",
    "QualityCost",
    "quality_cost",
]

_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|\b(?:https?|ftp)://\S+|\bwww\.\S+"  # URLs
    r"|\S+@\S+\.\w+",  # e-mail addresses
    re.S,
)
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?:\n]\s*$")


class Lexicon:
    """Synonym groups: each word belongs to at most one group."""

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self.groups: tuple[tuple[str, ...], ...] = tuple(
            tuple(w.lower() for w in g) for g in groups
        )
        self.index: dict[str, int] = {}
        for gid, group in enumerate(self.groups):
            if len(group) < 2:
                raise InputError(f"synonym group {list(group)} needs at least two words")
            for word in group:
                if word in self.index:
                    raise InputError(f"word {word!r} is in two synonym groups")
                if not _WORD.fullmatch(word):
                    raise InputError(f"synonym {word!r} is not a single word")
                self.index[word] = gid

    @classmethod
    def builtin(cls) -> Lexicon:
        """The lexicon shipped with DistillGuard."""
        text = resources.files("distillguard.watermark").joinpath("data/synonyms.json").read_text()
        return cls(json.loads(text)["groups"])

    def __len__(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class CaterConfig:
    """Parameters of the lexical scheme.

    Attributes:
        min_group_size: only groups with at least this many members are used.
    """

    min_group_size: int = 2


@dataclass(frozen=True)
class EmbedResult:
    """A watermarked text and what changed.

    Attributes:
        text: the watermarked text.
        words: words in the input (protected spans excluded).
        eligible: occurrences the scheme could choose.
        changed: words actually replaced.
    """

    text: str
    words: int
    eligible: int
    changed: int

    @property
    def changed_fraction(self) -> float:
        """Replaced words over all words."""
        return self.changed / self.words if self.words else 0.0


@dataclass(frozen=True)
class _Slot:
    start: int
    end: int
    word: str
    prev: str
    gid: int
    eligible: bool


def _match_case(template: str, word: str) -> str:
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class CaterWatermark:
    """The lexical scheme under one key.

    Example::

        wm = CaterWatermark(CaterConfig(), key=keyring.watermark_key())
        marked = wm.embed(upstream_text).text
        wm.detect(marked).p_value
    """

    method = "cater-poisson-binomial"

    def __init__(
        self, config: CaterConfig, *, key: WatermarkKey, lexicon: Lexicon | None = None
    ) -> None:
        self.config = config
        self.lexicon = lexicon or Lexicon.builtin()
        self._key_id = key.kid
        self._prf = KeyedPRF(key.secret, "cater/v1")
        self._word_ids: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CaterWatermark(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """The watermark key id."""
        return self._key_id

    def _wid(self, word: str) -> int:
        found = self._word_ids.get(word)
        if found is None:
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            found = int.from_bytes(digest, "little")
            self._word_ids[word] = found
        return found

    def _choice(self, prev: str, gid: int) -> int:
        """Index of the keyed member of group ``gid`` after the word ``prev``."""
        k = len(self.lexicon.groups[gid])
        value = self._prf.window_scalar([self._wid(prev), gid + 1])
        return value % k

    def _slots(self, text: str) -> list[_Slot]:
        protected = [m.span() for m in _PROTECTED.finditer(text)]
        slots: list[_Slot] = []
        prev = ""
        pi = 0
        for m in _WORD.finditer(text):
            start, end = m.span()
            while pi < len(protected) and protected[pi][1] <= start:
                pi += 1
            if pi < len(protected) and protected[pi][0] <= start < protected[pi][1]:
                continue
            word = m.group(0)
            lower = word.lower()
            gid = self.lexicon.index.get(lower, -1)
            eligible = gid >= 0 and len(self.lexicon.groups[gid]) >= self.config.min_group_size
            if eligible:
                before = text[max(0, start - 4) : start]
                sentence_start = start == 0 or bool(_SENTENCE_END.search(before))
                if (
                    (word.isupper() and len(word) > 1)
                    or (word[0].isupper() and not sentence_start)
                    or prev in ("a", "an")
                ):
                    eligible = False
            slots.append(_Slot(start, end, word, prev, gid, eligible))
            prev = lower
        return slots

    def embed(self, text: str) -> EmbedResult:
        """Rewrite ``text`` so that every eligible word is the keyed choice for its context."""
        slots = self._slots(text)
        out: list[str] = []
        last = 0
        prev = ""
        changed = eligible = 0
        for slot in slots:
            word = slot.word
            if slot.eligible:
                eligible += 1
                group = self.lexicon.groups[slot.gid]
                chosen = group[self._choice(prev, slot.gid)]
                if chosen != word.lower():
                    word = _match_case(slot.word, chosen)
                    changed += 1
            out.append(text[last : slot.start])
            out.append(word)
            last = slot.end
            prev = word.lower()
        out.append(text[last:])
        return EmbedResult(text="".join(out), words=len(slots), eligible=eligible, changed=changed)

    def score(
        self, text: str, *, dedup: bool = True, seen: set[tuple[str, int]] | None = None
    ) -> tuple[int, list[float]]:
        """Agreements with the keyed choice and each scored occurrence's null probability.

        ``seen`` (with ``dedup``) carries the deduplication over several texts: pass the same set
        for every record of a dataset to score each (previous word, group) context once in all.
        """
        agree = 0
        probs: list[float] = []
        seen = set() if seen is None else seen
        for slot in self._slots(text):
            if not slot.eligible:
                continue
            if dedup:
                if (slot.prev, slot.gid) in seen:
                    continue
                seen.add((slot.prev, slot.gid))
            group = self.lexicon.groups[slot.gid]
            probs.append(1.0 / len(group))
            if group[self._choice(slot.prev, slot.gid)] == slot.word.lower():
                agree += 1
        return agree, probs

    def detect(self, text: str, *, dedup: bool = True) -> DetectionResult:
        """Exact Poisson-binomial test of the agreements in ``text``."""
        agree, probs = self.score(text, dedup=dedup)
        n = len(probs)
        return DetectionResult(
            method=self.method,
            key_id=self._key_id,
            statistic=float(agree),
            p_value=poisson_binomial_sf(agree, probs),
            n_scored=n,
            n_tokens=len(_WORD.findall(text)),
            n_duplicates=0,
            expected=float(np.sum(probs)) if probs else 0.0,
            details={"lexicon_groups": len(self.lexicon)},
        )


@dataclass(frozen=True)
class QualityCost:
    """How much the post-hoc watermark changed a text.

    Attributes:
        words: words in the original.
        changed: words replaced.
        unigram_delta: mean change of log2 unigram frequency per word (negative: rarer words),
            under the reference counts given (a perplexity proxy).
    """

    words: int
    changed: int
    unigram_delta: float

    @property
    def changed_fraction(self) -> float:
        """Replaced words over all words."""
        return self.changed / self.words if self.words else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "words": self.words,
            "changed": self.changed,
            "changed_fraction": self.changed_fraction,
            "unigram_delta_bits_per_word": self.unigram_delta,
        }


def quality_cost(original: str, marked: str, *, counts: dict[str, int]) -> QualityCost:
    """Compare word by word (the scheme replaces one word by one word).

    ``counts``: reference unigram counts (lower-case words), e.g. from a corpus of answers.
    """
    a = [w.lower() for w in _WORD.findall(original)]
    b = [w.lower() for w in _WORD.findall(marked)]
    if len(a) != len(b):
        raise InputError("texts differ in word count: not an output of CaterWatermark.embed")
    total = sum(counts.values()) + len(counts) + 1
    changed = 0
    delta = 0.0
    for x, y in zip(a, b, strict=True):
        if x != y:
            changed += 1
            delta += float(np.log2((counts.get(y, 0) + 1) / total)) - float(
                np.log2((counts.get(x, 0) + 1) / total)
            )
    return QualityCost(words=len(a), changed=changed, unigram_delta=delta / len(a) if a else 0.0)
