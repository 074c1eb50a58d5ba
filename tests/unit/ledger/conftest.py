"""Fixtures of the ledger tests: exchanges, stores (SQLite and PostgreSQL), keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.keyring import KeyPurpose, SigningKey
from distillguard.ledger import key_id
from distillguard.records import Account, Exchange, Message
from distillguard.store import Store, open_store
from distillguard.store.base import new_salts

T0 = datetime(2026, 2, 23, 14, 5, 9, 123000, tzinfo=UTC)


def make_exchange(i: int, *, account: str = "acct-1") -> Exchange:
    """A realistic exchange numbered ``i``."""
    return Exchange(
        exchange_id=f"ex-{i:06d}",
        ts=T0 + timedelta(seconds=i, microseconds=17 * i),
        account_id=account,
        ip="203.0.113.7",
        model="teacher-large",
        messages=(
            Message(role="system", content="You are a helpful assistant."),
            Message(role="user", content=f"Think step by step: what is {i} * 7? Çava ✓"),
        ),
        prompt_tokens=40 + i % 13,
        completion_tokens=200 + i % 31,
        status=200,
        api_key_id="key-1",
        asn=64500,
        user_agent="python-httpx/0.28.1",
        endpoint="/v1/chat/completions",
        response=f"Step 1: ... the answer is {i * 7}.",
        reasoning="multiply" if i % 2 else None,
        tools=("calculator",) if i % 3 == 0 else None,
        latency_ms=812.5 + i,
    )


def add_records(store: Store, start: int, count: int) -> list[str]:
    """Store exchanges ``start .. start+count-1`` (and their account) in one transaction."""
    exchanges = [make_exchange(i) for i in range(start, start + count)]
    with store.transaction() as cur:
        store.add_accounts(cur, [Account(account_id="acct-1", created_at=T0)], run_id="t")
        store.add_exchanges(cur, list(zip(exchanges, new_salts(count), strict=True)), run_id="t")
    return [e.exchange_id for e in exchanges]


def signing_key() -> SigningKey:
    """A fresh ledger signing key (as the keyring would hand out)."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(
        kid=key_id(private.public_key()),
        purpose=KeyPurpose.LEDGER,
        created_at=T0,
        private_key=private,
    )


def _postgres_url(schema: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store, SQLite file or PostgreSQL schema of its own."""
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
        yield s
        s.close()
        return
    schema = f"dg_ledger_{uuid.uuid4().hex[:12]}"
    s = open_store(_postgres_url(schema))
    try:
        yield s
    finally:
        s.drop_schema()  # type: ignore[attr-defined]
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """An empty SQLite store in a file."""
    s = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.close()
