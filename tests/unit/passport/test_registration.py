"""Issue 24: every passport the verifier accepts must be registered, with the claims recorded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.config import Settings
from distillguard.errors import StorageError
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.passport import (
    HttpRequest,
    MemoryNonceCache,
    Passport,
    PassportIssuer,
    PassportRecord,
    PassportValidator,
    RegistrationCache,
    RejectionReason,
    RequestSigner,
    RequestVerifier,
    SQLitePassportRegistry,
    VerifierPolicy,
    agent_jwk,
)
from distillguard.passport._verifier import default_authorities

NOW = 1_800_000_000
URL = "https://api.example.com/v1/chat/completions"
BODY = b'{"model": "small-1", "messages": []}'


def _request(passport: Passport, key: Ed25519PrivateKey, url: str = URL) -> HttpRequest:
    signer = RequestSigner(passport=passport.token, agent_key=key, clock=lambda: float(NOW))
    base = [("content-type", "application/json")]
    headers = dict(base + list(signer.signed_headers("POST", url, base, BODY).items()))
    return HttpRequest.from_url("POST", url, headers=headers)


def _verifier(keyring: Keyring, registry: Any) -> RequestVerifier:
    return RequestVerifier(
        passports=PassportValidator.from_keyring(keyring),
        revocations=registry,
        registrations=RegistrationCache(registry),
        nonce_cache=MemoryNonceCache(clock=lambda: float(NOW)),
        policy=VerifierPolicy(authorities=("api.example.com",)),
        clock=lambda: float(NOW),
    )


def _issue(issuer: PassportIssuer, key: Ed25519PrivateKey, **kw: Any) -> Passport:
    return issuer.issue(
        account_id="acct_1",
        org_id="org_1",
        agent_public_jwk=agent_jwk(key.public_key()),
        now=NOW - 60,
        **kw,
    )


def _rejection(v: RequestVerifier, r: HttpRequest) -> RejectionReason | None:
    result = v.verify(r, BODY)
    return None if result.rejection is None else result.rejection.reason


def test_unregistered_passport_signed_by_the_current_key_is_refused(
    keyring: Keyring, issuer: PassportIssuer, registry: SQLitePassportRegistry
) -> None:
    key = Ed25519PrivateKey.generate()
    invented = _issue(issuer, key, passport_id="pp_invented")  # never recorded
    v = _verifier(keyring, registry)
    result = v.verify(_request(invented, key), BODY)
    assert result.rejection is not None
    assert result.rejection.reason is RejectionReason.UNREGISTERED_PASSPORT
    problem = result.rejection.problem()
    assert problem.status == 401 and problem.code == "unregistered_passport"
    registry.record_issued(invented)  # once issued through the registry: accepted
    v2 = _verifier(keyring, registry)
    assert v2.verify(_request(invented, key), BODY).ok


def test_registered_id_with_other_claims_is_refused(
    keyring: Keyring, issuer: PassportIssuer, registry: SQLitePassportRegistry
) -> None:
    genuine_key, attacker_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    genuine = _issue(issuer, genuine_key, passport_id="pp_1")
    registry.record_issued(genuine)
    # same id, the attacker's agent key and a ten-year lifetime
    forged = _issue(issuer, attacker_key, passport_id="pp_1", ttl_s=10 * 365 * 86400)
    v = _verifier(keyring, registry)
    assert _rejection(v, _request(forged, attacker_key)) is RejectionReason.UNREGISTERED_PASSPORT
    assert _rejection(v, _request(genuine, genuine_key)) is None


class _CountingRegistry:
    def __init__(self, inner: SQLitePassportRegistry) -> None:
        self.inner = inner
        self.gets = 0
        self.fail = False

    def get(self, passport_id: str) -> PassportRecord | None:
        self.gets += 1
        if self.fail:
            raise StorageError("down")
        return self.inner.get(passport_id)

    def is_revoked(self, passport_id: str) -> bool:
        return False

    def record_issued(self, passport: Passport) -> None:
        self.inner.record_issued(passport)


def test_lookups_are_cached_and_a_dead_registry_fails_closed(
    issuer: PassportIssuer, registry: SQLitePassportRegistry
) -> None:
    key = Ed25519PrivateKey.generate()
    known = _issue(issuer, key, passport_id="pp_known")
    unknown = _issue(issuer, key, passport_id="pp_unknown")
    registry.record_issued(known)
    counting = _CountingRegistry(registry)
    t = [0.0]
    cache = RegistrationCache(counting, negative_ttl_s=1.0, clock=lambda: t[0])  # type: ignore[arg-type]
    assert all(cache.is_registered(known) for _ in range(100))
    assert counting.gets == 1
    assert not any(cache.is_registered(unknown) for _ in range(100))
    assert counting.gets == 2  # unknown: remembered for negative_ttl_s
    counting.record_issued(unknown)
    t[0] = 1.5
    assert cache.is_registered(unknown) and counting.gets == 3
    counting.fail = True
    assert cache.is_registered(known)  # cached: no query
    other = _issue(issuer, key, passport_id="pp_other")
    with pytest.raises(StorageError):
        cache.is_registered(other)


def test_verifier_maps_a_dead_registry_to_503(
    keyring: Keyring, issuer: PassportIssuer, registry: SQLitePassportRegistry
) -> None:
    key = Ed25519PrivateKey.generate()
    passport = _issue(issuer, key)
    registry.record_issued(passport)
    counting = _CountingRegistry(registry)
    counting.fail = True
    v = _verifier(keyring, counting)
    result = v.verify(_request(passport, key), BODY)
    assert result.rejection is not None
    assert result.rejection.reason is RejectionReason.REVOCATION_LIST_UNAVAILABLE
    assert result.rejection.problem().status == 503


def test_from_settings_checks_the_registry(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, passport={"authorities": ["api.example.com"]})
    keyring = Keyring.create(settings.keyring_path)
    issuer = PassportIssuer(key=keyring.signing_key(KeyPurpose.PASSPORT))
    key = Ed25519PrivateKey.generate()
    passport = _issue(issuer, key)
    v = RequestVerifier.from_settings(settings, keyring)
    v._clock = lambda: float(NOW)
    v.nonce_cache = v._scache = MemoryNonceCache(clock=lambda: float(NOW))
    assert _rejection(v, _request(passport, key)) is RejectionReason.UNREGISTERED_PASSPORT


@pytest.mark.parametrize(
    ("public_url", "authorities", "expected"),
    [
        ("https://api.example.com", [], ("api.example.com",)),
        ("https://API.example.com:443/v1", [], ("api.example.com",)),
        ("http://gw.internal:8080", [], ("gw.internal:8080",)),
        ("https://[::1]:8443", [], ("[::1]:8443",)),
        ("https://api.example.com", ["other.example"], ("other.example",)),
        (None, [], ()),
    ],
)
def test_default_authorities(
    tmp_path: Path, public_url: str | None, authorities: list[str], expected: tuple[str, ...]
) -> None:
    settings = Settings(
        home=tmp_path,
        gateway={"public_url": public_url},
        passport={"authorities": authorities},
    )
    assert default_authorities(settings) == expected


def test_public_url_rejects_requests_signed_for_another_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 24: with no [passport] authorities, the public host is the one accepted."""
    settings = Settings(home=tmp_path, gateway={"public_url": "https://api.example.com"})
    keyring = Keyring.create(settings.keyring_path)
    v = RequestVerifier.from_settings(settings, keyring)
    assert v.policy.authorities == ("api.example.com",)
    issuer = PassportIssuer(key=keyring.signing_key(KeyPurpose.PASSPORT))
    key = Ed25519PrivateKey.generate()
    passport = _issue(issuer, key)
    other = "https://evil.example/v1/chat/completions"
    v._clock = lambda: float(NOW)
    assert _rejection(v, _request(passport, key, url=other)) is RejectionReason.WRONG_AUTHORITY
    with caplog.at_level(logging.WARNING, logger="distillguard.passport._verifier"):
        RequestVerifier.from_settings(Settings(home=tmp_path), keyring)
    assert "requests signed for any host are accepted" in caplog.text
