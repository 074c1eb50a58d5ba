"""RFC 9421 conformance (Appendix B.2.6) and interoperability with http-message-signatures."""

from __future__ import annotations

import datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.resolvers import MappingKeyResolver

from distillguard.errors import SignatureError
from distillguard.passport._sfv import Item
from distillguard.passport._signatures import (
    HttpRequest,
    HttpResponse,
    component_id,
    parse_signatures,
    sign_message,
    signature_base,
    verify_signature,
)

DATA = Path(__file__).parent / "data"


def _rfc_key() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    priv = load_pem_private_key((DATA / "rfc9421_b14_ed25519_private.pem").read_bytes(), None)
    pub = load_pem_public_key((DATA / "rfc9421_b14_ed25519_public.pem").read_bytes())
    assert isinstance(priv, Ed25519PrivateKey) and isinstance(pub, Ed25519PublicKey)
    return priv, pub


def _rfc_request() -> HttpRequest:
    head, _, _body = (DATA / "rfc9421_b2_test_request.txt").read_text().partition("\n\n")
    request_line, *lines = head.split("\n")
    method, target, _ = request_line.split(" ")
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, value = line.split(": ", 1)
        headers.append((name, value))
    host = dict(headers)["Host"]
    return HttpRequest.from_url(method, f"https://{host}{target}", headers=headers)


def _rfc_headers() -> tuple[str, str]:
    lines = (DATA / "rfc9421_b26_signature_headers.txt").read_text().splitlines()
    return lines[0].split(": ", 1)[1], lines[1].split(": ", 1)[1]


def test_b26_signature_base_byte_for_byte() -> None:
    sig_input, sig = _rfc_headers()
    parsed = parse_signatures(sig_input, sig)["sig-b26"]
    base = signature_base(_rfc_request(), parsed.components, parsed.params)
    assert base == (DATA / "rfc9421_b26_signature_base.txt").read_bytes()


def test_b26_signature_verifies_with_test_key() -> None:
    _, pub = _rfc_key()
    parsed = parse_signatures(*_rfc_headers())["sig-b26"]
    assert verify_signature(_rfc_request(), parsed, pub)
    tampered = HttpRequest.from_url(
        "PUT",
        "https://example.com/foo",
        headers=dict((k, v[0]) for k, v in _rfc_request().headers.items()),
    )
    assert not verify_signature(tampered, parsed, pub)


def test_b26_signature_is_reproduced() -> None:
    priv, _ = _rfc_key()
    out = sign_message(
        _rfc_request(),
        private_key=priv,
        keyid="test-key-ed25519",
        created=1618884473,
        components=["date", "@method", "@path", "@authority", "content-type", "content-length"],
        label="sig-b26",
    )
    assert (out.signature_input, out.signature) == _rfc_headers()


def test_derived_components() -> None:
    req = HttpRequest.from_url(
        "GET", "https://WWW.Example.com:443/a%20b/c?x=1&y=two%20words&x2", headers={"X-A": " v "}
    )
    comps = [
        component_id(n)
        for n in (
            "@method",
            "@authority",
            "@path",
            "@query",
            "@target-uri",
            "@scheme",
            "@request-target",
            "x-a",
        )
    ]
    comps.append(component_id("@query-param", name="y"))
    base = signature_base(req, comps, {"created": 1}).decode().split("\n")
    assert base == [
        '"@method": GET',
        '"@authority": www.example.com',
        '"@path": /a%20b/c',
        '"@query": ?x=1&y=two%20words&x2',
        '"@target-uri": https://www.example.com/a%20b/c?x=1&y=two%20words&x2',
        '"@scheme": https',
        '"@request-target": /a%20b/c?x=1&y=two%20words&x2',
        '"x-a": v',
        '"@query-param";name="y": two%20words',
        '"@signature-params": ("@method" "@authority" "@path" "@query" "@target-uri" "@scheme" '
        '"@request-target" "x-a" "@query-param";name="y");created=1',
    ]
    assert b'"@authority": example.com:8443' in signature_base(
        HttpRequest.from_url("GET", "https://example.com:8443/"), [component_id("@authority")], {}
    )
    assert b'"@query": ?' in signature_base(
        HttpRequest.from_url("GET", "https://e.com/p"), [component_id("@query")], {}
    )


def test_response_with_req_component_and_status() -> None:
    req = HttpRequest.from_url("GET", "https://dir.example/.well-known/x")
    resp = HttpResponse(200, {"content-type": ("application/json",)}, request=req)
    base = signature_base(resp, [component_id("@status"), component_id("@authority", req=True)], {})
    assert base.split(b"\n")[:2] == [b'"@status": 200', b'"@authority";req: dir.example']


@pytest.mark.parametrize(
    "components",
    [
        [Item("absent-header")],
        [Item("@unknown")],
        [Item("@method"), Item("@method")],
        [Item("x-nonascii")],
        [Item("@status")],
        [Item("x-a", {"bs": True})],
    ],
)
def test_unresolvable_components_raise_signature_error(components: list[Item]) -> None:
    req = HttpRequest.from_url(
        "GET", "https://e.com/", headers={"x-nonascii": "caf\u00e9", "x-a": "1"}
    )
    with pytest.raises(SignatureError):
        signature_base(req, components, {})


# -- interoperability with the http-message-signatures package -------------------------------


class _Keys(MappingKeyResolver):
    pass


def test_their_signature_verifies_with_ours() -> None:
    priv = Ed25519PrivateKey.generate()
    request = httpx.Request(
        "POST",
        "https://api.example.com/v1/chat?stream=false",
        headers={"content-type": "application/json"},
        content=b'{"a": 1}',
    )
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"k1": priv}),
    )
    signer.sign(
        request,
        key_id="k1",
        nonce="n-1",
        tag="web-bot-auth",
        created=datetime.datetime.now(datetime.UTC),
        covered_component_ids=("@method", "@authority", "@path", "@query", "content-type"),
    )
    ours = HttpRequest.from_url("POST", str(request.url), headers=request.headers.multi_items())
    parsed = parse_signatures(request.headers["signature-input"], request.headers["signature"])
    (sig,) = parsed.values()
    assert sig.keyid == "k1" and sig.alg == "ed25519"
    assert verify_signature(ours, sig, priv.public_key())
    assert not verify_signature(ours, sig, Ed25519PrivateKey.generate().public_key())


def test_our_signature_verifies_with_theirs() -> None:
    priv = Ed25519PrivateKey.generate()
    request = httpx.Request(
        "GET", "https://api.example.com/v1/models?limit=5", headers={"accept": "application/json"}
    )
    ours = HttpRequest.from_url("GET", str(request.url), headers=request.headers.multi_items())
    created = int(datetime.datetime.now(datetime.UTC).timestamp())
    out = sign_message(
        ours,
        private_key=priv,
        keyid="k1",
        created=created,
        expires=created + 60,
        nonce="abc",
        tag="web-bot-auth",
        alg="ed25519",
        components=["@method", "@authority", "@path", "@query", "accept"],
    )
    request.headers["signature-input"] = out.signature_input
    request.headers["signature"] = out.signature
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={"k1": priv.public_key()}, private_keys={}),
    )
    (result,) = verifier.verify(request, expect_tag="web-bot-auth")
    assert result.parameters["keyid"] == "k1"
    request.headers["accept"] = "text/html"
    with pytest.raises(InvalidSignature):
        verifier.verify(request, expect_tag="web-bot-auth")
