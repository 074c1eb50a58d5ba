"""Redaction of personal data and secrets in text: reports, console views and logs.

A :class:`Redactor` finds e-mail addresses, phone numbers (international and national formats),
payment card numbers (Luhn-checked), IBANs (mod-97 checked), API keys and tokens (``sk-...``,
AWS access key ids, GitHub and Slack tokens, Google API keys, JWTs, bearer tokens, PEM private
keys, credentials in URLs, high-entropy values of ``key=``/``token=``/``password=``
assignments) and, when enabled, IPv4/IPv6 addresses, and replaces each with a label such as
``[EMAIL]``. All rules are compiled into one regular expression and the text is scanned once;
the rare candidates are confirmed by a checksum or heuristic so that version numbers, dates,
order ids, hashes and UUIDs stay as they are.

Example::

    >>> from distillguard.privacy import Redactor
    >>> Redactor.default().redact("mail bob@example.org or call +44 20 7946 0958")
    'mail [EMAIL] or call [PHONE]'

:class:`RedactingFilter` applies a redactor to every :class:`logging.LogRecord` that passes
through a handler (see :func:`install_log_redaction`).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from distillguard.errors import ConfigurationError
from distillguard.privacy import _checks

if TYPE_CHECKING:
    from distillguard.config import RedactionSettings

__all__ = [
    "DEFAULT_KINDS",
    "Finding",
    "PiiKind",
    "RedactingFilter",
    "RedactionResult",
    "RedactionRule",
    "Redactor",
    "install_log_redaction",
]

logger = logging.getLogger(__name__)


class PiiKind(StrEnum):
    """The kinds of sensitive data the built-in rules find."""

    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    API_KEY = "api_key"
    AWS_KEY = "aws_key"
    GITHUB_TOKEN = "github_token"
    JWT = "jwt"
    BEARER = "bearer"
    PRIVATE_KEY = "private_key"
    SECRET = "secret"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


#: Kinds enabled by :meth:`Redactor.default`: everything but IP addresses, which are metadata
#: DistillGuard keeps on purpose (enable them for reports that leave the organisation).
DEFAULT_KINDS: Final[frozenset[str]] = frozenset(PiiKind) - {PiiKind.IPV4, PiiKind.IPV6}

Validator = Callable[[re.Match[str]], bool]


@dataclass(frozen=True)
class RedactionRule:
    """One pattern: what it is called, what it replaces and how a candidate is confirmed.

    Args:
        kind: the rule's kind (a :class:`PiiKind` value, or a name of your own).
        label: the replacement label, upper case (``EMAIL`` gives ``[EMAIL]``).
        pattern: a Python regular expression. If it has a group named ``value``, only that group
            is replaced (``password=[SECRET]``), otherwise the whole match.
        validator: called with the match of this rule alone; ``False`` rejects the candidate.
        anchor: a literal that every match contains within 64 characters of its start and with
            no whitespace before it (``@`` for e-mail addresses); the scanner then jumps from one
            occurrence to the next instead of trying the pattern at every position.
    """

    kind: str
    label: str
    pattern: str
    validator: Validator | None = field(default=None, compare=False)
    anchor: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,31}", self.label):
            raise ConfigurationError(
                f"redaction label {self.label!r} must be 1-32 upper-case letters, digits or '_'",
                hint='e.g. label = "EMPLOYEE_ID"',
            )
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigurationError(
                f"redaction pattern for {self.label} is not a valid regular expression: {exc}"
            ) from None

    @classmethod
    def custom(cls, *, label: str, pattern: str) -> RedactionRule:
        """A user rule from configuration: its kind is the label in lower case."""
        return cls(kind=label.lower(), label=label, pattern=pattern)


@dataclass(frozen=True, slots=True)
class Finding:
    """Where one item was found (never the item itself)."""

    kind: str
    label: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """The redacted text and what was replaced (offsets refer to the original text)."""

    text: str
    findings: tuple[Finding, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Number of findings per kind."""
        return dict(Counter(f.kind for f in self.findings))


# ---------------------------------------------------------------------------------------------
# Built-in rules. Boundaries are explicit look-arounds so that a replacement label such as
# "[EMAIL]" can never start or complete a new match (redaction is idempotent).

_END_NUM = r"(?![\w\[]|[.\-/]\d)"


