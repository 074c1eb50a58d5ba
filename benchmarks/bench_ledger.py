"""Ledger speed: batched appends into SQLite, and inclusion proofs at 10 million leaves.

Measures, in one run and against baselines measured in the same run:

1. appends of exchange records through ``Ledger.append`` (the store's insert hook): RFC 8785
   canonicalization, salted commitments, leaf and node hashing, SQLite storage (target
   >= 100,000 records/s);
2. appends of the same pre-serialized entries (leaf data bytes) into the ledger's SQLite layout vs
   ``pymerkle``'s ``SqliteTree.append_entries``;
3. inclusion proof generation + verification, ours and pymerkle at the same size (1,000,000
   leaves; 100,000 with ``--quick``), each tree closed and reopened first, cold (the first proofs
   on the fresh connection) and warm; and ours alone at 10,000,000 leaves (target <= 1 ms).

    python benchmarks/bench_ledger.py            # full (builds a 10M-leaf tree: a few minutes)
    python benchmarks/bench_ledger.py --quick    # 100k / 1M leaves, fewer records
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distillguard.ledger import Ledger, audit_ledger, verify_inclusion
from distillguard.ledger._compact_range import CompactRange
from distillguard.ledger._leaf import commit_exchanges
from distillguard.ledger._log import STORED_MIN_LEVEL
from distillguard.records import Exchange, Message
from distillguard.store import Store, StoredExchange, open_store
from distillguard.store.base import new_salts

BATCH = 10_000
#: pymerkle's default ``append_entries`` chunk size; the pre-serialized comparison uses it for both.
PYMERKLE_CHUNK = 100_000


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


def bench_records(stored: list[StoredExchange], tmp: Path) -> tuple[float, float]:
    """Records/s through Ledger.append (commitments + tree + SQLite), one transaction per batch.

    Returns (records per wall-clock second, records per CPU second of this process): on a
    machine shared with other jobs the second is the steadier figure.
    """
    path = tmp / f"rec-{time.monotonic_ns()}.sqlite"
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(store)
    start = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(stored), BATCH):
        with store.transaction() as cur:
            ledger.append(cur, stored[i : i + BATCH])
    cpu = time.process_time() - cpu
    seconds = time.perf_counter() - start
    store.close()
    return len(stored) / seconds, len(stored) / cpu


def median_pair(repeats: int, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def raw_append(
    store: Store, entries: list[bytes], ids: list[str], *, batch: int, offset: int = 0
) -> None:
    """Append pre-serialized leaf data into the ledger's tables, as Ledger.append stores them.

    Leaf hash, tree nodes of height >= 4, one leaf row (index, exchange id, leaf hash, content
    hash), one ``ledger_segments`` row and the state update per batch.
    """
    sha = hashlib.sha256
    zero = bytes(32)
    tree = _FRONTIERS.setdefault(id(store), CompactRange())
    for i in range(0, len(entries), batch):
        hashes = [sha(b"\x00" + e).digest() for e in entries[i : i + batch]]
        nodes = tree.append(hashes, include_leaves=False, min_level=STORED_MIN_LEVEL)
        first = offset + i
        with store.transaction() as cur:
            cur.executemany(
                "INSERT INTO ledger_leaves (leaf_index, exchange_id, leaf_hash, content_hash) "
                "VALUES (?, ?, ?, ?)",
                zip(
                    range(first, first + len(hashes)),
                    ids[i : i + batch],
                    hashes,
                    [zero] * len(hashes),
                    strict=True,
                ),
            )
            cur.execute(
                "INSERT INTO ledger_segments (first_leaf, first_seq, count) VALUES (?, ?, ?)",
                (first, first + 1, len(hashes)),
            )
            cur.executemany("INSERT INTO ledger_nodes (node_id, hash) VALUES (?, ?)", nodes)
            cur.execute(
                "UPDATE ledger_state SET size = ?, root = ? WHERE id = 1", (tree.size, tree.root())
            )


_FRONTIERS: dict[int, CompactRange] = {}


def bench_raw(entries: list[bytes], ids: list[str], tmp: Path) -> tuple[float, float]:
    """(entries per wall-clock second, entries per CPU-second)."""
    store = open_store(f"sqlite:///{tmp / f'raw-{time.monotonic_ns()}.sqlite'}")
    Ledger.open(store)
    start = time.perf_counter()
    cpu = time.process_time()
    raw_append(store, entries, ids, batch=PYMERKLE_CHUNK)
    cpu = time.process_time() - cpu
    seconds = time.perf_counter() - start
    _FRONTIERS.pop(id(store), None)
    store.close()
    return len(entries) / seconds, len(entries) / cpu


def bench_pymerkle_append(
    entries: list[bytes], tmp: Path, *, like_ours: bool
) -> tuple[float, float]:
    """pymerkle ``SqliteTree.append_entries`` (its default chunks of 100,000, one transaction).

    ``like_ours``: the connection gets the store's settings (WAL, ``synchronous=NORMAL``,
    64 MB cache) instead of SQLite's defaults (rollback journal, ``synchronous=FULL``).
    """
    from pymerkle import SqliteTree

    tree = SqliteTree(str(tmp / f"pm-{time.monotonic_ns()}.db"))
    if like_ours:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA temp_store=MEMORY",
            "PRAGMA cache_size=-65536",
        ):
            tree.con.execute(pragma)
    start = time.perf_counter()
    cpu = time.process_time()
    tree.append_entries(entries)
    cpu = time.process_time() - cpu
    seconds = time.perf_counter() - start
    tree.close()
    return len(entries) / seconds, len(entries) / cpu


def bench_audit(stored: list[StoredExchange], tmp: Path) -> tuple[float, float]:
    """Records/s of ``audit_ledger`` over a store holding ``stored`` (wall, CPU)."""
    store = open_store(f"sqlite:///{tmp / f'audit-{time.monotonic_ns()}.sqlite'}")
    Ledger.attach(store)
    for i in range(0, len(stored), BATCH):
        with store.transaction() as cur:
            store.add_exchanges(cur, [(s.exchange, s.salt) for s in stored[i : i + BATCH]])
    ledger = Ledger.open(store)
    start = time.perf_counter()
    cpu = time.process_time()
    report = audit_ledger(ledger, public_keys=[])
    cpu = time.process_time() - cpu
    seconds = time.perf_counter() - start
    store.close()
    assert report.ok and report.leaves_checked == len(stored), report.findings[:3]
    return len(stored) / seconds, len(stored) / cpu


def build_ours(path: Path, size: int) -> None:
    """A ledger of ``size`` leaves (8-byte entries) in the SQLite file ``path``."""
    store = open_store(f"sqlite:///{path}")
    Ledger.open(store)
    step = 500_000
    for start in range(0, size, step):
        n = min(step, size - start)
        entries = [i.to_bytes(8, "big") for i in range(start, start + n)]
        ids = [f"e{i}" for i in range(start, start + n)]
        raw_append(store, entries, ids, batch=BATCH * 5, offset=start)
    _FRONTIERS.pop(id(store), None)
    store.close()


def proofs_ours(path: Path, size: int, cold: int, warm: int) -> tuple[float, float]:
    """Median ms of inclusion proof generation + verification on a freshly opened connection:
    the first ``cold`` proofs (empty SQLite page cache, nothing cached in the process; the OS
    file cache may hold the file), then ``warm`` more on the same connection."""
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.open(store)
    root = ledger.root_hash()
    rng = random.Random(7)
    times = []
    for _ in range(cold + warm):
        index = rng.randrange(size)
        t = time.perf_counter()
        proof = ledger.inclusion_proof(index=index, size=size)
        leaf = ledger.leaf(index)
        assert leaf is not None
        verify_inclusion(leaf_hash=leaf.leaf_hash, index=index, size=size, proof=proof, root=root)
        times.append(time.perf_counter() - t)
    store.close()
    return statistics.median(times[:cold]) * 1000, statistics.median(times[cold:]) * 1000


def build_pymerkle(path: Path, size: int) -> None:
    from pymerkle import SqliteTree

    tree = SqliteTree(str(path))
    tree.append_entries([i.to_bytes(8, "big") for i in range(size)])
    tree.close()


def proofs_pymerkle(path: Path, size: int, cold: int, warm: int) -> tuple[float, float]:
    """As :func:`proofs_ours` for pymerkle's ``SqliteTree`` reopened on its file."""
    from pymerkle import SqliteTree
    from pymerkle import verify_inclusion as pm_verify

    first = SqliteTree(str(path))  # the root on another instance: its subroot cache stays cold
    root = first.get_root(size)
    first.close()
    tree = SqliteTree(str(path))
    rng = random.Random(7)
    times = []
    for _ in range(cold + warm):
        index = rng.randrange(1, size + 1)  # pymerkle counts leaves from 1
        t = time.perf_counter()
        proof = tree.prove_inclusion(index, size)
        pm_verify(tree.get_leaf(index), root, proof)
        times.append(time.perf_counter() - t)
    tree.close()
    return statistics.median(times[:cold]) * 1000, statistics.median(times[cold:]) * 1000


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
        rec_runs = [bench_records(stored, tmp) for _ in range(repeats)]
        worst = min(r[1] for r in rec_runs)
        print(
            "[1] records appended via Ledger.append (JCS + commitments + tree + SQLite), every "
            "run: " + "; ".join(f"{w:,.0f}/s wall, {c:,.0f} per CPU-second" for w, c in rec_runs)
        )
        print(
            f"    worst run {worst:,.0f} records per CPU-second: target >= 100,000 in every run "
            f"{'met' if worst >= 100_000 else 'NOT met'} (ratio {worst / 100_000:.2f})"
        )
        pairs = commit_exchanges([(s.exchange, s.salt) for s in stored])
        entries = [
            b'{"content":"%s","meta":"%s","v":1}' % (ch.hex().encode(), lh.hex().encode())
            for lh, ch in pairs
        ]
        ids = [s.exchange.exchange_id for s in stored]
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "pm": [], "pm_like": []}
        for _ in range(repeats):  # interleaved, so that load changes hit all three alike
            runs["ours"].append(bench_raw(entries, ids, tmp))
            runs["pm"].append(bench_pymerkle_append(entries, tmp, like_ours=False))
            runs["pm_like"].append(bench_pymerkle_append(entries, tmp, like_ours=True))
        med = {
            k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
            for k, v in runs.items()
        }
        print(f"[2] pre-serialized entries into SQLite, chunks of {PYMERKLE_CHUNK:,}:")
        for label, k in (
            ("ledger (WAL, synchronous=NORMAL)", "ours"),
            ("pymerkle SqliteTree, its defaults (rollback journal, sync FULL)", "pm"),
            ("pymerkle SqliteTree, our settings (WAL, sync NORMAL)", "pm_like"),
        ):
            print(f"    {label:66} {med[k][0]:>10,.0f}/s wall {med[k][1]:>10,.0f}/s CPU")
        for k, label in (("pm", "defaults"), ("pm_like", "our settings")):
            print(
                f"    ratio ledger/pymerkle ({label}): {med['ours'][0] / med[k][0]:.2f} wall, "
                f"{med['ours'][1] / med[k][1]:.2f} CPU"
            )
        audit_rate, audit_cpu = median_pair(repeats, lambda: bench_audit(stored, tmp))
        print(
            f"[4] ledger audit (recommit every record, rebuild the tree, compare nodes): "
            f"{audit_rate:,.0f} records/s wall, {audit_cpu:,.0f} per CPU-second"
        )
        # Proofs: ours and pymerkle at the same size, each built, closed, and reopened on a
        # fresh connection; "cold" = the first proofs after reopening, "warm" = the next ones.
        same = 100_000 if args.quick else 1_000_000
        print(f"building ledger and pymerkle trees of {same:,} leaves ...", flush=True)
        build_ours(tmp / "same.sqlite", same)
        build_pymerkle(tmp / "pm-same.db", same)
        cold, warm = 200, 2000
        o_cold, o_warm = proofs_ours(tmp / "same.sqlite", same, cold, warm)
        p_cold, p_warm = proofs_pymerkle(tmp / "pm-same.db", same, cold, warm)
        print(
            f"[3] inclusion proof generation + verification at {same:,} leaves, ms (median; cold "
            f"= first {cold} after reopening, warm = next {warm}):"
        )
        print(f"    ledger   cold {o_cold:.3f}  warm {o_warm:.3f}")
        print(f"    pymerkle cold {p_cold:.3f}  warm {p_warm:.3f}")
        print(
            f"    ratio pymerkle/ledger: cold {p_cold / o_cold:.1f}x, warm {p_warm / o_warm:.1f}x"
        )
        print(f"building a ledger of {big:,} leaves ...", flush=True)
        t = time.perf_counter()
        build_ours(tmp / "big.sqlite", big)
        print(f"    built in {time.perf_counter() - t:.0f} s")
        b_cold, b_warm = proofs_ours(tmp / "big.sqlite", big, cold, warm)
        print(
            f"    ledger at {big:,} leaves: cold {b_cold:.3f} ms, warm {b_warm:.3f} ms "
            f"(target 1 ms: {'met' if max(b_cold, b_warm) <= 1 else 'NOT met'})"
        )
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
