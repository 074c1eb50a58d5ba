"""RFC 8941 Structured Field Values: the parts HTTP Message Signatures need.

``Signature-Input`` and ``Signature`` (RFC 9421) are Dictionaries; ``Content-Digest`` (RFC 9530)
is a Dictionary of Byte Sequences; ``Signature-Agent`` is an Item or a Dictionary. This module
parses and serialises Items, Inner Lists, Lists and Dictionaries with their Parameters.

The parser faces the network, so it is defensive:

* every failure is a :class:`~distillguard.errors.StructuredFieldError`, never another exception;
* input size, member count, inner-list length and parameter count are bounded
  (:class:`Limits`), so a hostile header cannot make it work for long or allocate much;
* duplicated dictionary keys or parameter names are refused by default (RFC 8941 lets the last
  one win, which would let an attacker make the signed and the checked value differ).

Types: Integer → ``int``, Decimal → ``float``, String → ``str``, Token → :class:`Token`,
Byte Sequence → ``bytes``, Boolean → ``bool``.

Example::

    >>> d = parse_dictionary('sig1=("@method" "@path");created=1618884473;keyid="k"')
    >>> d["sig1"].params["keyid"]
    'k'
    >>> serialize_dictionary(d)
    'sig1=("@method" "@path");created=1618884473;keyid="k"'
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from distillguard.errors import StructuredFieldError

__all__ = [
    "BareItem",
    "Dictionary",
    "InnerList",
    "Item",
    "Limits",
    "Member",
    "Params",
    "Token",
    "parse_dictionary",
    "parse_item",
    "parse_list",
    "serialize_bare_item",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
    "serialize_list",
    "serialize_params",
]


class Token(str):
    """An RFC 8941 Token (an unquoted identifier such as ``sha-256`` or ``*``)."""

    __slots__ = ()


BareItem = int | float | str | bytes | bool
"""A bare item: Integer, Decimal, String, Token (:class:`Token`), Byte Sequence, Boolean."""

Params = dict[str, BareItem]
"""Ordered parameters of an item or inner list."""


@dataclass(frozen=True, slots=True)
class Item:
    """A bare item with its parameters."""

    value: BareItem
    params: Params = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InnerList:
    """A parenthesised list of items with its own parameters."""

    items: tuple[Item, ...]
    params: Params = field(default_factory=dict)


Member = Item | InnerList
"""A member of a List or Dictionary."""

Dictionary = dict[str, Member]
"""An ordered Dictionary (keys in the order of the field)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the parser accepts; exceeding one is a parse error.

    Args:
        max_length: longest field value, in characters.
        max_members: most members of a Dictionary or List.
        max_inner: most items of one Inner List.
        max_params: most parameters on one item or inner list.
        allow_duplicates: accept a repeated dictionary key or parameter name (the last wins,
            as RFC 8941 says); refused by default.
    """

    max_length: int = 16384
    max_members: int = 64
    max_inner: int = 64
    max_params: int = 32
    allow_duplicates: bool = False


_DEFAULT_LIMITS = Limits()

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")
_OWS = re.compile(r"[ \t]*")
_SP = re.compile(r" *")
_ESCAPE = re.compile(r'\\(["\\])')
_SAFE_STRING = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_SAFE_STRING_ESC = re.compile(r"[\x20-\x7e]*")

_MAX_INT = 999_999_999_999_999


class _Parser:
    __slots__ = ("limits", "n", "pos", "text")

    def __init__(self, text: str, limits: Limits) -> None:
        if not isinstance(text, str):
            raise StructuredFieldError("structured field value must be text")
        if len(text) > limits.max_length:
            raise StructuredFieldError(
                f"structured field is {len(text)} characters long, over the limit of "
                f"{limits.max_length}"
            )
        if not text.isascii():
            raise StructuredFieldError("structured field contains non-ASCII characters")
        self.text = text.strip(" ")
        self.n = len(self.text)
        self.pos = 0
        self.limits = limits

    def fail(self, what: str) -> StructuredFieldError:
        return StructuredFieldError(f"{what} at character {self.pos}")

    def skip_ows(self) -> None:
        m = _OWS.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()

    def key(self) -> str:
        m = _KEY.match(self.text, self.pos)
        if m is None:
            raise self.fail("expected a key")
        self.pos = m.end()
        return m.group()

    def bare_item(self) -> BareItem:
        text, pos = self.text, self.pos
        if pos >= self.n:
            raise self.fail("expected an item, found the end")
        c = text[pos]
        if c == '"':
            m = _STRING.match(text, pos)
            if m is None:
                raise self.fail("malformed string")
            self.pos = m.end()
            raw = m.group(1)
            return _ESCAPE.sub(r"\1", raw) if "\\" in raw else raw
        if c == "-" or "0" <= c <= "9":
            m = _NUMBER.match(text, pos)
            if m is None:
                raise self.fail("malformed number")
            whole, frac = m.group(1), m.group(2)
            self.pos = m.end()
            if frac is None:
                if len(whole) > 15:
                    raise self.fail("integer has more than 15 digits")
                return int(m.group())
            if len(whole) > 12 or len(frac) > 3:
                raise self.fail("decimal out of range")
            return float(m.group())
        if c == ":":
            m = _BYTES.match(text, pos)
            if m is None:
                raise self.fail("malformed byte sequence")
            self.pos = m.end()
            try:
                return base64.b64decode(m.group(1), validate=True)
            except (binascii.Error, ValueError):
                raise self.fail("byte sequence is not valid base64") from None
        if c == "?":
            if pos + 1 < self.n and text[pos + 1] in "01":
                self.pos = pos + 2
                return text[pos + 1] == "1"
            raise self.fail("malformed boolean")
        m = _TOKEN.match(text, pos)
        if m is None:
            raise self.fail(f"unexpected character {c!r}")
        self.pos = m.end()
        return Token(m.group())

    def params(self) -> Params:
        params: Params = {}
        text = self.text
        while self.pos < self.n and text[self.pos] == ";":
            self.pos += 1
            m = _SP.match(text, self.pos)
            if m is not None:
                self.pos = m.end()
            name = self.key()
            value: BareItem = True
            if self.pos < self.n and text[self.pos] == "=":
                self.pos += 1
                value = self.bare_item()
            if name in params and not self.limits.allow_duplicates:
                raise self.fail(f"duplicated parameter {name!r}")
            params[name] = value
            if len(params) > self.limits.max_params:
                raise self.fail("too many parameters")
        return params

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.params())

    def item_or_inner_list(self) -> Member:
        if self.pos < self.n and self.text[self.pos] == "(":
            return self.inner_list()
        return self.item()

    def inner_list(self) -> InnerList:
        self.pos += 1  # "("
        items: list[Item] = []
        text = self.text
        while True:
            m = _SP.match(text, self.pos)
            if m is not None:
                self.pos = m.end()
            if self.pos >= self.n:
                raise self.fail("unterminated inner list")
            if text[self.pos] == ")":
                self.pos += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if len(items) > self.limits.max_inner:
                raise self.fail("inner list too long")
            if self.pos >= self.n or text[self.pos] not in " )":
                raise self.fail("expected a space or ')' in inner list")

    def members_end(self) -> bool:
        """After a member: True at the end of input, else consume the comma."""
        self.skip_ows()
        if self.pos >= self.n:
            return True
        if self.text[self.pos] != ",":
            raise self.fail("expected ',' between members")
        self.pos += 1
        self.skip_ows()
        if self.pos >= self.n:
            raise self.fail("trailing comma")
        return False

    def dictionary(self) -> Dictionary:
        out: Dictionary = {}
        if self.n == 0:
            return out
        while True:
            name = self.key()
            member: Member
            if self.pos < self.n and self.text[self.pos] == "=":
                self.pos += 1
                member = self.item_or_inner_list()
            else:
                member = Item(True, self.params())
            if name in out and not self.limits.allow_duplicates:
                raise self.fail(f"duplicated dictionary key {name!r}")
            out[name] = member
            if len(out) > self.limits.max_members:
                raise self.fail("too many dictionary members")
            if self.members_end():
                return out

    def list_(self) -> list[Member]:
        out: list[Member] = []
        if self.n == 0:
            return out
        while True:
            out.append(self.item_or_inner_list())
            if len(out) > self.limits.max_members:
                raise self.fail("too many list members")
            if self.members_end():
                return out

    def done(self) -> None:
        if self.pos != self.n:
            raise self.fail("unexpected trailing characters")


def parse_dictionary(text: str, *, limits: Limits = _DEFAULT_LIMITS) -> Dictionary:
    """Parse a Dictionary field value (such as ``Signature-Input``).

    Raises:
        StructuredFieldError: the value is not a valid Dictionary or exceeds ``limits``.
    """
    p = _Parser(text, limits)
    result = p.dictionary()
    p.done()
    return result


def parse_list(text: str, *, limits: Limits = _DEFAULT_LIMITS) -> list[Member]:
    """Parse a List field value.

    Raises:
        StructuredFieldError: the value is not a valid List or exceeds ``limits``.
    """
    p = _Parser(text, limits)
    result = p.list_()
    p.done()
    return result


def parse_item(text: str, *, limits: Limits = _DEFAULT_LIMITS) -> Item:
    """Parse an Item field value (such as a component identifier ``"@query-param";name="a"``).

    Raises:
        StructuredFieldError: the value is not a valid Item or exceeds ``limits``.
    """
    p = _Parser(text, limits)
    result = p.item()
    p.done()
    return result


# -- serialisation -------------------------------------------------------------------------------


def serialize_bare_item(value: BareItem) -> str:
    """Serialise one bare item.

    Raises:
        StructuredFieldError: the value cannot be represented (integer too large, string with
            control or non-ASCII characters, invalid token).
    """
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise StructuredFieldError(f"integer {value} out of range")
        return str(value)
    if isinstance(value, float):
        rounded = round(value, 3)
        if abs(rounded) >= 1e12:
            raise StructuredFieldError(f"decimal {value} out of range")
        text = f"{rounded:.3f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        if _TOKEN.fullmatch(value) is None:
            raise StructuredFieldError(f"invalid token {value!r}")
        return str(value)
    if isinstance(value, str):
        if _SAFE_STRING.fullmatch(value) is not None:
            return '"' + value + '"'
        if _SAFE_STRING_ESC.fullmatch(value) is None:
            raise StructuredFieldError("string contains control or non-ASCII characters")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise StructuredFieldError(f"cannot serialise {type(value).__name__}")


def serialize_params(params: Mapping[str, BareItem]) -> str:
    """Serialise parameters (``;name=value`` pairs; ``;name`` for a true Boolean).

    Raises:
        StructuredFieldError: a name is not a valid key or a value cannot be serialised.
    """
    parts: list[str] = []
    for name, value in params.items():
        if _KEY.fullmatch(name) is None:
            raise StructuredFieldError(f"invalid parameter name {name!r}")
        if value is True:
            parts.append(";" + name)
        else:
            parts.append(";" + name + "=" + serialize_bare_item(value))
    return "".join(parts)


def serialize_item(item: Item) -> str:
    """Serialise an Item with its parameters."""
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    """Serialise an Inner List: ``("a" "b");p=1``."""
    return (
        "("
        + " ".join(serialize_item(i) for i in inner.items)
        + ")"
        + serialize_params(inner.params)
    )


def _serialize_member(member: Member) -> str:
    if isinstance(member, InnerList):
        return serialize_inner_list(member)
    return serialize_item(member)


def serialize_list(members: Sequence[Member]) -> str:
    """Serialise a List."""
    return ", ".join(_serialize_member(m) for m in members)


def serialize_dictionary(members: Mapping[str, Member]) -> str:
    """Serialise a Dictionary; a true Boolean member is written as its bare key.

    Raises:
        StructuredFieldError: a key is invalid or a value cannot be serialised.
    """
    parts: list[str] = []
    for name, member in members.items():
        if _KEY.fullmatch(name) is None:
            raise StructuredFieldError(f"invalid dictionary key {name!r}")
        if isinstance(member, Item) and member.value is True:
            parts.append(name + serialize_params(member.params))
        else:
            parts.append(name + "=" + _serialize_member(member))
    return ", ".join(parts)