def _num_start(head: str) -> str:
    """``head`` (fixed width), not continuing a word, a number or a group of numbers.

    The characters are matched *before* the look-behinds so that the regex engine rejects most
    positions with a few character tests (assertions first would run at every position).
    """
    return rf"{head}(?<![\w.+\-/\]]{head})(?<![\d\]][ .-]{head})"


_CARD_START: Final = _num_start(r"\d{4}")
_PLUS_START: Final = _num_start(r"\+\d")
_PAREN_START: Final = _num_start(r"\([2-9]\d\d\)")
_NANP_START: Final = _num_start(r"[2-9]\d\d[ .-]")
_ZERO_START: Final = _num_start("0[1-9]")

_SECRET_KEY_WORDS = (
    r"[astpc](?:(?<=a)(?:pi[_-]?key|pikey|ccess[_-]?key|uth[_-]?key)"
    r"|(?<=s)(?:ecret|igning[_-]?key)|(?<=t)oken"
    r"|(?<=p)(?:(?<![a-z]p)ass(?:w(?:or)?d|phrase)?(?![a-z])|wd|rivate[_-]?key)"
    r"|(?<=c)redentials?)"
)
_PASSWORD_WORDS = re.compile(r"(?i)pass|pwd")
_CODE_LIKE = re.compile(r"[(){}\[\]<>]|^\$")


def _phone_ok(m: re.Match[str]) -> bool:
    return _checks.phone_ok(m.group(0))


_CARD_GROUPINGS: Final = {
    (4, 4, 4, 4),
    (4, 4, 4, 4, 3),
    (4, 6, 5),
    (4, 6, 4),
    (4, 4, 4, 1),
    (4, 4, 4, 2),
    (4, 4, 4, 3),
}


def _card_ok(m: re.Match[str]) -> bool:
    text = m.group(0)
    seps = {ch for ch in text if not ch.isdigit()}
    if len(seps) > 1:
        return False
    if seps:  # printed cards group as 4-4-4-4(-3), 4-6-5 (Amex) or 4-6-4 (Diners)
        groups = tuple(len(g) for g in re.split(r"[ -]", text))
        if groups not in _CARD_GROUPINGS:
            return False
    return _checks.luhn_ok(text)


def _iban_ok(m: re.Match[str]) -> bool:
    return _checks.iban_ok(m.group(0))


def _random_token_ok(m: re.Match[str]) -> bool:
    value = m.group(0)
    return any(ch.isdigit() for ch in value) and _checks.shannon_entropy(value) >= 3.0


def _url_token_ok(m: re.Match[str]) -> bool:
    value = m.group("value")
    return any(ch.isdigit() for ch in value) and _checks.shannon_entropy(value) >= 3.0


def _bearer_ok(m: re.Match[str]) -> bool:
    return _checks.secret_value_ok(m.group("value"), password_like=False)


def _assignment_ok(m: re.Match[str]) -> bool:
    value = m.group("value")
    password_like = bool(_PASSWORD_WORDS.search(m.group("key")))
    if password_like and (
        _CODE_LIKE.search(value) or value.replace("_", "").replace(".", "").isalpha()
    ):
        return False
    return _checks.secret_value_ok(value, password_like=password_like)


def _ipv4_ok(m: re.Match[str]) -> bool:
    return _checks.ipv4_ok(m.group(0))


def _ipv6_ok(m: re.Match[str]) -> bool:
    return _checks.ipv6_ok(m.group(0))


