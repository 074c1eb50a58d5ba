"""The verifier's fast path agrees with the full RFC 8941 parser and signature-base builder.

For random valid and mutated ``Signature-Input``/``Signature`` values, whenever the fast path
decides, the full parser must accept the same input with the same result (types included) and
the same signature base; and a verifier with the fast path gives the same decision and the same
rejection detail as one without, on random tampered requests.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from distillguard.errors import SignatureError, StructuredFieldError
from distillguard.keyring import Keyring
from distillguard.passport import (
    HttpRequest,
    MemoryNonceCache,
    Passport,
    PassportValidator,
    RequestSigner,
    RequestVerifier,
    VerifierPolicy,
)
from distillguard.passport._digest import DigestAlgorithm, check_content_digest, make_content_digest
from distillguard.passport._fastpath import digest_matches, parse_canonical
from distillguard.passport._sfv import InnerList, Item, Token, serialize_inner_list, serialize_item
from distillguard.passport._signatures import ParsedSignature, parse_signatures, signature_base

NOW = 1_800_000_000  # same instant as conftest.NOW
URL = "https://api.example.com/v1/chat/completions?stream=1"
BODY = b'{"model": "small-1", "messages": []}'

REQUEST = HttpRequest.from_url(
    "POST",
    URL,
    headers={
        "content-type": "application/json",
        "content-digest": make_content_digest(BODY),
        "distillguard-passport": "eyJ.x.y",
        "x-multi": "a",
        "signature-agent": '"https://agent.example"',
    },
)

# -- generating Signature-Input values --------------------------------------------------------

_COMPONENT_NAMES = [
    "@method",
    "@authority",
    "@path",
    "@query",
    "@target-uri",
    "@scheme",
    "@request-target",
    "@status",
    "@signature-params",
    "@query-param",
    "@unknown",
    "content-digest",
    "content-type",
    "distillguard-passport",
    "signature-agent",
    "x-absent",
    "Content-Type",
    "a b",
    "x\\y",
]

_bare = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.sampled_from([Token("tok"), Token("a:b"), True, False, 1.5, b"\x00\x01"]),
)
_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
_param_names = st.sampled_from(["created", "expires", "nonce", "keyid", "tag", "alg", "foo", "x"])
_component = st.builds(
    Item,
    st.one_of(
        st.sampled_from(_COMPONENT_NAMES[:7] + _COMPONENT_NAMES[11:15]),
        st.sampled_from(_COMPONENT_NAMES),
    ),
    st.one_of(
        st.just({}),
        st.just({}),
        st.just({"req": True}),
        st.just({"name": "stream"}),
        st.just({"key": "sha-256"}),
    ),
)


@st.composite
def _signature_input(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(st.sampled_from(["sig1", "sig-b26", "a", "x*y"]))
    comps = draw(st.lists(_component, max_size=6))
    names = draw(st.lists(_param_names, max_size=7, unique=True))
    params: dict[str, Any] = {}
    for name in names:
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            params[name] = draw(_bare)  # any type, often the wrong one
        elif name in ("created", "expires"):
            params[name] = draw(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
        else:
            params[name] = draw(_text)
    try:
        inner = serialize_inner_list(InnerList(tuple(comps), params))
    except StructuredFieldError:
        inner = '("@method");created=1'
    sig = draw(st.one_of(st.binary(min_size=64, max_size=64), st.binary(max_size=80)))
    sig_label = draw(st.sampled_from([label, label, label, "other"]))
    return f"{label}={inner}", f"{sig_label}={serialize_item(Item(sig))}"


_MUTATIONS = [
    lambda s, i: s[:i] + s[i + 1 :],
    lambda s, i: s[:i] + " " + s[i:],
    lambda s, i: s[:i] + "0" + s[i:],
    lambda s, i: s[:i] + ";created=5" + s[i:],
    lambda s, i: s[:i] + '\\"' + s[i:],
    lambda s, i: s[:i] + "-0" + s[i:],
    lambda s, i: s[:i] + ", sig2=()" + s[i:],
    lambda s, i: s[:i] + "\u00e9" + s[i:],
    lambda s, i: s[:i] + s[i:].upper(),
    lambda s, i: s + "\n",
]


@st.composite
def _headers(draw: st.DrawFn) -> tuple[str, str]:
    si, sg = draw(_signature_input())
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        which = draw(st.booleans())
        text = si if which else sg
        i = draw(st.integers(min_value=0, max_value=len(text)))
        text = draw(st.sampled_from(_MUTATIONS))(text, i)
        si, sg = (text, sg) if which else (si, text)
    return si, sg


def _typed(params: dict[str, Any]) -> list[tuple[str, type, Any]]:
    return [(k, type(v), v) for k, v in params.items()]


def _same(fast: ParsedSignature, full: ParsedSignature) -> None:
    assert fast.label == full.label
    assert fast.signature == full.signature
    assert _typed(fast.params) == _typed(full.params)
    assert len(fast.components) == len(full.components)
    for a, b in zip(fast.components, full.components, strict=True):
        assert type(a.value) is type(b.value) and a.value == b.value
        assert _typed(a.params) == _typed(b.params)


def _full_base(parsed: ParsedSignature) -> bytes | None:
    try:
        return signature_base(REQUEST, parsed.components, parsed.params)
    except SignatureError:
        return None


CANONICAL = (
    'sig1=("@method" "@authority" "@path" "@query" "distillguard-passport" "content-digest")'
    ';created=1800000000;expires=1800000060;nonce="n-1";keyid="k";tag="web-bot-auth"',
    "sig1=:" + base64.b64encode(bytes(64)).decode() + ":",
)


@settings(max_examples=600, deadline=None)
@given(_headers())
@example(CANONICAL)
@example(('sig1=("@method");created=007', "sig1=:AA==:"))
@example(('sig1=("@method");nonce="a;created=5";created=1;x="";y=0', "sig1=:AA==:"))
@example(('sig1=("@method");created=-0', "sig1=:AA==:"))
@example(('sig1=("@method");created=1;created=2', "sig1=:AA==:"))
@example(('sig1=("@method");keyid=5', "sig1=:AA==:"))
@example(('sig1=("@method");created="5"', "sig1=:AA==:"))
@example(('sig1=("@method" "@method");created=1', "sig1=:AA==:"))
@example(('sig1=("@method");created=1', "sig1=:A===:"))
@example(('sig1=("@signature-params");created=1', "sig1=:AA==:"))
@example(('sig1=("content-type" "x-absent");created=1', "sig1=:AA==:"))
def test_fast_parse_agrees_with_the_full_parser(headers: tuple[str, str]) -> None:
    si, sg = headers
    fast = parse_canonical([si], [sg])
    try:
        full = parse_signatures(si, sg)
    except StructuredFieldError:
        assert fast is None, "the fast path accepted what the full parser refuses"
        return
    if fast is None:
        event("full parser accepted, fast path deferred")
        return
    event("fast path decided")
    parsed, shape, params_line = fast
    assert list(full) == [parsed.label]
    _same(parsed, full[parsed.label])
    expected = _full_base(full[parsed.label])
    got = shape.base(REQUEST, params_line)
    if got is not None:
        assert got == expected
    assert shape.covered == {c.value for c in parsed.components if not c.params}


def test_the_fast_path_is_taken_for_canonical_headers() -> None:
    fast = parse_canonical([CANONICAL[0]], [CANONICAL[1]])
    assert fast is not None
    parsed, shape, params_line = fast
    assert parsed == parse_signatures(*CANONICAL)["sig1"]
    assert params_line == CANONICAL[0].removeprefix("sig1=")
    base = shape.base(REQUEST, params_line)
    assert base is not None and base == _full_base(parsed)
    # not canonical: fall back (leading zero, surrounding space, two lines, two members)
    assert (
        parse_canonical([CANONICAL[0].replace("=1800000000", "=01800000000")], [CANONICAL[1]])
        is None
    )
    assert parse_canonical([" " + CANONICAL[0]], [CANONICAL[1]]) is None
    assert parse_canonical([CANONICAL[0], CANONICAL[0]], [CANONICAL[1]]) is None
    assert parse_canonical([CANONICAL[0] + ", b=()"], [CANONICAL[1]]) is None


def test_fast_base_defers_when_a_component_is_absent_or_not_ascii() -> None:
    si = 'sig1=("@method" "x-h");created=1'
    fast = parse_canonical([si], ["sig1=:AA==:"])
    assert fast is not None
    parsed, shape, line = fast
    absent = HttpRequest.from_url("GET", "https://a.example/")
    assert shape.base(absent, line) is None
    with pytest.raises(SignatureError):
        signature_base(absent, parsed.components, parsed.params)
    latin = HttpRequest.from_url("GET", "https://a.example/", headers={"x-h": "caf\u00e9"})
    assert shape.base(latin, line) is None
    two = HttpRequest.from_url("GET", "https://a.example/", headers=[("x-h", " a"), ("x-h", "b ")])
    assert shape.base(two, line) == signature_base(two, parsed.components, parsed.params)


# -- Content-Digest -----------------------------------------------------------------------------


@st.composite
def _digest_field(draw: st.DrawFn) -> tuple[str, bytes]:
    body = draw(st.binary(max_size=64))
    other = draw(st.binary(max_size=8))
    algs = draw(
        st.sampled_from(
            [(DigestAlgorithm.SHA256,), (DigestAlgorithm.SHA512,), tuple(DigestAlgorithm)]
        )
    )
    text = make_content_digest(draw(st.sampled_from([body, body + other])), algorithms=algs)
    mutate = draw(st.integers(min_value=0, max_value=4))
    if mutate == 1:
        text = " " + text + " "
    elif mutate == 2:
        text = text.replace("=:", "==:")
    elif mutate == 3:
        i = draw(st.integers(min_value=0, max_value=len(text) - 1))
        text = text[:i] + draw(st.sampled_from(["A", "/", "-", ":", "="])) + text[i + 1 :]
    elif mutate == 4:
        text = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":;x=1"
    return text, body


@settings(max_examples=300, deadline=None)
@given(_digest_field())
def test_fast_digest_agrees_with_the_full_check(case: tuple[str, bytes]) -> None:
    text, body = case
    if digest_matches({"content-digest": (text,)}, body):
        assert check_content_digest(text, body).ok


def test_fast_digest_decides_the_common_case() -> None:
    field = make_content_digest(BODY)
    assert digest_matches({"content-digest": (field,)}, BODY)
    assert not digest_matches({"content-digest": (field,)}, BODY + b" ")
    assert not digest_matches({"content-digest": (field, field)}, BODY)
    assert not digest_matches({}, BODY)


# -- the whole verifier with and without the fast path ------------------------------------------


def _verifiers(keyring: Keyring) -> tuple[RequestVerifier, RequestVerifier]:
    def make(fast: bool) -> RequestVerifier:
        return RequestVerifier(
            passports=PassportValidator.from_keyring(keyring),
            nonce_cache=MemoryNonceCache(clock=lambda: float(NOW)),
            policy=VerifierPolicy(authorities=("api.example.com",)),
            clock=lambda: float(NOW),
            fast_path=fast,
        )

    return make(True), make(False)


_HEADER_MUTATIONS = st.sampled_from(
    ["signature-input", "signature", "content-digest", "distillguard-passport", "host"]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    body=st.sampled_from([BODY, b"", b'{"model": "big-1"}']),
    signed_body=st.sampled_from([BODY, b""]),
    query=st.sampled_from(["", "?stream=1"]),
)
def test_verifier_decides_the_same_with_and_without_the_fast_path(
    keyring: Keyring,
    passport: Passport,
    agent_key: Ed25519PrivateKey,
    data: st.DataObject,
    body: bytes,
    signed_body: bytes,
    query: str,
) -> None:
    signer = RequestSigner(
        passport=passport.token, agent_key=agent_key, validity_s=60, clock=lambda: NOW
    )
    url = "https://api.example.com/v1/chat/completions" + query
    base = [("content-type", "application/json")]
    headers = dict(base + list(signer.signed_headers("POST", url, base, signed_body).items()))
    for _ in range(data.draw(st.integers(min_value=0, max_value=2))):
        name = data.draw(_HEADER_MUTATIONS)
        value = headers.get(name, "")
        i = data.draw(st.integers(min_value=0, max_value=len(value)))
        headers[name] = data.draw(st.sampled_from(_MUTATIONS))(value, i)
    try:
        request = HttpRequest.from_url("POST", url, headers=headers)
    except SignatureError:
        assume(False)
        raise
    fast, full = _verifiers(keyring)
    a, b = fast.verify(request, body), full.verify(request, body)
    event("accepted" if a.ok else f"rejected: {a.rejection.reason if a.rejection else ''}")
    assert a.ok == b.ok
    assert a.rejection == b.rejection
    if a.ok:  # and a replay is caught by both
        assert fast.verify(request, body).rejection == full.verify(request, body).rejection


def test_requests_signed_by_http_message_signatures_take_the_fast_path(
    keyring: Keyring, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    import datetime

    import httpx
    from http_message_signatures import HTTPMessageSigner, algorithms
    from http_message_signatures.resolvers import MappingKeyResolver

    request = httpx.Request(
        "POST",
        URL,
        headers={
            "content-type": "application/json",
            "content-digest": make_content_digest(BODY),
            "distillguard-passport": passport.token,
        },
        content=BODY,
    )
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={}, private_keys={passport.agent_kid: agent_key}
        ),
    ).sign(
        request,
        key_id=passport.agent_kid,
        nonce="their-nonce-1",
        tag="web-bot-auth",
        created=datetime.datetime.fromtimestamp(NOW, datetime.UTC),
        expires=datetime.datetime.fromtimestamp(NOW + 60, datetime.UTC),
        use_existing_digest=True,
        covered_component_ids=(
            "@method",
            "@authority",
            "@path",
            "@query",
            "distillguard-passport",
            "content-digest",
        ),
    )
    ours = HttpRequest.from_url("POST", URL, headers=request.headers.multi_items())
    fast = parse_canonical(ours.headers["signature-input"], ours.headers["signature"])
    assert fast is not None, "their canonical serialisation should take the fast path"
    assert fast[0].alg == "ed25519"
    fast_verifier, full_verifier = _verifiers(keyring)
    assert fast_verifier.verify(ours, BODY).ok
    assert full_verifier.verify(ours, BODY).ok


def test_one_verifier_shared_by_threads(
    keyring: Keyring, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    signer = RequestSigner(
        passport=passport.token, agent_key=agent_key, validity_s=60, clock=lambda: NOW
    )
    url = "https://api.example.com/v1/chat/completions"
    base = [("content-type", "application/json")]
    requests = [
        HttpRequest.from_url(
            "POST", url, headers=base + list(signer.signed_headers("POST", url, base, BODY).items())
        )
        for _ in range(200)
    ]
    verifier, _ = _verifiers(keyring)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = list(pool.map(lambda r: verifier.verify(r, BODY).ok, requests))
        again = list(pool.map(lambda r: verifier.verify(r, BODY).ok, requests))
    assert all(first) and not any(again)  # each accepted once, each replay refused
    snap = verifier.counter.snapshot()
    assert snap["accepted"] == 200 and snap["replayed_nonce"] == 200
