"""The request verifier: one test per rejection reason, plus counting and problem documents."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.passport import (
    HttpRequest,
    Passport,
    PassportIssuer,
    RejectionReason,
    RequestSigner,
    RequestVerifier,
    Scopes,
    SQLitePassportRegistry,
    agent_jwk,
)

NOW = 1_800_000_000  # same instant as conftest.NOW

URL = "https://api.example.com/v1/chat/completions"
BODY = b'{"model": "small-1", "messages": []}'
R = RejectionReason


def signed(
    passport: Passport,
    key: Ed25519PrivateKey,
    *,
    url: str = URL,
    body: bytes = BODY,
    at: float = NOW,
    validity_s: int = 60,
    method: str = "POST",
) -> dict[str, str]:
    signer = RequestSigner(
        passport=passport.token, agent_key=key, validity_s=validity_s, clock=lambda: at
    )
    base = [("content-type", "application/json")]
    return dict(base + list(signer.signed_headers(method, url, base, body).items()))


def req(headers: dict[str, str], url: str = URL, method: str = "POST") -> HttpRequest:
    return HttpRequest.from_url(method, url, headers=headers)


@pytest.fixture
def verifier(make_verifier: Callable[..., RequestVerifier]) -> RequestVerifier:
    return make_verifier()


def reason(v: RequestVerifier, request: HttpRequest, body: bytes = BODY) -> RejectionReason | None:
    result = v.verify(request, body)
    return None if result.rejection is None else result.rejection.reason


def test_accepts_a_good_request_once(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    h = signed(passport, agent_key)
    result = verifier.verify(req(h), BODY)
    assert result.ok and result.identity is not None
    assert (
        result.identity.account_id == "acct_1"
        and result.identity.passport_id == passport.passport_id
    )
    assert reason(verifier, req(h)) is R.REPLAYED_NONCE
    snap = verifier.counter.snapshot()
    assert snap["accepted"] == 1 and snap["replayed_nonce"] == 1 and snap["bad_signature"] == 0


def test_signature_problems(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    h = signed(passport, agent_key)
    assert (
        reason(verifier, req({k: v for k, v in h.items() if k != "signature"}))
        is R.MISSING_SIGNATURE
    )
    assert (
        reason(verifier, req({**h, "signature-input": 'sig1=("@method"'})) is R.MALFORMED_SIGNATURE
    )
    other_tag = {**h, "signature-input": h["signature-input"].replace("web-bot-auth", "other")}
    assert reason(verifier, req(other_tag)) is R.MISSING_SIGNATURE
    alg = {**h, "signature-input": h["signature-input"] + ';alg="rsa-pss-sha512"'}
    assert reason(verifier, req(alg)) is R.UNSUPPORTED_ALGORITHM
    no_nonce = {**h, "signature-input": h["signature-input"].replace(";nonce=", ";x=")}
    assert reason(verifier, req(no_nonce)) is R.MISSING_PARAMETER
    flipped = bytearray(h["signature"].encode())
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    assert reason(verifier, req({**h, "signature": flipped.decode()})) is R.BAD_SIGNATURE
    # a header changed after signing
    assert reason(verifier, req(h, method="PUT")) is R.BAD_SIGNATURE


def test_time_window(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    assert reason(verifier, req(signed(passport, agent_key, at=NOW + 61))) is R.FUTURE_DATED
    assert verifier.verify(req(signed(passport, agent_key, at=NOW + 59)), BODY).ok  # within skew
    assert reason(verifier, req(signed(passport, agent_key, at=NOW - 200))) is R.EXPIRED_SIGNATURE
    long = signed(passport, agent_key, validity_s=301)
    assert reason(verifier, req(long)) is R.VALIDITY_TOO_LONG


def test_coverage_authority_digest(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    h = signed(passport, agent_key)
    assert reason(verifier, req(h), body=BODY + b" ") is R.DIGEST_MISMATCH
    no_digest_cov = signed(passport, agent_key, body=b"")
    assert reason(verifier, req(no_digest_cov), body=BODY) is R.INSUFFICIENT_COVERAGE
    q = signed(passport, agent_key, url=URL + "?x=1")
    q["signature-input"] = q["signature-input"].replace(' "@query"', "")
    assert reason(verifier, req(q, url=URL + "?x=1")) is R.INSUFFICIENT_COVERAGE
    relayed = signed(passport, agent_key, url="https://evil.example/v1/chat/completions")
    assert reason(verifier, req(relayed, url="https://evil.example/v1/chat/completions")) is (
        R.WRONG_AUTHORITY
    )


def test_passport_problems(
    verifier: RequestVerifier,
    passport: Passport,
    agent_key: Ed25519PrivateKey,
    issuer: PassportIssuer,
    registry: SQLitePassportRegistry,
) -> None:
    h = signed(passport, agent_key)
    del h["distillguard-passport"]
    assert reason(verifier, req(h)) is R.MISSING_PASSPORT
    # signed by the right key but the header carries another agent's passport
    other_key = Ed25519PrivateKey.generate()
    other = issuer.issue(
        account_id="acct_2",
        org_id="org_1",
        agent_public_jwk=agent_jwk(other_key.public_key()),
        now=NOW,
    )
    swapped = signed(other, agent_key)
    assert reason(verifier, req(swapped)) is R.KEY_MISMATCH
    expired = issuer.issue(
        account_id="acct_3",
        org_id="org_1",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        now=NOW - 1000,
        ttl_s=100,
    )
    assert reason(verifier, req(signed(expired, agent_key))) is R.EXPIRED_PASSPORT
    bad = signed(passport, agent_key)
    bad["distillguard-passport"] = "x.y.z"
    assert reason(verifier, req(bad)) in (R.INVALID_PASSPORT, R.BAD_SIGNATURE)
    registry.revoke(passport.passport_id, reason="test", now=NOW)
    assert reason(verifier, req(signed(passport, agent_key))) is R.REVOKED_PASSPORT


def test_scope_violation(
    verifier: RequestVerifier, issuer: PassportIssuer, agent_key: Ed25519PrivateKey
) -> None:
    narrow = issuer.issue(
        account_id="a",
        org_id="o",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        scopes=Scopes(models=("small-*",), endpoints=("/v1/chat/*",)),
        now=NOW,
    )
    assert verifier.verify(req(signed(narrow, agent_key)), BODY).ok
    body = b'{"model": "large-2"}'
    assert reason(verifier, req(signed(narrow, agent_key, body=body)), body) is R.SCOPE_VIOLATION
    url = "https://api.example.com/v1/embeddings"
    assert reason(verifier, req(signed(narrow, agent_key, url=url), url=url)) is R.SCOPE_VIOLATION


def test_problem_documents_leak_nothing(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    h = signed(passport, agent_key)
    for r in RejectionReason:
        assert r.summary and 400 <= r.status < 600
    result = verifier.verify(req(h), BODY + b"x")
    assert result.rejection is not None
    doc = result.rejection.problem().to_dict()
    assert set(doc) == {"type", "title", "status", "detail", "code"}
    assert doc["code"] == "digest_mismatch" and doc["status"] == 401
    text = result.rejection.problem().to_json().decode()
    assert passport.token not in text and h["signature"].split(":")[1] not in text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(si=st.text(max_size=300), sig=st.text(max_size=200))
def test_fuzzed_signature_headers_are_never_accepted(
    verifier: RequestVerifier, passport: Passport, si: str, sig: str
) -> None:
    h = {"signature-input": si, "signature": sig, "distillguard-passport": passport.token}
    result = verifier.verify(req(h), BODY)
    assert not result.ok and result.rejection is not None


def test_huge_and_non_ascii_headers(
    verifier: RequestVerifier, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    h = signed(passport, agent_key)
    huge = {**h, "signature-input": h["signature-input"] + ", " + "x=" + "1" * 100_000}
    assert reason(verifier, req(huge)) is R.MALFORMED_SIGNATURE
    many = {**h, "signature-input": ", ".join(f"s{i}=()" for i in range(1000))}
    assert reason(verifier, req(many)) is R.MALFORMED_SIGNATURE
    accented = {**h, "signature-input": h["signature-input"].replace("@path", "@pâth")}
    assert reason(verifier, req(accented)) is R.MALFORMED_SIGNATURE
    dup = {**h, "signature-input": h["signature-input"] + ";created=1"}
    assert reason(verifier, req(dup)) is R.MALFORMED_SIGNATURE
