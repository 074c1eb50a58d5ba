"""Passport registries behind one interface (SQLite file, the store on SQLite and PostgreSQL),
replicas sharing revocations through the store, and the verifier's in-memory revocation cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.config import Settings
from distillguard.errors import StorageError
from distillguard.keyring import Keyring
from distillguard.passport import (
    HttpRequest,
    MemoryNonceCache,
    Passport,
    PassportIssuer,
    PassportRegistry,
    PassportValidator,
    RejectionReason,
    RequestSigner,
    RequestVerifier,
    RevocationCache,
    SQLitePassportRegistry,
    StorePassportRegistry,
    VerifierPolicy,
    agent_jwk,
    open_registry,
)
from distillguard.store import Store, open_store

NOW = 1_800_000_000  # same instant as conftest.NOW


def _contract(reg: PassportRegistry, passport: Passport, other: Passport) -> None:
    reg.record_issued(passport)
    reg.record_issued(passport)  # idempotent
    reg.record_issued(other)
    assert passport.issued_at < other.issued_at
    assert [r.passport_id for r in reg.list_passports()] == [
        passport.passport_id,
        other.passport_id,
    ]
    record = reg.get(passport.passport_id)
    assert record is not None and record.status(NOW) == "active"
    assert record.agent_kid == passport.agent_kid and record.claims == passport.claims()
    assert record.issued_at == passport.issued_at and record.expires_at == passport.expires_at
    assert passport.token not in repr(record)
    assert reg.get("pp_nope") is None
    assert not reg.is_revoked(passport.passport_id) and reg.revoked_ids() == frozenset()
    first = reg.revoke(passport.passport_id, reason="campaign C-1", now=NOW)
    assert reg.revoke(passport.passport_id, reason="again", now=NOW + 9) == first
    assert first.revoked_at == NOW and first.reason == "campaign C-1"
    unknown = reg.revoke("pp_unknown", reason="pre-emptive", now=NOW + 1)
    assert reg.is_revoked(passport.passport_id) and not reg.is_revoked(other.passport_id)
    assert reg.revoked_ids() == {passport.passport_id, "pp_unknown"}
    assert reg.revocations() == [first, unknown]
    revoked = reg.get(passport.passport_id)
    assert revoked is not None and revoked.status(NOW) == "revoked" and revoked.revocation == first


@pytest.fixture
def other_passport(issuer: PassportIssuer) -> Passport:
    return issuer.issue(
        account_id="acct_2",
        org_id="org_2",
        agent_public_jwk=agent_jwk(Ed25519PrivateKey.generate().public_key()),
        now=NOW - 60,
    )


def test_file_registry_contract(
    tmp_path: Path, passport: Passport, other_passport: Passport
) -> None:
    reg = SQLitePassportRegistry(tmp_path / "p.sqlite")
    try:
        _contract(reg, passport, other_passport)
    finally:
        reg.close()


def test_store_registry_contract(
    store: Store, passport: Passport, other_passport: Passport
) -> None:
    _contract(StorePassportRegistry(store), passport, other_passport)


def test_replicas_share_revocations_through_the_store(store_url: str, passport: Passport) -> None:
    a = StorePassportRegistry.open(store_url)
    b = StorePassportRegistry.open(store_url)  # another replica, its own connection
    try:
        a.record_issued(passport)
        (seen,) = b.list_passports()
        assert seen.passport_id == passport.passport_id
        now = [0.0]
        cache = RevocationCache(b, refresh_s=1.0, clock=lambda: now[0])
        assert not cache.is_revoked(passport.passport_id)
        a.revoke(passport.passport_id, reason="campaign", now=NOW)
        assert b.is_revoked(passport.passport_id)
        now[0] = 0.5
        assert not cache.is_revoked(passport.passport_id)  # within the refresh interval
        now[0] = 1.0
        assert cache.is_revoked(passport.passport_id)  # reloaded: takes effect within 1 s
    finally:
        a.close()
        b.close()


def test_store_registry_reopens_its_tables(store_url: str, passport: Passport) -> None:
    first = StorePassportRegistry.open(store_url)
    first.record_issued(passport)
    first.close()
    again = StorePassportRegistry.open(store_url)
    try:
        record = again.get(passport.passport_id)
        assert record is not None and record.account_id == passport.account_id
    finally:
        again.close()


def test_closed_store_is_a_storage_error(store_url: str) -> None:
    reg = StorePassportRegistry.open(store_url)
    reg.close()
    with pytest.raises(StorageError):
        reg.is_revoked("pp_x")


def test_revocation_cache_is_immediate_in_process(tmp_path: Path, passport: Passport) -> None:
    reg = SQLitePassportRegistry(tmp_path / "p.sqlite")
    cache = RevocationCache(reg, refresh_s=3600.0, max_stale_s=3600.0, clock=lambda: 0.0)
    assert not cache.is_revoked(passport.passport_id)
    cache.revoke(passport.passport_id, reason="now")
    assert cache.is_revoked(passport.passport_id) and len(cache) == 1
    assert reg.is_revoked(passport.passport_id)
    reg.close()


def test_revocation_cache_keeps_the_last_list_then_fails_closed(
    tmp_path: Path, passport: Passport
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    reg = StorePassportRegistry(store)
    reg.revoke(passport.passport_id, reason="x", now=NOW)
    now = [0.0]
    cache = RevocationCache(reg, refresh_s=1.0, max_stale_s=10.0, clock=lambda: now[0])
    store.close()  # the registry can no longer be read
    now[0] = 5.0
    assert cache.is_revoked(passport.passport_id)  # stale but within max_stale_s
    assert not cache.is_revoked("pp_other")
    now[0] = 10.5
    with pytest.raises(StorageError):
        cache.is_revoked(passport.passport_id)
    now[0] = 10.7  # before the next reload attempt: still closed, not the stale list
    with pytest.raises(StorageError):
        cache.is_revoked("pp_other")
    with pytest.raises(ValueError):
        RevocationCache(reg, refresh_s=5.0, max_stale_s=1.0)


def test_first_load_failure_is_a_storage_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    reg = StorePassportRegistry(store)
    store.close()
    with pytest.raises(StorageError):
        RevocationCache(reg)


def _verify(
    verifier: RequestVerifier, passport: Passport, key: Ed25519PrivateKey
) -> RejectionReason | None:
    signer = RequestSigner(passport=passport.token, agent_key=key, clock=lambda: NOW)
    url = "https://api.example.com/v1/chat/completions"
    headers = signer.signed_headers("GET", url, [], b"")
    result = verifier.verify(HttpRequest.from_url("GET", url, headers=headers), b"")
    return None if result.rejection is None else result.rejection.reason


def test_verifier_with_store_revocations(
    tmp_path: Path, keyring: Keyring, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    reg = StorePassportRegistry(store)
    reg.record_issued(passport)
    now = [0.0]
    cache = RevocationCache(reg, refresh_s=1.0, max_stale_s=2.0, clock=lambda: now[0])
    verifier = RequestVerifier(
        passports=PassportValidator.from_keyring(keyring),
        revocations=cache,
        nonce_cache=MemoryNonceCache(clock=lambda: float(NOW)),
        policy=VerifierPolicy(authorities=("api.example.com",)),
        clock=lambda: float(NOW),
    )
    assert _verify(verifier, passport, agent_key) is None
    cache.revoke(passport.passport_id, reason="campaign")
    assert _verify(verifier, passport, agent_key) is RejectionReason.REVOKED_PASSPORT
    store.close()
    now[0] = 5.0
    assert _verify(verifier, passport, agent_key) is RejectionReason.REVOCATION_LIST_UNAVAILABLE
    problem = verifier.reject(RejectionReason.REVOCATION_LIST_UNAVAILABLE, "x").problem()
    assert problem.status == 503 and problem.code == "revocation_list_unavailable"


def test_settings_choose_the_registry(tmp_path: Path, keyring: Keyring) -> None:
    file_settings = Settings(home=tmp_path)
    reg = open_registry(file_settings)
    assert isinstance(reg, SQLitePassportRegistry)
    assert reg.path == tmp_path / "passports.sqlite"
    reg.close()
    store_settings = Settings(
        home=tmp_path, passport={"registry": "store", "revocation_refresh_s": 0.25}
    )
    reg2 = open_registry(store_settings)
    assert isinstance(reg2, StorePassportRegistry)
    reg2.close()
    verifier = RequestVerifier.from_settings(store_settings, keyring)
    assert isinstance(verifier.revocations, RevocationCache)
    assert isinstance(verifier.revocations.registry, StorePassportRegistry)
    assert verifier.revocations.refresh_s == 0.25
    verifier.revocations.registry.close()
