"""Ingest benchmark: exchanges/s into SQLite and PostgreSQL, peak memory, vs a pandas baseline.

Target (foundation issue): 1,000,000 exchanges of about 1 KB of text each (JSONL) into SQLite in
<= 60 s and into PostgreSQL in <= 120 s, peak memory <= 500 MB. The DistillGuard figure includes
validation, quarantine bookkeeping, salts and the ledger append (canonical JSON, hashing, tree
nodes) in the same transactions. The baseline is the straightforward way: pandas ``read_json``
(lines, chunked) + ``to_sql`` into SQLite, with no validation and no ledger, on the same file.

Each run is a fresh subprocess so that its peak RSS is its own.

    python benchmarks/bench_ingest.py                 # 1,000,000 exchanges
    python benchmarks/bench_ingest.py --quick         # 100,000 exchanges
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _logs import write_log  # noqa: E402

PG_BASE = os.environ.get("DG_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")

DG_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from distillguard.store import open_store
from distillguard.store.ingest import ingest_log
url, log = sys.argv[1], Path(sys.argv[2])
store = open_store(url)
t = time.perf_counter()
result = ingest_log(store, log, batch_size=5000)
seconds = time.perf_counter() - t
if url.startswith("postgresql"):
    store.drop_schema()
store.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "n": result.exchanges.inserted,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}))
"""

PANDAS_CHILD = r"""
import json, resource, sqlite3, sys, time
import pandas as pd
db, log, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db)
t = time.perf_counter()
n = 0
for chunk in pd.read_json(log + "/exchanges.jsonl", lines=True, chunksize=50_000, nrows=limit):
    for col in ("messages", "tools"):
        if col in chunk:
            chunk[col] = chunk[col].map(json.dumps)
    chunk["ts"] = chunk["ts"].astype(str)
    chunk.to_sql("exchanges", conn, if_exists="append", index=False)
    n += len(chunk)
conn.commit()
seconds = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "n": n,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="exchanges in the log")
    parser.add_argument("--quick", action="store_true", help="100,000 exchanges")
    parser.add_argument("--baseline-n", type=int, default=200_000, help="rows for pandas")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n = 100_000 if args.quick else args.n
    cache = HERE / "out" / f"log-{n}"
    if not (cache / "exchanges.jsonl").exists():
        print(f"writing a {n:,}-exchange log to {cache} ...", flush=True)
        write_log(cache, n)
    size_mb = (cache / "exchanges.jsonl").stat().st_size / 1e6
    print(f"log: {n:,} exchanges, {size_mb:,.0f} MB JSONL ({size_mb * 1e6 / n:,.0f} B/exchange)")

    work = Path(tempfile.mkdtemp(prefix="dg-bench-ingest-"))
    try:
        rows = []
        sqlite = _run(DG_CHILD, f"sqlite:///{work / 'dg.sqlite'}", str(cache))
        rows.append(("distillguard -> SQLite", sqlite, 60.0))
        if not args.no_postgres:
            url = f"{PG_BASE}?schema=bench_{uuid.uuid4().hex[:8]}"
            rows.append(("distillguard -> PostgreSQL", _run(DG_CHILD, url, str(cache)), 120.0))
        base_n = min(args.baseline_n, n)
        base = _run(PANDAS_CHILD, str(work / "pandas.sqlite"), str(cache), str(base_n))
        rows.append(("baseline pandas read_json+to_sql -> SQLite", base, 0.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base_rate = base["n"] / base["seconds"]
    load = os.getloadavg()[0]
    print(f"\nload average at the end: {load:.1f} on {os.cpu_count()} cores")
    print(
        f"{'run':45} {'records':>10} {'seconds':>8} {'CPU s':>7} {'rec/s':>9} "
        f"{'peak MB':>8} {'vs base':>8}"
    )
    for name, r, _target in rows:
        rate = r["n"] / r["seconds"]
        print(
            f"{name:45} {int(r['n']):>10,} {r['seconds']:>8.1f} {r['cpu_s']:>7.1f} "
            f"{rate:>9,.0f} {r['rss_mb']:>8,.0f} {rate / base_rate:>7.2f}x"
        )
    for name, r, target in rows:
        if target:
            projected = r["seconds"] * 1_000_000 / r["n"]
            verdict = "meets" if projected <= target and r["rss_mb"] <= 500 else "MISSES"
            print(
                f"{name}: {projected:.0f} s per million (target {target:.0f} s), "
                f"peak {r['rss_mb']:.0f} MB (target 500 MB): {verdict}"
            )


if __name__ == "__main__":
    main()
