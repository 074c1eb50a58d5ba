"""Tokenizers for detection on text, and prompt / chat-template stripping.

Detection works on token ids. Text produced by a local model is best re-tokenized with that
model's own tokenizer (:class:`HFTokenizer`, a local path). For text whose tokenizer is unknown,
and for the post-hoc scheme, the built-in :class:`WordTokenizer` (lower-cased words and
punctuation, each hashed to a 31-bit id) and :class:`ByteTokenizer` (UTF-8 bytes) need nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from distillguard.errors import DependencyMissingError, InputError

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "strip_chat_template",
    "strip_prompt",
]

I64 = npt.NDArray[np.int64]
WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@runtime_checkable
class Tokenizer(Protocol):
    """Turns text into token ids."""

    @property
    def name(self) -> str:
        """A short description (``"word"``, ``"byte"``, a path)."""

    def encode(self, text: str) -> I64:
        """Token ids of ``text``."""


class ByteTokenizer:
    """UTF-8 bytes as token ids (0..255)."""

    @property
    def name(self) -> str:
        """``"byte"``."""
        return "byte"

    def encode(self, text: str) -> I64:
        """Token ids of ``text``."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


class WordTokenizer:
    """Lower-cased words and punctuation marks, each hashed (BLAKE2b) to a 31-bit id."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    @property
    def name(self) -> str:
        """``"word"``."""
        return "word"

    def word_id(self, word: str) -> int:
        """The id of one word (case-insensitive)."""
        w = word.lower()
        found = self._cache.get(w)
        if found is None:
            digest = hashlib.blake2b(w.encode("utf-8"), digest_size=4).digest()
            found = int.from_bytes(digest, "little") & 0x7FFFFFFF
            if len(self._cache) < 1_000_000:
                self._cache[w] = found
        return found

    def words(self, text: str) -> list[str]:
        """The words and punctuation marks of ``text``, in order."""
        return WORD_RE.findall(text)

    def encode(self, text: str) -> I64:
        """Token ids of ``text``."""
        return np.fromiter((self.word_id(w) for w in WORD_RE.findall(text)), dtype=np.int64)


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local folder (never downloaded)."""

    def __init__(self, path: Path) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - the hf extra is installed in dev
            raise DependencyMissingError(
                "a model tokenizer needs the 'transformers' package",
                hint="pip install 'distillguard[hf]', or use --tokenizer word",
            ) from exc
        if not Path(path).is_dir():
            raise InputError(f"tokenizer folder {path} does not exist")
        self._path = Path(path)
        self._tok: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    @property
    def name(self) -> str:
        """The folder it was loaded from."""
        return str(self._path)

    def encode(self, text: str) -> I64:
        """Token ids of ``text`` (no special tokens added)."""
        ids = self._tok.encode(text, add_special_tokens=False)
        return np.asarray(ids, dtype=np.int64)


def load_tokenizer(spec: str) -> Tokenizer:
    """``"word"``, ``"byte"``, or the path of a local Hugging Face tokenizer folder."""
    if spec == "word":
        return WordTokenizer()
    if spec == "byte":
        return ByteTokenizer()
    return HFTokenizer(Path(spec))


_TEMPLATES = (
    # ChatML (Qwen, OpenHermes, ...)
    re.compile(r"<\|im_start\|>assistant\s*\n(.*?)(?:<\|im_end\|>|\Z)", re.S),
    # Llama 3
    re.compile(
        r"<\|start_header_id\|>assistant<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|\Z)", re.S
    ),
    # Llama 2 / Mistral [INST] ... [/INST] answer
    re.compile(r"\[/INST\]\s*(.*?)(?:</s>|\[INST\]|\Z)", re.S),
    # Plain "Assistant:" transcripts
    re.compile(
        r"(?:^|\n)(?:Assistant|ASSISTANT|### Response):\s*(.*?)"
        r"(?=\n(?:User|USER|Human|### Instruction):|\Z)",
        re.S,
    ),
)


def strip_chat_template(text: str) -> str:
    """The assistant turns of a chat transcript, joined by blank lines.

    Recognises ChatML, Llama 3 headers, ``[INST]`` blocks and ``Assistant:`` transcripts; text in
    none of these forms is returned unchanged. Prompts (user and system turns) must not be scored:
    they were not generated with the watermark.
    """
    for pattern in _TEMPLATES:
        turns = [m.strip() for m in pattern.findall(text)]
        if turns:
            return "\n\n".join(turns)
    return text


def strip_prompt(text: str, prompt: str) -> str:
    """``text`` without a leading copy of ``prompt`` (as completion endpoints often echo it)."""
    if prompt and text.startswith(prompt):
        return text[len(prompt) :]
    return text
