"""Ingest benchmark: exchanges/s into SQLite and PostgreSQL, per-record cost by size, peak memory,
against a pandas baseline that loads the same rows into a table with the same keys.

Targets (issue 23): 1,000,000 exchanges (about 1.2 KB each, JSONL) into SQLite in <= 35 s wall and
at >= 1.5x the baseline's records/s; into PostgreSQL in <= 60 s; peak memory <= 500 MB; the
per-record cost flat from 100,000 to 1,000,000 (and 4,000,000) exchanges. The DistillGuard figure
includes validation of every record, quarantine bookkeeping, duplicate detection, salts and the
ledger append (canonical JSON, hashing, tree nodes) in the same transaction(s).

Modes: ``atomic`` (the default of ``distillguard ingest``: the whole run is one transaction),
``batches`` (``--commit-batches``: one transaction per batch of 5,000), both on the bulk path (the
default: records proven valid by ``records._bulk`` are encoded in one pass, rows inserted in
batches, leaves appended by the ingest service), and ``record`` (atomic on the record path,
``ingest_log(bulk=False)``: frozen records, the store's row encoding and the ledger's insert hook;
the previous implementation, for a same-run comparison).

Baseline, same run, same number of rows as each DistillGuard run: pandas ``read_json``
(lines, chunks of 50,000) + ``to_sql`` into SQLite, into a table created beforehand with the same
keys as the store's ``exchanges`` table (``exchange_id`` primary key, ``seq`` unique, the
``(account_id, ts)`` and ``(ts)`` indexes), nested fields dumped to JSON strings, with the same
SQLite settings as the store (WAL, ``synchronous=NORMAL``); no validation and no ledger.

Each run is a fresh subprocess so that its peak RSS is its own. Everything printed is measured in
this run; the load average and the machine are printed with it.

    python benchmarks/bench_ingest.py                         # 100,000 and 1,000,000 exchanges
    python benchmarks/bench_ingest.py --sizes 100000,1000000,4000000
    python benchmarks/bench_ingest.py --quick                 # 100,000 exchanges, SQLite only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _logs import write_log  # noqa: E402

PG_BASE = os.environ.get("DG_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")

DG_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from distillguard.store import open_store
from distillguard.app.ingest import ingest_log
url, log = sys.argv[1], Path(sys.argv[2])
atomic, bulk = sys.argv[3] == "atomic", sys.argv[4] == "bulk"
store = open_store(url)
blocks, state = [], {"read": 0, "mark": 0, "cpu": time.process_time()}
def progress(k):  # CPU time of each 100,000 exchanges read: is the per-record cost flat?
    state["read"] += k
    if state["read"] - state["mark"] >= 100_000:
        now = time.process_time()
        blocks.append(1e6 * (now - state["cpu"]) / (state["read"] - state["mark"]))
        state["mark"], state["cpu"] = state["read"], now
t = time.perf_counter()
c = time.process_time()
result = ingest_log(store, log, batch_size=5000, atomic=atomic, bulk=bulk, on_progress=progress)
seconds = time.perf_counter() - t
cpu_run = time.process_time() - c
assert result.reconciles and result.exchanges.quarantined == 0, result.to_dict()
if url.startswith("postgresql"):
    store.drop_schema()
store.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "n": result.exchanges.inserted, "cpu_s": cpu_run,
                  "rss_mb": ru.ru_maxrss / 1024, "blocks": blocks}))
"""

PANDAS_CHILD = r"""
import json, resource, sqlite3, sys, time
import pandas as pd
db, log, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
t = time.perf_counter()
c = time.process_time()
n = 0
for chunk in pd.read_json(log + "/exchanges.jsonl", lines=True, chunksize=50_000, nrows=limit):
    for col in ("messages", "tools"):
        if col in chunk:
            chunk[col] = chunk[col].map(json.dumps)
    chunk["ts"] = chunk["ts"].astype(str)
    chunk.insert(1, "seq", range(n + 1, n + 1 + len(chunk)))
    if n == 0:  # the store's keys: primary key, unique seq, the two indexes
        cols = ", ".join(f'"{c}"' for c in chunk.columns if c not in ("exchange_id", "seq"))
        conn.execute(
            f"CREATE TABLE exchanges (exchange_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, "
            f"{cols})"
        )
        conn.execute("CREATE INDEX exchanges_account_ts ON exchanges (account_id, ts)")
        conn.execute("CREATE INDEX exchanges_ts ON exchanges (ts)")
    chunk.to_sql("exchanges", conn, if_exists="append", index=False)
    n += len(chunk)
conn.commit()
seconds = time.perf_counter() - t
cpu_run = time.process_time() - c
(rows,) = conn.execute("SELECT count(*) FROM exchanges").fetchone()
assert rows == n, (rows, n)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "n": n, "cpu_s": cpu_run, "rss_mb": ru.ru_maxrss / 1024}))
"""


