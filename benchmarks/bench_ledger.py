"""Ledger speed: batched appends into SQLite, and inclusion proofs at 10 million leaves.

Measures, in one run and against baselines measured in the same run:

1. appends of exchange records through ``Ledger.append`` (the store's insert hook): RFC 8785
   canonicalization, salted commitments, leaf and node hashing, SQLite storage (target
   >= 100,000 records/s);
2. appends of the same pre-serialized entries (leaf data bytes) into the ledger's SQLite layout vs
   ``pymerkle``'s ``SqliteTree.append_entries``;
3. inclusion proof generation + verification at 10,000,000 leaves (target <= 1 ms), vs pymerkle
   at 50,000 leaves.

    python benchmarks/bench_ledger.py            # full (builds a 10M-leaf tree: a few minutes)
    python benchmarks/bench_ledger.py --quick    # 1M leaves, fewer records
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distillguard.ledger import Ledger
from distillguard.ledger.compact_range import CompactRange
from distillguard.ledger.leaf import commit_exchanges
from distillguard.ledger.log import STORED_MIN_LEVEL
from distillguard.ledger.verify import verify_inclusion
from distillguard.records.model import Exchange, Message
from distillguard.store import Store, StoredExchange, open_store
from distillguard.store.base import new_salts

BATCH = 10_000


def records(n: int) -> list[StoredExchange]:
    t0 = datetime(2026, 2, 23, tzinfo=UTC)
    salts = new_salts(n)
    return [
        StoredExchange(
            exchange=Exchange(
                exchange_id=f"ex-{i:09d}",
                ts=t0 + timedelta(microseconds=1234 * i),
                account_id=f"acct-{i % 977}",
                ip=f"203.0.113.{i % 250}",
                model="teacher-large",
                messages=(
                    Message("system", "You are a helpful assistant."),
                    Message("user", f"Explain step by step why {i} is interesting."),
                ),
                prompt_tokens=40 + i % 50,
                completion_tokens=300 + i % 200,
                status=200,
                api_key_id=f"key-{i % 977}",
                asn=64500 + i % 20,
                user_agent="python-httpx/0.28.1",
                endpoint="/v1/chat/completions",
                response="Step 1: consider the number. " * 8,
                latency_ms=800.0 + (i % 1000) / 8,
            ),
            salt=salts[i],
            seq=i + 1,
        )
        for i in range(n)
    ]


def median_of(repeats: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeats))


def bench_records(stored: list[StoredExchange], tmp: Path) -> float:
    """Records/s through Ledger.append (commitments + tree + SQLite), one transaction per batch."""
    path = tmp / f"rec-{time.monotonic_ns()}.sqlite"
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(store)
    start = time.perf_counter()
    for i in range(0, len(stored), BATCH):
        with store.transaction() as cur:
            ledger.append(cur, stored[i : i + BATCH])
    seconds = time.perf_counter() - start
    store.close()
    return len(stored) / seconds


def raw_append(store: Store, ledger: Ledger, entries: list[bytes], ids: list[str]) -> None:
    """Append pre-serialized leaf data into the ledger's tables, as Ledger.append stores them."""
    sha = hashlib.sha256
    zero = bytes(32)
    tree = CompactRange()
    for i in range(0, len(entries), BATCH):
        hashes = [sha(b"\x00" + e).digest() for e in entries[i : i + BATCH]]
        nodes = tree.append(hashes, include_leaves=False, min_level=STORED_MIN_LEVEL)
        with store.transaction() as cur:
            cur.executemany(
                "INSERT INTO ledger_leaves (leaf_index, exchange_id, leaf_hash, content_hash) "
                "VALUES (?, ?, ?, ?)",
                zip(
                    range(i, i + len(hashes)),
                    ids[i : i + BATCH],
                    hashes,
                    [zero] * len(hashes),
                    strict=True,
                ),
            )
            cur.executemany("INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)", nodes)
            cur.execute(
                "UPDATE ledger_state SET size = ?, root = ? WHERE id = 1", (tree.size, tree.root())
            )


def bench_raw(entries: list[bytes], ids: list[str], tmp: Path) -> float:
    store = open_store(f"sqlite:///{tmp / f'raw-{time.monotonic_ns()}.sqlite'}")
    ledger = Ledger.open(store)
    start = time.perf_counter()
    raw_append(store, ledger, entries, ids)
    seconds = time.perf_counter() - start
    store.close()
    return len(entries) / seconds


def bench_pymerkle_append(entries: list[bytes], tmp: Path) -> float:
    from pymerkle import SqliteTree

    tree = SqliteTree(str(tmp / f"pm-{time.monotonic_ns()}.db"))
    start = time.perf_counter()
    tree.append_entries(entries)
    seconds = time.perf_counter() - start
    tree.close()
    return len(entries) / seconds


