"""RFC 9421 HTTP Message Signatures with Ed25519: signature bases, signing, verifying.

A signature covers an ordered list of *components* of a message: derived components
(``@method``, ``@authority``, ``@path``, ``@query``, ``@target-uri``, ``@scheme``,
``@request-target``, ``@query-param``, ``@status``) and header fields (``content-digest``,
``content-type``...). The *signature base* is one line per component, ``"name": value``, then the
``"@signature-params"`` line, which is the serialised ``Signature-Input`` member; Ed25519 signs
its bytes as they are (RFC 9421 section 3.3.6).

This module is the protocol layer: it knows nothing of passports, clocks or replay (see
:mod:`distillguard.passport._verifier`). Requests and responses are described by the small value
objects :class:`HttpRequest` and :class:`HttpResponse`, so any HTTP library can use it.

Example::

    request = HttpRequest.from_url("POST", "https://api.example/v1/chat?x=1",
                                   headers={"content-type": "application/json"})
    headers = sign_message(request, private_key=key, keyid="kid", created=now,
                           components=("@method", "@authority", "@path", "@query"))
    # headers.signature_input, headers.signature -> the two header fields
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from distillguard.errors import SignatureError, StructuredFieldError
from distillguard.passport._sfv import (
    InnerList,
    Item,
    Limits,
    Params,
    Token,
    parse_dictionary,
    serialize_inner_list,
    serialize_item,
)

__all__ = [
    "ED25519_ALG",
    "SIGNATURE_LIMITS",
    "HttpRequest",
    "HttpResponse",
    "ParsedSignature",
    "SignatureHeaders",
    "component_id",
    "parse_signatures",
    "sign_message",
    "signature_base",
    "verify_signature",
]

ED25519_ALG = "ed25519"
"""The RFC 9421 algorithm name of Ed25519."""

SIGNATURE_LIMITS = Limits(max_length=8192, max_members=16, max_inner=32, max_params=16)
"""Bounds applied to ``Signature-Input`` and ``Signature`` by default."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_METADATA_STR = frozenset({"keyid", "nonce", "tag", "alg"})
_METADATA_INT = frozenset({"created", "expires"})
_COMPONENT_FLAGS = frozenset({"sf", "bs", "req", "tr"})


def _fold(lines: Sequence[str]) -> str:
    return ", ".join(v.strip(" \t") for v in lines)


def _normalise_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, tuple[str, ...]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def _authority(scheme: str, host: str, port: int | None) -> str:
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a signature can cover of a request.

    Attributes:
        method: the method as sent (``POST``).
        scheme: ``http`` or ``https``, lower case.
        authority: host and non-default port, lower case (``api.example.com:8443``).
        path: the encoded path as sent (``/v1/chat%20x``); empty becomes ``/``.
        query: the encoded query without ``?``, or None when the target has none.
        headers: header field lines by lower-case name, in order.
    """

    method: str
    scheme: str
    authority: str
    path: str
    query: str | None = None
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_url(
        cls,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> HttpRequest:
        """Build from an absolute URL and header pairs (names in any case)."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError as exc:
            raise SignatureError(f"invalid port in URL: {exc}") from None
        query: str | None = parts.query if ("?" in url) else None
        return cls(
            method=method,
            scheme=scheme,
            authority=_authority(scheme, parts.hostname or "", port),
            path=parts.path or "/",
            query=query,
            headers=_normalise_headers(headers),
        )

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> HttpRequest:
        """Build from an ASGI HTTP scope; the authority comes from the ``Host`` header.

        Header bytes are decoded as Latin-1, so every byte sequence maps to text (non-ASCII
        values are later refused by :func:`signature_base`).
        """
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            headers.setdefault(name, []).append(raw_value.decode("latin-1"))
        scheme = str(scope.get("scheme", "http")).lower()
        host_lines = headers.get("host")
        if host_lines:
            authority = _fold(host_lines).lower()
            default = _DEFAULT_PORTS.get(scheme)
            if default is not None and authority.endswith(f":{default}"):
                authority = authority[: -len(f":{default}")]
        else:
            server = scope.get("server")
            authority = (
                _authority(scheme, str(server[0]), int(server[1])) if server else "localhost"
            )
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else urllib.parse.quote(scope["path"])
        qs: bytes = scope.get("query_string", b"")
        return cls(
            method=str(scope.get("method", "GET")),
            scheme=scheme,
            authority=authority,
            path=path or "/",
            query=qs.decode("latin-1") if qs else None,
            headers={k: tuple(v) for k, v in headers.items()},
        )

    def header(self, name: str) -> str | None:
        """The combined value of a header (lines joined with ``, ``), or None if absent."""
        lines = self.headers.get(name)
        return None if lines is None else _fold(lines)

    @property
    def target_uri(self) -> str:
        """The absolute target URI."""
        q = "" if self.query is None else "?" + self.query
        return f"{self.scheme}://{self.authority}{self.path}{q}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What a signature can cover of a response: status, headers and (with ``;req``) the request."""

    status: int
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    request: HttpRequest | None = None

    def header(self, name: str) -> str | None:
        """The combined value of a header, or None if absent."""
        lines = self.headers.get(name)
        return None if lines is None else _fold(lines)