def _run(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()[0]
    return result


def _log(n: int) -> Path:
    cache = HERE / "out" / f"log-{n}"
    if not (cache / "exchanges.jsonl").exists():
        print(f"writing a {n:,}-exchange log to {cache} ...", flush=True)
        write_log(cache, n)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated log sizes")
    parser.add_argument("--quick", action="store_true", help="100,000 exchanges, SQLite only")
    parser.add_argument(
        "--modes", default="atomic,batches,record", help="any of atomic, batches, record"
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip pandas (for a large size whose per-record cost alone is wanted)",
    )
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    postgres = not (args.quick or args.no_postgres)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the start: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for n in sizes:
        cache = _log(n)
        size_mb = (cache / "exchanges.jsonl").stat().st_size / 1e6
        print(f"log: {n:,} exchanges, {size_mb:,.0f} MB JSONL", flush=True)
        work = Path(tempfile.mkdtemp(prefix="dg-bench-ingest-"))
        try:
            for mode in modes:
                db = work / f"dg-{mode}.sqlite"
                atomic = "batches" if mode == "batches" else "atomic"
                path = "record" if mode == "record" else "bulk"
                r = _run(DG_CHILD, f"sqlite:///{db}", str(cache), atomic, path)
                name = "atomic, record path" if mode == "record" else mode
                rows.append((n, f"distillguard -> SQLite, {name}", r))
                print(f"  {rows[-1][1]}: {r['seconds']:.1f} s", flush=True)
                for p in work.glob("dg-*"):
                    p.unlink()
            if postgres:
                url = f"{PG_BASE}?schema=bench_{uuid.uuid4().hex[:8]}"
                r = _run(DG_CHILD, url, str(cache), "atomic", "bulk")
                rows.append((n, "distillguard -> PostgreSQL, atomic", r))
                print(f"  {rows[-1][1]}: {r['seconds']:.1f} s", flush=True)
            if not args.no_baseline:
                r = _run(PANDAS_CHILD, str(work / "pandas.sqlite"), str(cache), str(n))
                rows.append((n, "baseline pandas read_json+to_sql -> SQLite", r))
                print(f"  {rows[-1][1]}: {r['seconds']:.1f} s", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
        f"{os.cpu_count()} cores"
    )
    print(
        "(vs base: records/s over the baseline's at the same size, by wall-clock time and by CPU "
        "time; load: 1-minute load average when the run ended)"
    )
    print(
        f"{'run':44} {'records':>10} {'wall s':>7} {'CPU s':>7} {'rec/s':>8} {'us/rec':>7} "
        f"{'CPU us':>7} {'peak MB':>8} {'vs base':>8} {'CPU vs':>7} {'load':>5}"
    )
    base = {n: r for n, name, r in rows if name.startswith("baseline")}
    for n, name, r in rows:
        rate = r["n"] / r["seconds"]
        vs = "     n/a     n/a"
        if n in base:
            ratio = rate / (base[n]["n"] / base[n]["seconds"])
            cpu_ratio = (base[n]["cpu_s"] / base[n]["n"]) / (r["cpu_s"] / r["n"])
            vs = f"{ratio:>7.2f}x {cpu_ratio:>6.2f}x"
        print(
            f"{name:44} {int(r['n']):>10,} {r['seconds']:>7.1f} {r['cpu_s']:>7.1f} "
            f"{rate:>8,.0f} {1e6 * r['seconds'] / r['n']:>7.1f} {1e6 * r['cpu_s'] / r['n']:>7.1f} "
            f"{r['rss_mb']:>8,.0f} {vs} {r['load']:>5.1f}"
        )
    print("\nCPU us per record in each 100,000 exchanges read (first, last; all):")
    for n, name, r in rows:
        b = r.get("blocks") or []
        if len(b) >= 2:
            print(
                f"  {name} at {n:,}: {b[0]:.1f} -> {b[-1]:.1f} "
                f"({b[-1] / b[0]:.2f}); " + " ".join(f"{x:.0f}" for x in b)
            )
    names = sorted({name for _, name, _ in rows})
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print(f"\nper-record cost growth from {lo:,} to {hi:,} (CPU us per record, hi / lo):")
        for name in names:
            by = {n: r for n, nm, r in rows if nm == name}
            print(
                f"  {name:44} {by[hi]['cpu_s'] / by[hi]['n'] * 1e6:6.1f} / "
                f"{by[lo]['cpu_s'] / by[lo]['n'] * 1e6:6.1f} = "
                f"{(by[hi]['cpu_s'] / by[hi]['n']) / (by[lo]['cpu_s'] / by[lo]['n']):.2f}"
            )
    rec = {n: r for n, name, r in rows if name.endswith("record path")}
    bulk = {n: r for n, name, r in rows if name == "distillguard -> SQLite, atomic"}
    if rec and bulk:
        print("\nbulk path vs record path (SQLite, atomic, same run; CPU us per record, wall s):")
        for n in sorted(set(rec) & set(bulk)):
            b, r = bulk[n], rec[n]
            print(
                f"  {n:,}: CPU {1e6 * b['cpu_s'] / b['n']:.1f} vs {1e6 * r['cpu_s'] / r['n']:.1f} "
                f"({(r['cpu_s'] / r['n']) / (b['cpu_s'] / b['n']):.2f}x), wall {b['seconds']:.1f} "
                f"vs {r['seconds']:.1f} s"
            )
    print("\ntargets (measured on this run's sizes, not projected):")
    for n, name, r in rows:
        if name.startswith("baseline"):
            continue
        if n != 1_000_000:  # the peak target holds at every size
            ok = "met" if r["rss_mb"] <= 500 else "NOT met"
            print(f"  {name} at {n:,}: peak {r['rss_mb']:.0f} MB <= 500: {ok}")
            continue
        rate = r["n"] / r["seconds"]
        ratio = rate / (base[n]["n"] / base[n]["seconds"]) if n in base else float("nan")
        limit = 35.0 if "SQLite" in name else 60.0
        checks = [
            f"wall {r['seconds']:.1f} s <= {limit:.0f} s: "
            f"{'met' if r['seconds'] <= limit else 'NOT met'}",
            f"peak {r['rss_mb']:.0f} MB <= 500: {'met' if r['rss_mb'] <= 500 else 'NOT met'}",
        ]
        if "SQLite" in name:
            checks.append(f"{ratio:.2f}x baseline >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}")
        print(f"  {name}: " + "; ".join(checks))
    if 1_000_000 not in sizes:
        print("  (the time and baseline targets are for 1,000,000 exchanges: add that size)")


if __name__ == "__main__":
    main()