def bench_proofs(size: int, tmp: Path, samples: int) -> float:
    """Median ms of inclusion proof generation + verification in a tree of ``size`` leaves."""
    store = open_store(f"sqlite:///{tmp / 'big.sqlite'}")
    ledger = Ledger.open(store)
    step = 500_000
    for start in range(0, size, step):
        n = min(step, size - start)
        entries = [i.to_bytes(8, "big") for i in range(start, start + n)]
        ids = [f"e{i}" for i in range(start, start + n)]
        # Appending continues the tree: reuse raw_append on a slice with a persistent frontier.
        _raw_continue(store, entries, ids, start)
    root = ledger.root_hash()
    rng = random.Random(7)
    times = []
    for _ in range(samples):
        index = rng.randrange(size)
        t = time.perf_counter()
        proof = ledger.inclusion_proof(index=index, size=size)
        leaf = ledger.leaf(index)
        assert leaf is not None
        verify_inclusion(leaf_hash=leaf.leaf_hash, index=index, size=size, proof=proof, root=root)
        times.append(time.perf_counter() - t)
    store.close()
    return statistics.median(times) * 1000


_FRONTIER = CompactRange()


def _raw_continue(store: Store, entries: list[bytes], ids: list[str], offset: int) -> None:
    sha = hashlib.sha256
    zero = bytes(32)
    tree = _FRONTIER
    for i in range(0, len(entries), BATCH * 5):
        hashes = [sha(b"\x00" + e).digest() for e in entries[i : i + BATCH * 5]]
        nodes = tree.append(hashes, include_leaves=False, min_level=STORED_MIN_LEVEL)
        with store.transaction() as cur:
            cur.executemany(
                "INSERT INTO ledger_leaves (leaf_index, exchange_id, leaf_hash, content_hash) "
                "VALUES (?, ?, ?, ?)",
                zip(
                    range(offset + i, offset + i + len(hashes)),
                    ids[i : i + BATCH * 5],
                    hashes,
                    [zero] * len(hashes),
                    strict=True,
                ),
            )
            cur.executemany("INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)", nodes)
            cur.execute(
                "UPDATE ledger_state SET size = ?, root = ? WHERE id = 1", (tree.size, tree.root())
            )


def bench_pymerkle_proofs(size: int, tmp: Path, samples: int) -> float:
    from pymerkle import SqliteTree
    from pymerkle import verify_inclusion as pm_verify

    tree = SqliteTree(str(tmp / "pm-proofs.db"))
    tree.append_entries([i.to_bytes(8, "big") for i in range(size)])
    root = tree.get_root()
    rng = random.Random(7)
    times = []
    for _ in range(samples):
        index = rng.randrange(1, size + 1)  # pymerkle counts leaves from 1
        t = time.perf_counter()
        proof = tree.prove_inclusion(index)
        pm_verify(tree.get_leaf(index), root, proof)
        times.append(time.perf_counter() - t)
    tree.close()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a fast check")
    args = parser.parse_args()
    n_records = 50_000 if args.quick else 200_000
    big = 1_000_000 if args.quick else 10_000_000
    repeats = 3
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as d:
        tmp = Path(d)
        print(f"preparing {n_records:,} records ...", flush=True)
        stored = records(n_records)
        rec_rate = median_of(repeats, lambda: bench_records(stored, tmp))
        print(
            f"[1] records appended via Ledger.append (JCS + commitments + tree + SQLite): "
            f"{rec_rate:,.0f} records/s (target 100,000: ratio {rec_rate / 100_000:.2f})"
        )
        pairs = commit_exchanges([(s.exchange, s.salt) for s in stored])
        entries = [
            b'{"content":"%s","meta":"%s","v":1}' % (ch.hex().encode(), lh.hex().encode())
            for lh, ch in pairs
        ]
        ids = [s.exchange.exchange_id for s in stored]
        ours = median_of(repeats, lambda: bench_raw(entries, ids, tmp))
        theirs = median_of(repeats, lambda: bench_pymerkle_append(entries, tmp))
        print(
            f"[2] pre-serialized entries into SQLite: ledger {ours:,.0f}/s, pymerkle SqliteTree "
            f"{theirs:,.0f}/s (ratio ledger/pymerkle {ours / theirs:.2f})"
        )
        print(f"building a tree of {big:,} leaves in SQLite ...", flush=True)
        t = time.perf_counter()
        ms = bench_proofs(big, tmp, samples=2000)
        print(f"    built in {time.perf_counter() - t:.0f} s")
        pm_ms = bench_pymerkle_proofs(50_000, tmp, samples=300)
        print(
            f"[3] inclusion proof generation + verification: ledger {ms:.3f} ms at {big:,} "
            f"leaves (target 1 ms: ratio {ms:.2f}); pymerkle {pm_ms:.3f} ms at 50,000 leaves "
            f"(speed-up {pm_ms / ms:.1f}x)"
        )


if __name__ == "__main__":
    main()
