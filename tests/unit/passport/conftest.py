"""Fixtures for the passport tests: a real keyring, an issuer, an agent key, a verifier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.keyring import KeyPurpose, Keyring
from distillguard.passport import (
    MemoryNonceCache,
    Passport,
    PassportIssuer,
    PassportValidator,
    RequestVerifier,
    Scopes,
    SQLitePassportRegistry,
    VerifierPolicy,
    agent_jwk,
)

NOW = 1_800_000_000


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.create(tmp_path / "keyring.json")


@pytest.fixture
def issuer(keyring: Keyring) -> PassportIssuer:
    return PassportIssuer(key=keyring.signing_key(KeyPurpose.PASSPORT))


@pytest.fixture
def agent_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def passport(issuer: PassportIssuer, agent_key: Ed25519PrivateKey) -> Passport:
    return issuer.issue(
        account_id="acct_1",
        org_id="org_1",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        scopes=Scopes(models=("small-*",), endpoints=("/v1/*",)),
        now=NOW - 3600,
        ttl_s=86400,
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SQLitePassportRegistry]:
    reg = SQLitePassportRegistry(tmp_path / "passports.sqlite")
    yield reg
    reg.close()


@pytest.fixture
def make_verifier(
    keyring: Keyring, registry: SQLitePassportRegistry
) -> Callable[..., RequestVerifier]:
    def make(**policy: Any) -> RequestVerifier:
        policy.setdefault("authorities", ("api.example.com",))
        return RequestVerifier(
            passports=PassportValidator.from_keyring(keyring),
            revocations=registry,
            nonce_cache=MemoryNonceCache(clock=lambda: float(NOW)),
            policy=VerifierPolicy(**policy),
            clock=lambda: float(NOW),
        )

    return make
