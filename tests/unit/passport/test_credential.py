"""Passports: issue, decode, and every way a forged or stale one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import PassportError
from distillguard.keyring import KeyPurpose, Keyring, jwk_thumbprint
from distillguard.passport import Passport, PassportIssuer, PassportValidator, agent_jwk, agent_kid

NOW = 1_800_000_000  # same instant as conftest.NOW


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reason(exc: pytest.ExceptionInfo[PassportError]) -> str:
    return str(exc.value.details["reason"])


def test_issue_and_decode_round_trip(keyring: Keyring, passport: Passport) -> None:
    decoded = PassportValidator.from_keyring(keyring).decode(passport.token, now=NOW)
    assert decoded == passport
    assert decoded.agent_kid == jwk_thumbprint(decoded.agent_jwk)
    assert decoded.issuer_kid == keyring.signing_key(KeyPurpose.PASSPORT).kid
    assert "token=" not in repr(decoded) and passport.token not in repr(decoded)
    header = json.loads(base64.urlsafe_b64decode(passport.token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": passport.issuer_kid, "typ": "dg-passport+jwt"}


def test_rotated_issuer_key_still_verifies_old_passports(
    keyring: Keyring, issuer: PassportIssuer, agent_key: Ed25519PrivateKey
) -> None:
    issued = int(time.time()) - 60  # before the rotation below
    passport = issuer.issue(
        account_id="acct_1",
        org_id="org_1",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        now=issued,
    )
    keyring.rotate(KeyPurpose.PASSPORT)
    validator = PassportValidator.from_keyring(keyring)
    assert validator.decode(passport.token, now=issued + 10) == passport


def test_alg_none_and_hmac_are_refused(keyring: Keyring, passport: Passport) -> None:
    validator = PassportValidator.from_keyring(keyring)
    _, payload, _ = passport.token.split(".")
    none_header = _b64(json.dumps({"alg": "none", "kid": passport.issuer_kid}).encode())
    with pytest.raises(PassportError) as exc:
        validator.decode(f"{none_header}.{payload}.", now=NOW)
    assert _reason(exc) == "malformed"  # empty signature part
    with pytest.raises(PassportError) as exc:
        validator.decode(f"{none_header}.{payload}.AAAA", now=NOW)
    assert _reason(exc) == "algorithm"
    # the classic key-confusion forgery: HS256 keyed with the issuer's public key bytes
    raw_pub = base64.urlsafe_b64decode(
        keyring.signing_key(KeyPurpose.PASSPORT).public_jwk()["x"] + "=="
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": passport.issuer_kid}).encode())
    mac = hmac.new(raw_pub, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(PassportError) as exc:
        validator.decode(f"{hs_header}.{payload}.{_b64(mac)}", now=NOW)
    assert _reason(exc) == "algorithm"


def test_unknown_issuer_and_tampering(
    keyring: Keyring, tmp_path: object, passport: Passport
) -> None:
    validator = PassportValidator.from_keyring(keyring)
    other = Keyring.create(tmp_path / "other.json")  # type: ignore[operator]
    foreign = PassportIssuer(key=other.signing_key(KeyPurpose.PASSPORT)).issue(
        account_id="a", org_id="o", agent_public_jwk=passport.agent_jwk, now=NOW
    )
    with pytest.raises(PassportError) as exc:
        validator.decode(foreign.token, now=NOW)
    assert _reason(exc) == "unknown_issuer"
    # same kid, signed by another key: bad signature
    _h, _, s = foreign.token.split(".")
    h2 = _b64(
        json.dumps({"alg": "EdDSA", "kid": passport.issuer_kid, "typ": "dg-passport+jwt"}).encode()
    )
    with pytest.raises(PassportError) as exc:
        validator.decode(f"{h2}.{foreign.token.split('.')[1]}.{s}", now=NOW)
    assert _reason(exc) == "bad_signature"
    # payload changed (account swapped)
    head, payload, sig = passport.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone_else"
    with pytest.raises(PassportError) as exc:
        validator.decode(f"{head}.{_b64(json.dumps(claims).encode())}.{sig}", now=NOW)
    assert _reason(exc) == "bad_signature"


def test_expiry_and_future(keyring: Keyring, passport: Passport) -> None:
    validator = PassportValidator.from_keyring(keyring)
    with pytest.raises(PassportError) as exc:
        validator.decode(passport.token, now=passport.expires_at + 61)
    assert _reason(exc) == "expired"
    assert validator.decode(passport.token, now=passport.expires_at + 61, check_time=False)
    with pytest.raises(PassportError) as exc:
        validator.decode(passport.token, now=passport.issued_at - 61)
    assert _reason(exc) == "not_yet_valid"


def test_agent_kid_matches_keyring_thumbprint() -> None:
    jwk = agent_jwk(Ed25519PrivateKey.generate().public_key())
    assert agent_kid(jwk) == jwk_thumbprint(jwk)
    with pytest.raises(PassportError):
        agent_kid({"kty": "RSA", "n": "x", "e": "AQAB"})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_garbage_tokens_raise_only_passport_error(token: str) -> None:
    validator = PassportValidator(issuer_keys={"k": Ed25519PrivateKey.generate().public_key()})
    with pytest.raises(PassportError):
        validator.decode(token, now=NOW)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jwk"]),
        st.one_of(st.text(max_size=10), st.integers(), st.none()),
        max_size=5,
    ),
    st.binary(max_size=100),
    st.binary(max_size=80),
)
def test_crafted_headers_never_accepted(
    header: dict[str, object], payload: bytes, sig: bytes
) -> None:
    validator = PassportValidator(issuer_keys={"k": Ed25519PrivateKey.generate().public_key()})
    token = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}.{_b64(sig)}"
    with pytest.raises(PassportError):
        validator.decode(token, now=NOW)


def test_passport_minted_with_a_retired_key_after_retirement_is_refused(
    keyring: Keyring, agent_key: Ed25519PrivateKey
) -> None:
    """Issue 24 finding 2: a leaked, rotated-out issuer key must not mint new passports."""
    leaked = keyring.signing_key(KeyPurpose.PASSPORT)
    keyring.rotate(KeyPurpose.PASSPORT)
    now = int(time.time()) + 5  # after the rotation
    forged = PassportIssuer(key=leaked).issue(
        account_id="acct_x",
        org_id="org_x",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        ttl_s=10 * 365 * 86400,
        now=now,
        passport_id="pp_invented",
    )
    with pytest.raises(PassportError) as exc:
        PassportValidator.from_keyring(keyring).decode(forged.token, now=now)
    assert _reason(exc) == "retired_issuer_key"
    assert exc.value.code == "DG331"


def test_nothing_signed_by_a_compromised_key_is_accepted(
    keyring: Keyring, issuer: PassportIssuer, agent_key: Ed25519PrivateKey
) -> None:
    issued = int(time.time()) - 60  # a genuine passport, issued before anything happened
    genuine = issuer.issue(
        account_id="acct_1",
        org_id="org_1",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        now=issued,
    )
    validator = PassportValidator.from_keyring(keyring)
    assert validator.decode(genuine.token, now=issued + 1) == genuine
    info, new_kid = keyring.mark_compromised(genuine.issuer_kid, reason="leaked in a backup")
    assert info.status == "compromised" and new_kid is not None
    reloaded = PassportValidator.from_keyring(Keyring.load(keyring.path))
    with pytest.raises(PassportError) as exc:
        reloaded.decode(genuine.token, now=issued + 1, check_time=False)
    assert _reason(exc) == "compromised_issuer_key"
