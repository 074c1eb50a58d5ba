"""The verifier's fast path for the common, canonical shape of signed requests.

Almost every request a verifier sees carries one ``Signature-Input`` member and one ``Signature``
member in the canonical RFC 8941 serialisation that signers (ours and
``http-message-signatures``) produce::

    sig1=("@method" "@authority" "@path" "content-digest");created=1;expires=2;nonce="n";keyid="k"
    sig1=:<base64>:

For such a value, parsing then re-serialising the inner list gives back the very same text, so the
member text after ``label=`` *is* the ``@signature-params`` line of the signature base, and the
component list (the part in parentheses) repeats from request to request, so what it covers and
how to extract each component can be compiled once and cached.

:func:`parse_canonical` recognises only that canonical shape, with a strict regular expression:
integers without leading zeros (and not ``-0``), strings without escapes, components without
parameters, no whitespace around the value, one member in each field. Whenever it is unsure
(anything else, a duplicated parameter, a metadata parameter of the wrong type, limits exceeded,
invalid base64) it returns None and the caller uses the full parser
(:func:`~distillguard.passport._signatures.parse_signatures`), which then accepts or rejects with
its usual message. Likewise :meth:`Shape.base` returns None when a component cannot be extracted
the easy way, and the caller builds the base with
:func:`~distillguard.passport._signatures.signature_base`. The fast path never accepts what the
full path rejects and produces the same signature base byte for byte; property tests check both
(``tests/unit/passport/test_fastpath.py``).

:func:`digest_matches` is the same idea for a ``Content-Digest`` holding exactly one sha-256
member.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from distillguard.errors import StructuredFieldError
from distillguard.passport._sfv import InnerList, Item, Params, parse_dictionary, serialize_item
from distillguard.passport._signatures import (
    SIGNATURE_LIMITS,
    HttpRequest,
    ParsedSignature,
)

__all__ = ["Shape", "digest_matches", "parse_canonical"]

_KEY = r"[a-z*][a-z0-9_\-.*]*"
# a component: a non-empty string of lower-case token characters (no escapes, no parameters)
_COMPONENT = r"\"[@a-z0-9!#$%&'*+.^_`|~\-]+\""
_INTEGER = r"0|-?[1-9][0-9]{0,14}"
_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_PARAM_RE = re.compile(rf";({_KEY})=(?:({_INTEGER})|\"([\x20\x21\x23-\x5b\x5d-\x7e]*)\")")
_INPUT_RE = re.compile(
    rf"({_KEY})=(\((?:{_COMPONENT}(?: {_COMPONENT})*)?\)((?:;{_KEY}=(?:{_INTEGER}|{_STRING}))*))"
)
_SIGNATURE_RE = re.compile(rf"({_KEY})=:([A-Za-z0-9+/=]*):")
_DIGEST_RE = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")

_METADATA_STR = frozenset({"keyid", "nonce", "tag", "alg"})
_METADATA_INT = frozenset({"created", "expires"})

# derived components of a request that need no parameter: how to read each from HttpRequest
_METHOD, _AUTHORITY, _PATH, _QUERY, _TARGET_URI, _SCHEME, _REQUEST_TARGET, _HEADER = range(8)
_DERIVED = {
    "@method": _METHOD,
    "@authority": _AUTHORITY,
    "@path": _PATH,
    "@query": _QUERY,
    "@target-uri": _TARGET_URI,
    "@scheme": _SCHEME,
    "@request-target": _REQUEST_TARGET,
}

_SHAPE_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class Shape:
    """A compiled component list: the components, what they cover, how to extract each.

    Attributes:
        components: the component identifiers, as the full parser returns them.
        covered: names of the components covered without parameters.
        steps: ``(line prefix, kind, header name)`` per component, or None when some component
            cannot be extracted by the fast path (the full base builder then decides).
    """

    components: tuple[Item, ...]
    covered: frozenset[str]
    steps: tuple[tuple[str, int, str], ...] | None

    def base(self, request: HttpRequest, params_line: str) -> bytes | None:
        """The signature base of ``request``, or None to let the full builder decide."""
        steps = self.steps
        if steps is None:
            return None
        parts: list[str] = []
        append = parts.append
        for prefix, kind, name in steps:
            if kind == _HEADER:
                lines = request.headers.get(name)
                if lines is None:
                    return None
                value = (
                    lines[0].strip(" \t")
                    if len(lines) == 1
                    else ", ".join(v.strip(" \t") for v in lines)
                )
            elif kind == _METHOD:
                value = request.method
            elif kind == _AUTHORITY:
                value = request.authority
            elif kind == _PATH:
                value = request.path
            elif kind == _QUERY:
                value = "?" + (request.query or "")
            elif kind == _TARGET_URI:
                value = request.target_uri
            elif kind == _SCHEME:
                value = request.scheme
            else:  # _REQUEST_TARGET
                value = request.path + ("" if request.query is None else "?" + request.query)
            if not value.isascii() or "\n" in value or "\r" in value:
                return None
            append(prefix + value)
        append('"@signature-params": ' + params_line)
        return "\n".join(parts).encode("ascii")


def _compile(components_text: str) -> Shape | None:
    """Parse a canonical ``(...)`` component list once; None if the full parser disagrees."""
    try:
        member = parse_dictionary("x=" + components_text, limits=SIGNATURE_LIMITS)["x"]
    except (StructuredFieldError, KeyError):
        return None
    if not isinstance(member, InnerList) or member.params:
        return None
    items = member.items
    names: list[str] = []
    for comp in items:
        if not isinstance(comp.value, str) or comp.params:
            return None
        names.append(comp.value)
    if len(set(names)) != len(names):
        return None  # repeated: the full parser refuses it with its own message
    steps: list[tuple[str, int, str]] | None = []
    for comp, name in zip(items, names, strict=True):
        kind = _DERIVED.get(name) if name.startswith("@") else _HEADER
        if kind is None or steps is None:
            steps = None
            continue
        steps.append((serialize_item(comp) + ": ", kind, name))
    return Shape(
        components=items,
        covered=frozenset(names),
        steps=None if steps is None else tuple(steps),
    )


class _ShapeCache:
    """A bounded map from component-list text to its compiled :class:`Shape`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._shapes: dict[str, Shape | None] = {}
        self._lock = threading.Lock()

    def get(self, text: str) -> Shape | None:
        try:
            return self._shapes[text]
        except KeyError:
            pass
        shape = _compile(text)
        with self._lock:
            if len(self._shapes) >= self._size:
                self._shapes.clear()
            self._shapes[text] = shape
        return shape