def component_id(
    component: str, *, name: str | None = None, key: str | None = None, req: bool = False
) -> Item:
    """A component identifier: ``component_id("@query-param", name="a")``.

    Args:
        component: a derived component (``@path``) or a header name (lower-cased).
        name: the ``name`` parameter of ``@query-param``.
        key: the ``key`` parameter (a member of a dictionary header).
        req: the ``req`` flag (a request component in a response signature).
    """
    params: Params = {}
    if name is not None:
        params["name"] = name
    if key is not None:
        params["key"] = key
    if req:
        params["req"] = True
    return Item(component if component.startswith("@") else component.lower(), params)


def _query_param(request: HttpRequest, name: str) -> str:
    pairs = urllib.parse.parse_qsl(request.query or "", keep_blank_values=True)
    values = [v for k, v in pairs if k == name]
    if len(values) != 1:
        raise SignatureError(f"query parameter {name!r} is absent or repeated")
    return urllib.parse.quote(values[0], safe="")


def _derived(message: HttpRequest | HttpResponse, name: str, params: Params) -> str:
    if name == "@status":
        if not isinstance(message, HttpResponse):
            raise SignatureError("@status applies to responses only")
        return str(message.status)
    if isinstance(message, HttpResponse):
        raise SignatureError(f"{name} of a response needs the ';req' parameter")
    if name == "@method":
        return message.method
    if name == "@authority":
        return message.authority
    if name == "@path":
        return message.path
    if name == "@query":
        return "?" + (message.query or "")
    if name == "@target-uri":
        return message.target_uri
    if name == "@scheme":
        return message.scheme
    if name == "@request-target":
        return message.path + ("" if message.query is None else "?" + message.query)
    if name == "@query-param":
        qname = params.get("name")
        if not isinstance(qname, str) or isinstance(qname, Token):
            raise SignatureError("@query-param needs a string 'name' parameter")
        return _query_param(message, urllib.parse.unquote(qname))
    raise SignatureError(f"unknown derived component {name!r}")


