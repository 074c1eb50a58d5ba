"""Fixtures of the privacy tests: a store with a ledger and accounts of several ages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.keyring import KeyPurpose, SigningKey
from distillguard.ledger import Ledger, key_id
from distillguard.records import Exchange
from distillguard.store import Store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: Ages in days of each account's exchanges.
AGES = (1, 10, 40, 100, 400, 800)
ACCOUNTS = {"acct-free": "free", "acct-ent": "enterprise", "acct-vip": "free"}


def ledger_key() -> SigningKey:
    """A fresh ledger signing key, as the keyring hands it out."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(
        kid=key_id(private.public_key()),
        purpose=KeyPurpose.LEDGER,
        created_at=NOW,
        private_key=private,
    )


def exchange_id(account: str, age: int) -> str:
    return f"{account}-d{age}"


@dataclass
class World:
    store: Store
    ledger: Ledger
    key: SigningKey
    originals: dict[str, Exchange]


def populate(store: Store, *, attach: bool = True) -> World:
    """Three accounts, one exchange per age in :data:`AGES`, a ledger and a checkpoint."""
    ledger = Ledger.attach(store) if attach else Ledger.open(store)
    exchanges = [
        make_exchange(
            exchange_id(acct, age),
            account_id=acct,
            ts=NOW - timedelta(days=age, minutes=5),
            response=f"answer for {acct} at {age} days",
            reasoning="step 1, step 2" if age % 2 == 0 else None,
        )
        for acct in ACCOUNTS
        for age in AGES
    ]
    with store.transaction() as cur:
        store.add_accounts(
            cur,
            [make_account(a, tier=t, signup_channel="self_serve") for a, t in ACCOUNTS.items()],
            run_id="t",
        )
        store.add_exchanges(cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)))
    key = ledger_key()
    ledger.publish_checkpoint(key, timestamp=NOW - timedelta(hours=1))
    return World(store, ledger, key, {e.exchange_id: e for e in exchanges})


@pytest.fixture
def world(store: Store) -> World:
    return populate(store)
