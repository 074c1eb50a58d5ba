"""Test helpers of the evidence package: a synthetic scan output folder and a small world (a log
stored with its ledger, a keyring, a scan that found one campaign)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from distillguard._internal.timeutil import parse_rfc3339, to_micros
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger
from distillguard.records import Message
from distillguard.results import ACCOUNT_SCORES_SCHEMA, Campaign
from distillguard.results import write_scan as write_scan_results
from distillguard.store import open_store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange, write_log

__all__ = ["CAMPAIGN", "EMAIL", "World", "build_world", "write_scan"]

#: The campaign id of :func:`write_scan`.
CAMPAIGN = "camp-test0001"
#: The e-mail address in every prompt of :func:`build_world` (redaction must hide it).
EMAIL = "jane.doe@example.org"


@dataclass(frozen=True)
class World:
    """Where everything is."""

    store_url: str
    keyring_path: Path
    scan_dir: Path
    campaign_accounts: tuple[str, ...]


def write_scan(folder: Path, campaign_accounts: list[str], other_accounts: list[str]) -> Path:
    """A scan output folder (format v1 "Results of a scan", written by
    :func:`distillguard.results.write_scan`) with one campaign."""
    rows = [
        {
            "account_id": a,
            "score": 0.9 - i * 0.01,
            "flagged": True,
            "campaign_id": CAMPAIGN,
            "reasons": [f"elicits reasoning/grading in {20 + i}/30 requests (base 2%, p=1e-9)"],
        }
        for i, a in enumerate(campaign_accounts)
    ] + [
        {"account_id": a, "score": 0.01, "flagged": False, "campaign_id": None, "reasons": []}
        for a in other_accounts
    ]
    table = pa.Table.from_pylist(rows, schema=ACCOUNT_SCORES_SCHEMA)
    table = table.append_column("exchanges", pa.array([6] * len(rows), pa.int64()))
    first = to_micros(parse_rfc3339("2026-02-23T14:05:09.123000Z"))
    campaign = Campaign(
        campaign_id=CAMPAIGN,
        accounts=campaign_accounts,
        score=0.85,
        first_seen_us=first,
        last_seen_us=first + 2 * 3600 * 1_000_000,
        exchanges=6 * len(campaign_accounts),
        signals={
            "accounts": len(campaign_accounts),
            "elicitation_share": 0.6,
            "elicitation_base_rate": 0.02,
            "shared_payment_accounts": len(campaign_accounts),
            "synchrony_p": 1e-12,
        },
    )
    summary = {"accounts_read": len(rows), "accounts_flagged": len(campaign_accounts)}
    write_scan_results(folder, accounts=table, campaigns=[campaign], summary=summary)
    return folder


def build_world(tmp_path: Path, store_url: str) -> World:
    """Store a small world with its ledger (campaign accounts share a card and a /24; the same
    records are written as a log under ``tmp_path/log``) and write a scan folder."""
    campaign = [f"acct-c{i}" for i in range(6)]
    others = [f"acct-o{i}" for i in range(4)]
    accounts = [make_account(a, payment_fingerprint="card-shared") for a in campaign] + [
        make_account(a) for a in others
    ]
    exchanges = []
    for i, a in enumerate(campaign + others):
        for j in range(6):
            prompt = f"Explain step by step, then email me at {EMAIL} ({a}, {j})"
            exchanges.append(
                make_exchange(
                    f"ex-{a}-{j}",
                    account_id=a,
                    offset_s=60.0 * (6 * i + j),
                    ip=f"198.51.100.{i}" if a in campaign else f"203.0.{i}.9",
                    completion_tokens=10 + j,
                    messages=(Message("user", prompt),),
                )
            )
    write_log(tmp_path / "log", accounts, exchanges)  # the same records as a log folder
    ring_path = tmp_path / "keyring.json"
    ring = Keyring.create(ring_path)
    with open_store(store_url) as store:
        ledger = Ledger.attach(store)  # every exchange stored below becomes a leaf
        with store.transaction() as cur:
            store.add_accounts(cur, accounts, run_id="evidence-testing")
            store.add_exchanges(
                cur,
                list(zip(exchanges, new_salts(len(exchanges)), strict=True)),
                run_id="evidence-testing",
            )
        ledger.publish_checkpoint(ring.signing_key(KeyPurpose.LEDGER))
    scan_dir = write_scan(tmp_path / "scan", campaign, others)
    return World(store_url, ring_path, scan_dir, tuple(campaign))