def _component_value(message: HttpRequest | HttpResponse, comp: Item) -> str:
    name = comp.value
    if not isinstance(name, str) or isinstance(name, Token):
        raise SignatureError("a component identifier must be a string")
    params = comp.params
    for key in params:
        if key in ("bs", "sf", "tr"):
            raise SignatureError(f"component parameter ;{key} is not supported")
        if key not in ("req", "key", "name"):
            raise SignatureError(f"unknown component parameter ;{key}")
    target: HttpRequest | HttpResponse = message
    if params.get("req") is True:
        if not isinstance(message, HttpResponse) or message.request is None:
            raise SignatureError(f"{name};req needs a response with its request")
        target = message.request
    if name.startswith("@"):
        value = _derived(target, name, params)
    else:
        if name != name.lower():
            raise SignatureError(f"header component {name!r} must be lower case")
        header = target.header(name)
        if header is None:
            raise SignatureError(f"covered header {name!r} is absent")
        member_key = params.get("key")
        if member_key is not None:
            if not isinstance(member_key, str):
                raise SignatureError("';key' must be a string")
            try:
                members = parse_dictionary(header)
            except StructuredFieldError as exc:
                raise SignatureError(f"header {name!r} is not a dictionary: {exc}") from None
            member = members.get(member_key)
            if member is None:
                raise SignatureError(f"dictionary {name!r} has no member {member_key!r}")
            value = (
                serialize_inner_list(member)
                if isinstance(member, InnerList)
                else serialize_item(member)
            )
        else:
            value = header
    if not value.isascii() or "\n" in value or "\r" in value:
        raise SignatureError(f"component {name!r} has non-ASCII or line-break characters")
    return value


