"""The redis.asyncio nonce cache and RequestVerifier.averify, against the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.errors import ConfigurationError, StorageError
from distillguard.keyring import Keyring
from distillguard.passport import (
    AsyncNonceCache,
    AsyncRedisNonceCache,
    HttpRequest,
    MemoryNonceCache,
    NonceCache,
    Passport,
    PassportValidator,
    RedisNonceCache,
    RejectionReason,
    RequestSigner,
    RequestVerifier,
    VerifierPolicy,
)

NOW = 1_800_000_000  # same instant as conftest.NOW
REDIS = "redis://127.0.0.1:6379/0"
URL = "https://api.example.com/v1/chat/completions"


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"dg-test:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
def test_async_cache_shares_nonces_with_sync_replicas(prefix: str) -> None:
    async def run() -> tuple[bool, bool, bool]:
        cache = AsyncRedisNonceCache.from_url(REDIS, prefix=prefix)
        try:
            first = await cache.check_and_store("kid:n1", ttl_s=30)
            again = await cache.check_and_store("kid:n1", ttl_s=30)
            other = await cache.check_and_store("kid:n2", ttl_s=30)
        finally:
            await cache.aclose()
        return first, again, other

    assert asyncio.run(run()) == (True, False, True)
    sync = RedisNonceCache.from_url(REDIS, prefix=prefix)
    assert not sync.check_and_store("kid:n1", ttl_s=30)  # a sync replica sees the same nonces
    ttl = redis.Redis.from_url(REDIS).ttl(prefix + "kid:n2")
    assert 0 < ttl <= 30


def test_async_cache_unreachable_is_a_storage_error() -> None:
    async def run() -> None:
        cache = AsyncRedisNonceCache.from_url("redis://127.0.0.1:1/0")
        try:
            await cache.check_and_store("k:n", ttl_s=5)
        finally:
            await cache.aclose()

    with pytest.raises(StorageError):
        asyncio.run(run())


def _request(passport: Passport, key: Ed25519PrivateKey) -> HttpRequest:
    signer = RequestSigner(passport=passport.token, agent_key=key, clock=lambda: NOW)
    return HttpRequest.from_url("GET", URL, headers=signer.signed_headers("GET", URL, [], b""))


def _verifier(keyring: Keyring, cache: NonceCache | AsyncNonceCache) -> RequestVerifier:
    return RequestVerifier(
        passports=PassportValidator.from_keyring(keyring),
        nonce_cache=cache,
        policy=VerifierPolicy(authorities=("api.example.com",)),
        clock=lambda: float(NOW),
    )


@pytest.mark.redis
def test_averify_with_the_async_cache(
    keyring: Keyring, passport: Passport, agent_key: Ed25519PrivateKey, prefix: str
) -> None:
    request = _request(passport, agent_key)

    async def run() -> list[RejectionReason | None]:
        cache = AsyncRedisNonceCache.from_url(REDIS, prefix=prefix)
        verifier = _verifier(keyring, cache)
        out = []
        try:
            for _ in range(2):
                result = await verifier.averify(request, b"")
                out.append(None if result.rejection is None else result.rejection.reason)
        finally:
            await cache.aclose()
        return out

    assert asyncio.run(run()) == [None, RejectionReason.REPLAYED_NONCE]


def test_verify_refuses_an_async_cache_and_averify_accepts_a_sync_one(
    keyring: Keyring, passport: Passport, agent_key: Ed25519PrivateKey
) -> None:
    async_verifier = _verifier(keyring, AsyncRedisNonceCache.from_url("redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigurationError):
        async_verifier.verify(_request(passport, agent_key), b"")
    down = asyncio.run(async_verifier.averify(_request(passport, agent_key), b""))
    assert down.rejection is not None
    assert down.rejection.reason is RejectionReason.REPLAY_CACHE_UNAVAILABLE
    sync_verifier = _verifier(keyring, MemoryNonceCache(clock=lambda: float(NOW)))
    request = _request(passport, agent_key)
    assert asyncio.run(sync_verifier.averify(request, b"")).ok
    assert sync_verifier.verify(request, b"").rejection is not None  # replay, same cache
