"""The redaction test corpus: text with planted items marked ``⟦KIND|value⟧``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
_MARK = re.compile(r"⟦([A-Z]+)\|(.*?)⟧", re.S)

#: Which finding kinds count as a hit for a planted kind.
FAMILY = {
    "EMAIL": {"email"},
    "PHONE": {"phone"},
    "CARD": {"card"},
    "IBAN": {"iban"},
    "SECRET": {"api_key", "aws_key", "github_token", "jwt", "bearer", "private_key", "secret"},
}


@dataclass(frozen=True)
class Planted:
    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Corpus:
    text: str
    planted: tuple[Planted, ...]

    def clean_lines(self) -> list[tuple[int, int]]:
        """(start, end) of the lines that hold no planted item."""
        spans = []
        pos = 0
        for line in self.text.split("\n"):
            end = pos + len(line)
            if line.strip() and not any(p.start < end and p.end > pos for p in self.planted):
                spans.append((pos, end))
            pos = end + 1
        return spans


def load(*names: str) -> Corpus:
    """Read corpus files, strip the markers and remember where the planted items are."""
    text = "\n".join((DATA / n).read_text(encoding="utf-8") for n in names)
    out: list[str] = []
    planted: list[Planted] = []
    pos = 0
    length = 0
    for m in _MARK.finditer(text):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        value = m.group(2)
        planted.append(Planted(m.group(1), length, length + len(value), value))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(text[pos:])
    return Corpus("".join(out), tuple(planted))


ALL_FILES = ("corpus_prose_chat.txt", "corpus_code_logs.txt", "corpus_mail_tables.txt")
