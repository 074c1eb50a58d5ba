"""Retention and minimisation cost on SQLite: what the ledger bookkeeping adds.

1. ``apply_retention`` erasing every record (metadata limit passed) of a store of N exchanges
   with its ledger: planning query, one ``ledger_erasures`` row per exchange through
   ``Ledger.record_erasure``, the deletes, the receipt. Baseline in the same run: a bare
   ``DELETE FROM exchanges WHERE ts < ?`` on an identical copy (no plan, holds or ledger record).
2. Ingest with minimisation ``hash`` for every account (the hook rewrites content and records a
   content erasure per exchange) vs ingest with the ledger alone.

Medians over repeats on fresh copies. N = 50,000 (10,000 with --quick).

    .venv/bin/python benchmarks/bench_retention.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distillguard.config import RetentionSettings
from distillguard.ledger import Ledger
from distillguard.privacy import Minimiser, RetentionPolicy, apply_retention
from distillguard.records import Exchange
from distillguard.store import Store, open_store
from distillguard.store.base import new_salts
from distillguard.testing import make_account, make_exchange

NOW = datetime(2026, 6, 1, tzinfo=UTC)
BATCH = 5000


def exchanges(n: int) -> list[Exchange]:
    return [
        make_exchange(
            f"ex-{i:07d}", account_id=f"acct-{i % 100}", ts=NOW - timedelta(days=400, seconds=i)
        )
        for i in range(n)
    ]


def fill(store: Store, records: list[Exchange]) -> float:
    """Store the records in batches (ledger and other hooks run); returns seconds."""
    t0 = time.perf_counter()
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account(f"acct-{i}") for i in range(100)], run_id="b")
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        with store.transaction() as cur:
            store.add_exchanges(cur, list(zip(batch, new_salts(len(batch)), strict=True)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records, 3 repeats")
    args = parser.parse_args()
    n = 10_000 if args.quick else 50_000
    repeats = 3 if args.quick else 5
    records = exchanges(n)
    policy = RetentionPolicy.from_settings(RetentionSettings(content_days=30, metadata_days=365))
    hashing = RetentionPolicy.from_settings(RetentionSettings(minimise="hash"))

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.sqlite"
        with open_store(f"sqlite:///{base}") as store:
            Ledger.attach(store)
            fill(store, records)

        t_apply: list[float] = []
        t_delete: list[float] = []
        t_ingest: list[float] = []
        t_minimise: list[float] = []
        for r in range(repeats):
            a, b = Path(tmp) / f"a{r}.sqlite", Path(tmp) / f"b{r}.sqlite"
            shutil.copy(base, a)
            shutil.copy(base, b)
            with open_store(f"sqlite:///{a}") as store:
                t0 = time.perf_counter()
                result = apply_retention(store, policy, now=NOW, actor="bench")
                t_apply.append(time.perf_counter() - t0)
                assert len(result.plan.records) == n and store.count("exchanges") == 0
            with open_store(f"sqlite:///{b}") as store:
                t0 = time.perf_counter()
                with store.transaction() as cur:
                    cutoff = int((NOW - timedelta(days=365)).timestamp() * 1_000_000)
                    cur.execute(store.q("DELETE FROM exchanges WHERE ts < ?"), (cutoff,))
                t_delete.append(time.perf_counter() - t0)
                assert store.count("exchanges") == 0
            for minimise, times in ((False, t_ingest), (True, t_minimise)):
                path = Path(tmp) / f"i{r}{int(minimise)}.sqlite"
                with open_store(f"sqlite:///{path}") as store:
                    ledger = Ledger.attach(store)
                    if minimise:
                        Minimiser.attach(store, ledger=ledger, policy=hashing)
                    times.append(fill(store, records))

    med = statistics.median
    print(f"records: {n:,} (SQLite file, 2-core VM)")
    ratio = med(t_delete) / med(t_apply)
    print(f"retention apply (plan + ledger erasure records + delete): {n / med(t_apply):9,.0f} /s")
    print(f"bare DELETE baseline:                                   {n / med(t_delete):9,.0f} /s")
    print(f"ratio apply / bare delete speed:                        {ratio:9.3f}")
    print(f"ingest with ledger:                   {n / med(t_ingest):10,.0f} exchanges/s")
    print(f"ingest with ledger + minimise=hash:   {n / med(t_minimise):10,.0f} exchanges/s")
    print(f"ratio minimised / plain ingest speed: {med(t_ingest) / med(t_minimise):10.3f}")


if __name__ == "__main__":
    main()