_BUILTIN_RULES: Final[tuple[RedactionRule, ...]] = (
    RedactionRule(
        PiiKind.PRIVATE_KEY,
        "PRIVATE_KEY",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,16384}?"
        r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    ),
    RedactionRule(
        PiiKind.JWT,
        "JWT",
        r"e(?<![\w\]-]e)yJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}(?![\w\[-])",
    ),
    RedactionRule(
        PiiKind.API_KEY,
        "API_KEY",
        r"(?:[sr](?<![\w\]-][sr])k[-_](?:(?:ant|proj|live|test|svcacct|admin)[-_])?"
        r"[A-Za-z0-9_-]{20,}|x(?<![\w\]-]x)ox[abposr]-[A-Za-z0-9-]{10,}"
        r"|A(?<![\w\]-]A)Iza[0-9A-Za-z_-]{35})(?![\w\[-])",
        _random_token_ok,
    ),
    RedactionRule(
        PiiKind.AWS_KEY,
        "AWS_KEY",
        r"A(?<![A-Za-z0-9\]]A)(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|NPA|NVA|IPA)[A-Z0-9]{16}"
        r"(?![A-Za-z0-9\[])",
    ),
    RedactionRule(
        PiiKind.GITHUB_TOKEN,
        "GITHUB_TOKEN",
        r"g(?<![\w\]-]g)(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})(?![\w\[-])",
    ),
    RedactionRule(
        PiiKind.BEARER,
        "TOKEN",
        r"[Bb](?<!\w[Bb])(?i:earer)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{16,})",
        _bearer_ok,
    ),
    RedactionRule(
        PiiKind.SECRET,
        "SECRET",
        r"://[^\s:/@\[\]]{1,64}:(?P<value>[^\s:/@\[\]]{1,128})@(?=[A-Za-z0-9])",
    ),
    RedactionRule(
        PiiKind.SECRET,
        "SECRET",
        r"://(?P<value>[A-Za-z0-9_-]{8,128})@(?=[A-Za-z0-9])",
        _url_token_ok,
    ),
    RedactionRule(
        PiiKind.SECRET,
        "SECRET",
        rf"(?i:(?P<key>(?:{_SECRET_KEY_WORDS})[A-Za-z0-9_.-]{{0,40}}))"
        r"[\"']?[ \t]*(?::=|=>|[:=])[ \t]*[\"']?(?P<value>[^\s\"'`,;\[\]]{6,512})",
        _assignment_ok,
    ),
    RedactionRule(
        PiiKind.EMAIL,
        "EMAIL",
        r"[A-Za-z0-9](?<![\w.%+\-\]][A-Za-z0-9])[A-Za-z0-9._%+'-]{0,63}+@"
        r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![\w\[-])",
        anchor="@",
    ),
    RedactionRule(
        PiiKind.IBAN,
        "IBAN",
        r"[A-Z](?<![\w\]][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w\[])",
        _iban_ok,
    ),
    RedactionRule(
        PiiKind.CARD,
        "CARD",
        rf"{_CARD_START}(?:[ -]?\d){{9,15}}{_END_NUM}",
        _card_ok,
    ),
    RedactionRule(
        PiiKind.PHONE,
        "PHONE",
        rf"{_PLUS_START}\d*+(?:[ .-]?\(\d{{1,4}}\))?(?:[ .-]\d++){{0,6}}{_END_NUM}",
        _phone_ok,
    ),
    RedactionRule(
        PiiKind.PHONE,
        "PHONE",
        rf"(?:{_PAREN_START}[ .-]?|{_NANP_START})[2-9]\d\d[ .-]\d{{4}}"
        rf"{_END_NUM}",
        _phone_ok,
    ),
    RedactionRule(
        PiiKind.PHONE,
        "PHONE",
        rf"{_ZERO_START}\d*+(?:[ .-]\d++){{0,4}}{_END_NUM}",
        _phone_ok,
    ),
    RedactionRule(
        PiiKind.IPV6,
        "IP",
        r"(?<![\w:.\]])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
        r"(?![\w:\[])",
        _ipv6_ok,
    ),
    RedactionRule(
        PiiKind.IPV4,
        "IP",
        r"\d(?<![\w.\]]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w\[]|\.\d)",
        _ipv4_ok,
    ),
)


_ANCHOR_REACH: Final = 64
_NONSPACE_RUN: Final = re.compile(r"\S+\Z")


@dataclass(frozen=True)
class _Compiled:
    rule: RedactionRule
    regex: re.Pattern[str]
    has_value: bool

    def next_match(self, text: str, pos: int) -> re.Match[str] | None:
        """The first non-empty, validated match starting at or after ``pos``."""
        validator = self.rule.validator
        anchor = self.rule.anchor
        if anchor is not None:
            return self._next_anchored(text, pos, anchor)
        search = self.regex.search
        while True:
            m = search(text, pos)
            if m is None:
                return None
            if m.end() > m.start() and (validator is None or validator(m)):
                return m
            pos = m.start() + 1  # a candidate that failed its check: look again just after it

    def _next_anchored(self, text: str, pos: int, anchor: str) -> re.Match[str] | None:
        match = self.regex.match
        validator = self.rule.validator
        tried = pos  # starts below this were tried (or are out of bounds)
        at = text.find(anchor, pos)
        while at >= 0:
            # a match starts in the run of non-space characters just before its anchor
            run = _NONSPACE_RUN.search(text, max(tried, at - _ANCHOR_REACH), at)
            first = at if run is None else run.start()
            for start in range(first, at + 1):
                m = match(text, start)
                if m is not None and m.end() > start and (validator is None or validator(m)):
                    return m
            tried = at + 1
            at = text.find(anchor, at + 1)
        return None


