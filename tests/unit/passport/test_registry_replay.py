"""The passport registry (revocation list) and the nonce replay caches."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from distillguard.errors import StorageError
from distillguard.passport import (
    MemoryNonceCache,
    Passport,
    RedisNonceCache,
    SQLitePassportRegistry,
)

NOW = 1_800_000_000  # same instant as conftest.NOW


def test_registry_records_lists_and_revokes_durably(tmp_path: Path, passport: Passport) -> None:
    path = tmp_path / "reg.sqlite"
    reg = SQLitePassportRegistry(path)
    reg.record_issued(passport)
    assert not reg.is_revoked(passport.passport_id)
    first = reg.revoke(passport.passport_id, reason="campaign C-1", now=NOW)
    again = reg.revoke(passport.passport_id, reason="other", now=NOW + 5)
    assert again == first
    reg.close()
    reopened = SQLitePassportRegistry(path)
    assert reopened.is_revoked(passport.passport_id)
    (record,) = reopened.list_passports()
    assert record.status(NOW) == "revoked" and record.revocation == first
    assert record.agent_kid == passport.agent_kid and passport.token not in str(record.claims)
    assert [r.passport_id for r in reopened.revocations()] == [passport.passport_id]
    assert reopened.get("nope") is None
    reopened.close()


def test_registry_unwritable_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        SQLitePassportRegistry(blocker / "sub" / "reg.sqlite")


def test_memory_cache_detects_replay_and_expires() -> None:
    now = [100.0]
    cache = MemoryNonceCache(max_entries=3, clock=lambda: now[0])
    assert cache.check_and_store("k:a", ttl_s=10)
    assert not cache.check_and_store("k:a", ttl_s=10)
    assert cache.check_and_store("k:b", ttl_s=10)
    now[0] = 111.0
    assert cache.check_and_store("k:a", ttl_s=10)  # forgotten after its TTL
    for n in "cdef":
        cache.check_and_store("k:" + n, ttl_s=10)
    assert len(cache) == 3 and cache.evicted >= 1


@pytest.mark.redis
def test_redis_cache_is_shared_between_replicas() -> None:
    prefix = f"dg-test:{uuid.uuid4().hex}:"
    a = RedisNonceCache.from_url("redis://127.0.0.1:6379/0", prefix=prefix)
    b = RedisNonceCache.from_url("redis://127.0.0.1:6379/0", prefix=prefix)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert a.check_and_store("kid:n1", ttl_s=30)
        assert not b.check_and_store("kid:n1", ttl_s=30)  # another replica sees the replay
        assert b.check_and_store("kid:n2", ttl_s=30)
        ttl = client.ttl(prefix + "kid:n1")
        assert 0 < ttl <= 30
    finally:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


def test_redis_unreachable_is_a_storage_error() -> None:
    cache = RedisNonceCache.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StorageError):
        cache.check_and_store("k:n", ttl_s=5)