def signature_base(
    message: HttpRequest | HttpResponse,
    components: Sequence[Item],
    params: Params,
) -> bytes:
    """The RFC 9421 signature base (section 2.5) of ``message`` for the given components.

    Raises:
        SignatureError: a component is absent, repeated, unknown or not representable.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for comp in components:
        ident = serialize_item(comp)
        if ident in seen:
            raise SignatureError(f"component {ident} is covered twice")
        seen.add(ident)
        if comp.value == "@signature-params":
            raise SignatureError("@signature-params cannot be a covered component")
        lines.append(f"{ident}: {_component_value(message, comp)}")
    lines.append(
        '"@signature-params": ' + serialize_inner_list(InnerList(tuple(components), params))
    )
    return "\n".join(lines).encode("ascii")


@dataclass(frozen=True, slots=True)
class SignatureHeaders:
    """The two header fields produced by :func:`sign_message`, and the bytes that were signed."""

    label: str
    signature_input: str
    signature: str
    base: bytes = field(repr=False)


def _to_components(components: Sequence[str | Item]) -> tuple[Item, ...]:
    return tuple(c if isinstance(c, Item) else component_id(c) for c in components)


def sign_message(
    message: HttpRequest | HttpResponse,
    *,
    private_key: Ed25519PrivateKey,
    keyid: str,
    created: int,
    components: Sequence[str | Item],
    expires: int | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    alg: str | None = None,
    label: str = "sig1",
) -> SignatureHeaders:
    """Sign ``message`` with Ed25519 and return the ``Signature-Input``/``Signature`` values.

    Parameters are serialised in the order ``created, expires, nonce, keyid, alg, tag`` (those
    given). The header values are a single dictionary member each, labelled ``label``.

    Raises:
        SignatureError: a component cannot be resolved.
    """
    params: Params = {"created": created}
    if expires is not None:
        params["expires"] = expires
    if nonce is not None:
        params["nonce"] = nonce
    params["keyid"] = keyid
    if alg is not None:
        params["alg"] = alg
    if tag is not None:
        params["tag"] = tag
    comps = _to_components(components)
    base = signature_base(message, comps, params)
    sig = private_key.sign(base)
    inner = serialize_inner_list(InnerList(comps, params))
    return SignatureHeaders(
        label=label,
        signature_input=f"{label}={inner}",
        signature=f"{label}={serialize_item(Item(sig))}",
        base=base,
    )


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    """One labelled signature, parsed and type-checked from the two header fields."""

    label: str
    components: tuple[Item, ...]
    params: Params
    signature: bytes = field(repr=False)

    def _int(self, name: str) -> int | None:
        v = self.params.get(name)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def _str(self, name: str) -> str | None:
        v = self.params.get(name)
        return v if isinstance(v, str) else None

    @property
    def created(self) -> int | None:
        """``created`` (UNIX seconds), if present."""
        return self._int("created")

    @property
    def expires(self) -> int | None:
        """``expires`` (UNIX seconds), if present."""
        return self._int("expires")

    @property
    def keyid(self) -> str | None:
        """``keyid``, if present."""
        return self._str("keyid")

    @property
    def nonce(self) -> str | None:
        """``nonce``, if present."""
        return self._str("nonce")

    @property
    def tag(self) -> str | None:
        """``tag``, if present."""
        return self._str("tag")

    @property
    def alg(self) -> str | None:
        """``alg``, if present."""
        return self._str("alg")

    def covers(self, name: str) -> bool:
        """True when a component with this name (any parameters) is covered."""
        return any(c.value == name for c in self.components)


def parse_signatures(
    signature_input: str, signature: str, *, limits: Limits = SIGNATURE_LIMITS
) -> dict[str, ParsedSignature]:
    """Parse and check the ``Signature-Input`` and ``Signature`` field values.

    Each label of ``Signature-Input`` must be an inner list of string component identifiers
    (lower-case, unique) whose metadata parameters have the RFC 9421 types; each must have a
    Byte Sequence in ``Signature``. Labels only in ``Signature`` are ignored.

    Raises:
        StructuredFieldError: a field is malformed, has wrong types, or exceeds ``limits``.
    """
    inputs = parse_dictionary(signature_input, limits=limits)
    sigs = parse_dictionary(signature, limits=limits)
    out: dict[str, ParsedSignature] = {}
    for label, member in inputs.items():
        if not isinstance(member, InnerList):
            raise StructuredFieldError(f"Signature-Input member {label!r} is not an inner list")
        for comp in member.items:
            v = comp.value
            if not isinstance(v, str) or isinstance(v, Token) or v != v.lower() or not v:
                raise StructuredFieldError(
                    f"Signature-Input {label!r}: components must be lower-case strings"
                )
            for pname in comp.params:
                if pname not in _COMPONENT_FLAGS and pname not in ("key", "name"):
                    raise StructuredFieldError(
                        f"Signature-Input {label!r}: unknown component parameter {pname!r}"
                    )
        if len({serialize_item(c) for c in member.items}) != len(member.items):
            raise StructuredFieldError(f"Signature-Input {label!r}: a component is repeated")
        for pname, pvalue in member.params.items():
            if pname in _METADATA_INT and (not isinstance(pvalue, int) or isinstance(pvalue, bool)):
                raise StructuredFieldError(f"Signature-Input {label!r}: {pname} must be an integer")
            if pname in _METADATA_STR and (
                not isinstance(pvalue, str) or isinstance(pvalue, Token)
            ):
                raise StructuredFieldError(f"Signature-Input {label!r}: {pname} must be a string")
        sig = sigs.get(label)
        if sig is None:
            raise StructuredFieldError(f"Signature has no member for label {label!r}")
        if not isinstance(sig, Item) or not isinstance(sig.value, bytes):
            raise StructuredFieldError(f"Signature member {label!r} is not a byte sequence")
        out[label] = ParsedSignature(label, member.items, member.params, sig.value)
    return out


def verify_signature(
    message: HttpRequest | HttpResponse, parsed: ParsedSignature, public_key: Ed25519PublicKey
) -> bool:
    """True when ``parsed`` is a valid Ed25519 signature of ``message`` under ``public_key``.

    Only the cryptography: times, nonces, tags and required coverage are the caller's policy.

    Raises:
        SignatureError: the signature base cannot be built (absent component...).
    """
    if parsed.alg is not None and parsed.alg != ED25519_ALG:
        return False
    if len(parsed.signature) != 64:
        return False
    base = signature_base(message, parsed.components, parsed.params)
    try:
        public_key.verify(parsed.signature, base)
    except InvalidSignature:
        return False
    return True