class Redactor:
    """Finds and replaces personal data and secrets in text, in one left-to-right pass.

    Each rule is a separately compiled regular expression that starts with a literal or a
    character class, so that the regex engine skips to its candidates at C speed; the candidates
    of all rules are merged in position order (ties go to the earlier rule: custom rules, then
    the built-in order) and the text is rebuilt once. A candidate that fails its check (Luhn,
    mod 97, entropy...) is dropped and the rule searches again from the next character.

    Args:
        kinds: the built-in kinds to enable (default :data:`DEFAULT_KINDS`).
        custom: extra rules; they take precedence over built-in ones at the same position.
        style: ``"label"`` replaces with ``[EMAIL]``; ``"hash"`` with ``[EMAIL:1a2b3c4d]``, a
            keyed hash that lets a reader see that two redacted items are the same without
            learning them.
        hash_key: the key of the ``"hash"`` style (default: random per redactor, so hashes are
            comparable within one report only).
    """

    def __init__(
        self,
        *,
        kinds: Iterable[str] | None = None,
        custom: Sequence[RedactionRule] = (),
        style: Literal["label", "hash"] = "label",
        hash_key: bytes | None = None,
    ) -> None:
        wanted = set(DEFAULT_KINDS if kinds is None else kinds)
        unknown = wanted - set(PiiKind)
        if unknown:
            raise ConfigurationError(
                f"unknown redaction kind(s): {', '.join(sorted(unknown))}",
                hint=f"known kinds: {', '.join(k.value for k in PiiKind)}",
            )
        if style not in ("label", "hash"):
            raise ConfigurationError(f"unknown redaction style {style!r} (use 'label' or 'hash')")
        self.kinds: frozenset[str] = frozenset(wanted)
        self.style: Literal["label", "hash"] = style
        self._hash_key = hash_key if hash_key is not None else secrets.token_bytes(32)
        rules = [*custom, *(r for r in _BUILTIN_RULES if r.kind in wanted)]
        self._rules: list[_Compiled] = []
        for rule in rules:
            regex = re.compile(rule.pattern)
            self._rules.append(
                _Compiled(rule=rule, regex=regex, has_value="value" in regex.groupindex)
            )
        self._specific = [
            c for c in self._rules if not c.has_value and c.rule.kind != PiiKind.SECRET
        ]

    def __repr__(self) -> str:
        kinds = sorted(self.kinds)
        return f"Redactor(kinds={kinds!r}, rules={len(self._rules)}, style={self.style!r})"

    @classmethod
    def default(cls) -> Redactor:
        """The built-in rules with their default kinds and ``[LABEL]`` replacements."""
        return cls()

    @classmethod
    def from_config(
        cls,
        *,
        enabled: Iterable[str] | None = None,
        disabled: Iterable[str] = (),
        custom: Mapping[str, str] | None = None,
        style: Literal["label", "hash"] = "label",
    ) -> Redactor:
        """Build from configuration values: kinds to enable/disable and ``{LABEL: pattern}``."""
        kinds = set(DEFAULT_KINDS if enabled is None else enabled) - set(disabled)
        rules = [RedactionRule.custom(label=k, pattern=v) for k, v in (custom or {}).items()]
        return cls(kinds=kinds, custom=rules, style=style)

    @classmethod
    def from_settings(cls, settings: RedactionSettings) -> Redactor:
        """The redactor of a ``[redaction]`` configuration section."""
        return cls.from_config(
            enabled=settings.kinds,
            disabled=settings.disable,
            custom=settings.custom,
            style=settings.style,
        )

    # -- scanning ------------------------------------------------------------------------------

    def scan(self, text: str) -> RedactionResult:
        """Redact ``text`` and say what was found where."""
        if not self._rules or not text:
            return RedactionResult(text=text, findings=())
        rules = self._rules
        heap: list[tuple[int, int, re.Match[str]]] = []
        for i, compiled in enumerate(rules):
            m = compiled.next_match(text, 0)
            if m is not None:
                heap.append((m.start(), i, m))
        if not heap:
            return RedactionResult(text=text, findings=())
        heapq.heapify(heap)
        out: list[str] = []
        findings: list[Finding] = []
        pos = 0  # matches must start here or later (no overlaps)
        copied = 0  # text[:copied] is already in out
        while heap:
            start, i, m = heapq.heappop(heap)
            compiled = rules[i]
            if start < pos:  # overlaps an accepted finding: this rule looks again after it
                again = compiled.next_match(text, pos)
                if again is not None:
                    heapq.heappush(heap, (again.start(), i, again))
                continue
            vstart, vend = m.span("value") if compiled.has_value else m.span()
            kind, label = compiled.rule.kind, compiled.rule.label
            if compiled.has_value:
                kind, label = self._value_kind(text, vstart, vend, kind, label)
                # the part of the match before its value (a URL's user name, a key name) is
                # not replaced, so what it holds is redacted on its own (``://sk-...:pw@``)
                for inner in self._inner_findings(text, start, vstart):
                    out.append(text[copied : inner.start])
                    out.append(self._replacement(inner.label, text[inner.start : inner.end]))
                    findings.append(inner)
                    copied = inner.end
            out.append(text[copied:vstart])
            out.append(self._replacement(label, text[vstart:vend]))
            findings.append(Finding(kind=kind, label=label, start=vstart, end=vend))
            copied = vend
            pos = m.end()
            again = compiled.next_match(text, pos)
            if again is not None:
                heapq.heappush(heap, (again.start(), i, again))
        if not findings:
            return RedactionResult(text=text, findings=())
        out.append(text[copied:])
        return RedactionResult(text="".join(out), findings=tuple(findings))

    def redact(self, text: str) -> str:
        """``text`` with every finding replaced."""
        return self.scan(text).text

    def redact_obj(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (dicts, lists, tuples); keys included."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_obj(v) for v in value]
        return value

    def _value_kind(
        self, text: str, start: int, end: int, kind: str, label: str
    ) -> tuple[str, str]:
        """A secret value that is itself a known token (``api_key=sk-...``) keeps that kind."""
        for compiled in self._specific:
            m = compiled.regex.fullmatch(text, start, end)
            if m is not None and (compiled.rule.validator is None or compiled.rule.validator(m)):
                return compiled.rule.kind, compiled.rule.label
        return kind, label

    def _inner_findings(self, text: str, start: int, end: int) -> list[Finding]:
        """Findings of the specific rules (tokens, e-mail...) in ``text[start:end]``, in order and
        without overlaps: what the kept part of a secret rule's match holds."""
        if end <= start:
            return []
        candidates: list[tuple[int, int, int]] = []
        for order, compiled in enumerate(self._specific):
            validator = compiled.rule.validator
            for m in compiled.regex.finditer(text, start, end):
                if m.end() > m.start() and (validator is None or validator(m)):
                    candidates.append((m.start(), order, m.end()))
        out: list[Finding] = []
        pos = start
        for s, order, e in sorted(candidates):
            if s >= pos:
                rule = self._specific[order].rule
                out.append(Finding(kind=rule.kind, label=rule.label, start=s, end=e))
                pos = e
        return out

    def _replacement(self, label: str, original: str) -> str:
        if self.style == "label":
            return f"[{label}]"
        digest = hmac.new(self._hash_key, original.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"[{label}:{digest[:8]}]"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and exception text) of each record.

    Attach it to handlers (filters on a logger do not see records of its children)::

        handler.addFilter(RedactingFilter(Redactor.default()))
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else Redactor.default()

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted form; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: leave it to the handler to report
            return True
        redacted = self.redactor.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        return True


def install_log_redaction(
    redactor: Redactor | None = None, *, logger_name: str | None = None
) -> RedactingFilter:
    """Add a :class:`RedactingFilter` to every handler of a logger (default: the root logger).

    Returns the filter (remove it with ``handler.removeFilter``). Handlers added later are not
    covered: call this after logging is configured.
    """
    filt = RedactingFilter(redactor)
    target = logging.getLogger(logger_name)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    logger.debug("log redaction installed on %d handler(s)", len(target.handlers))
    return filt
