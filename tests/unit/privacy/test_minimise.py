"""Minimisation at ingest: an insert hook after the ledger's; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from distillguard.config import RetentionSettings
from distillguard.errors import ConfigurationError
from distillguard.ledger import Ledger, audit_ledger, verify_bundle
from distillguard.privacy import Minimiser, RetentionPolicy
from distillguard.records import Message
from distillguard.store import Store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

from .conftest import ledger_key


def _policy(**kw: object) -> RetentionPolicy:
    return RetentionPolicy.from_settings(RetentionSettings.model_validate(kw))


POLICY = _policy(
    overrides=[
        {"tiers": ["enterprise"], "minimise": "hash"},
        {"channels": ["education"], "minimise": "truncate:12"},
        {"accounts": ["acct-drop"], "minimise": "drop"},
    ]
)
PROMPT = "Explain step by step how to reverse a linked list in C."


def _ingest(store: Store) -> dict[str, str]:
    accounts = [
        make_account("acct-free", tier="free"),
        make_account("acct-ent", tier="enterprise"),
        make_account("acct-edu", tier="free", signup_channel="education"),
        make_account("acct-drop", tier="free"),
    ]
    exchanges = []
    for acct in ("acct-free", "acct-ent", "acct-edu", "acct-drop"):
        for i in range(2):
            exchanges.append(
                make_exchange(
                    f"{acct}-{i}",
                    account_id=acct,
                    offset_s=i,
                    messages=(Message("system", "Be terse."), Message("user", PROMPT)),
                    response=f"First, keep three pointers ({i}).",
                    reasoning="think" if i else None,
                )
            )
    with store.transaction() as cur:
        store.add_accounts(cur, accounts, run_id="t")
        store.add_exchanges(cur, list(zip(exchanges, new_salts(len(exchanges)), strict=True)))
    return {e.exchange_id: e.account_id for e in exchanges}


def test_minimisation_after_the_ledger(store: Store) -> None:
    ledger = Ledger.attach(store)
    key = ledger_key()
    ledger.signing_key = key  # what `ingest` does when a keyring exists
    minimiser = Minimiser.attach(store, ledger=ledger, policy=POLICY)
    assert minimiser is not None
    assert Minimiser.attach(store, ledger=ledger, policy=POLICY) is minimiser  # one hook
    _ingest(store)
    assert minimiser.minimised == 6

    free = store.get_exchange("acct-free-1")
    assert free is not None and free.exchange.messages[1].content == PROMPT

    ent = store.get_exchange("acct-ent-1")
    assert ent is not None
    digest = "sha256:" + hashlib.sha256(PROMPT.encode()).hexdigest()
    assert ent.exchange.messages[1].content == digest
    assert [m.role for m in ent.exchange.messages] == ["system", "user"]
    assert ent.exchange.response is not None and ent.exchange.response.startswith("sha256:")
    assert ent.exchange.prompt_tokens == 21 and ent.exchange.ip == "203.0.113.7"  # metadata kept
    # equal prompts give equal digests: exact-repeat (template) counts still work
    ent0 = store.get_exchange("acct-ent-0")
    assert ent0 is not None and ent0.exchange.messages[1].content == digest

    edu = store.get_exchange("acct-edu-1")
    assert edu is not None and edu.exchange.messages[1].content == PROMPT[:12]
    assert edu.exchange.reasoning == "think"[:12]
    dropped = store.get_exchange("acct-drop-0")
    assert dropped is not None and dropped.exchange.messages[1].content == ""
    assert dropped.exchange.reasoning is None

    ledger.publish_checkpoint(key)
    report = audit_ledger(ledger, public_keys=[key.public_key()])
    assert report.ok, [f.message for f in report.findings]
    reasons = {(e.exchange_id, e.scope, e.reason) for e in report.erased}
    assert ("acct-ent-0", "content", "minimisation: hash") in reasons
    assert ("acct-edu-1", "content", "minimisation: truncate:12") in reasons
    assert len(reasons) == 6 and not any(e.startswith("acct-free") for e, _, _ in reasons)
    # metadata of a minimised exchange is still provable to a third party
    bundle = ledger.prove("acct-ent-1")
    assert not bundle.content_included
    assert verify_bundle(bundle.to_dict(), public_keys=[key.public_key()]).exchange_id == (
        "acct-ent-1"
    )


def test_keep_policy_registers_nothing(store: Store) -> None:
    ledger = Ledger.attach(store)
    assert Minimiser.attach(store, ledger=ledger, policy=_policy()) is None
    assert store.insert_hooks.names() == (Ledger.HOOK,)


def test_default_rule_without_overrides(store: Store) -> None:
    ledger = Ledger.attach(store)
    Minimiser.attach(store, ledger=ledger, policy=_policy(minimise="truncate:5"))
    _ingest(store)
    stored = store.get_exchange("acct-free-0")
    assert stored is not None and stored.exchange.messages[1].content == PROMPT[:5]


def test_ledger_must_come_first(store: Store) -> None:
    ledger = Ledger.open(store)  # opened, not attached: no hook
    with pytest.raises(ConfigurationError, match="ledger attached"):
        Minimiser.attach(store, ledger=ledger, policy=POLICY)