_SHAPES = _ShapeCache(_SHAPE_CACHE_SIZE)


def _params(text: str) -> Params | None:
    # ``text`` matched _INPUT_RE, so it is a run of ``;name=value`` with nothing in between, and
    # findall, scanning from the start, returns exactly those in order (a string ends at its
    # first quote, an integer before the next ';').
    params: Params = {}
    for name, integer, string in _PARAM_RE.findall(text):
        if name in params:
            return None  # duplicated: the full parser refuses it
        if integer:
            if name in _METADATA_STR:
                return None
            params[name] = int(integer)
        else:
            if name in _METADATA_INT:
                return None
            params[name] = string
    if len(params) > SIGNATURE_LIMITS.max_params:
        return None
    return params


def parse_canonical(
    signature_input: Sequence[str], signature: Sequence[str]
) -> tuple[ParsedSignature, Shape, str] | None:
    """Parse header lines of the canonical single-member shape, or None for the full parser.

    Args:
        signature_input: the ``Signature-Input`` field lines.
        signature: the ``Signature`` field lines.

    Returns:
        The parsed signature (equal to what ``parse_signatures`` returns for its label), its
        compiled :class:`Shape`, and the ``@signature-params`` value (the member text after
        ``label=``); None when the fields are not in the canonical shape.
    """
    if len(signature_input) != 1 or len(signature) != 1:
        return None
    si, sg = signature_input[0], signature[0]
    limit = SIGNATURE_LIMITS.max_length
    if len(si) > limit or len(sg) > limit:
        return None
    m = _INPUT_RE.fullmatch(si)
    if m is None:
        return None
    label, params_line, params_text = m.group(1, 2, 3)
    s = _SIGNATURE_RE.fullmatch(sg)
    if s is None or s.group(1) != label:
        return None
    params = _params(params_text)
    if params is None:
        return None
    shape = _SHAPES.get(params_line[: len(params_line) - len(params_text)])
    if shape is None or len(shape.components) > SIGNATURE_LIMITS.max_inner:
        return None
    try:
        sig = base64.b64decode(s.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None
    return ParsedSignature(label, shape.components, params, sig), shape, params_line


def digest_matches(headers: Mapping[str, tuple[str, ...]], body: bytes) -> bool:
    """True when ``Content-Digest`` is exactly one sha-256 member that matches ``body``.

    False means "not decided here": the caller runs the full check, which gives the precise
    status (mismatch, malformed, unsupported).
    """
    lines = headers.get("content-digest")
    if lines is None or len(lines) != 1:
        return False
    m = _DIGEST_RE.fullmatch(lines[0].strip(" \t"))
    if m is None:
        return False
    try:
        expected = base64.b64decode(m.group(1), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hashlib.sha256(body).digest(), expected)
