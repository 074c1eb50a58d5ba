"""Benchmark of ``distillguard scan`` (DuckDB engine): time, CPU time, peak memory, scaling
exponent, and the template signal (our NumPy MinHash LSH) against datasketch's MinHashLSH on the
same prompts, same run.

    python benchmarks/bench_scan.py --log ./seed-2026     # 1M and 4M subsets, and the whole log
    python benchmarks/bench_scan.py                       # simulates seed-2026 first (~16M)
    python benchmarks/bench_scan.py --quick               # small scenario, 25k and 100k

Subsets keep whole accounts (accounts whose id hashes into the kept fraction), so that campaign
and population structure is preserved; the largest size is the whole log when it is not bigger
than asked. Each scan runs in its own process; peak memory is that process's maximum resident set
size, CPU time its user + system time (all threads). The machine is shared: the load average at
the start and end of each scan is printed beside the wall time, and the scaling exponent is given
for both wall time and CPU time (CPU time is the figure that other jobs disturb least).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

_CHILD = """
import json, sys, time, resource
from pathlib import Path
from distillguard.monitor import scan
t = time.perf_counter()
r = scan(Path(sys.argv[1]), out=Path(sys.argv[2]))
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "exchanges": r.load.exchanges, "flagged": r.flagged,
                  "peak_mb": ru.ru_maxrss / 1024, "stages": r.timings}))
"""


def subset(log: Path, out: Path, target: int) -> int:
    """Write the accounts of ``log`` whose id hash falls in the fraction giving ~``target`` and
    return the number of exchanges written; when the whole log is not bigger than ``target``
    (+5%), write nothing and return minus its size (scan the log itself)."""
    con = duckdb.connect()
    ex = (
        f"'{log}/exchanges/*.parquet'"
        if (log / "exchanges").is_dir()
        else f"'{log}/exchanges.parquet'"
    )
    total = con.sql(f"SELECT count(*) FROM read_parquet({ex})").fetchall()[0][0]
    if total <= target * 1.05:
        con.close()
        return -int(total)  # the whole log: scan it in place
    frac = min(1.0, target / max(total, 1))
    keep = f"hash(account_id) % 1000000 < {int(frac * 1_000_000)}"
    out.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{log}/accounts.parquet') WHERE {keep}) "
        f"TO '{out}/accounts.parquet' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT * FROM read_parquet({ex}) WHERE {keep}) "
        f"TO '{out}/exchanges.parquet' (FORMAT parquet)"
    )
    n = con.sql(f"SELECT count(*) FROM '{out}/exchanges.parquet'").fetchall()[0][0]
    con.close()
    return int(n)


def run_scan(log: Path, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(log), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def template_vs_datasketch(log: Path, n_prompts: int, repeats: int) -> None:
    from datasketch import MinHash, MinHashLSH

    from distillguard.monitor.templates import MinHasher, template_buckets

    con = duckdb.connect()
    ex = (
        f"'{log}/exchanges/*.parquet'"
        if (log / "exchanges").is_dir()
        else f"'{log}/exchanges.parquet'"
    )
    words = con.sql(
        f"""SELECT list_filter(string_split(regexp_replace(regexp_replace(lower(
              messages[-1].content), '[0-9]+', '0', 'g'), '[^a-z0-9]+', ' ', 'g'), ' '),
              lambda x: x <> '') AS w FROM read_parquet({ex}) LIMIT {n_prompts}"""
    ).to_arrow_table()["w"]
    docs = words.to_pylist()
    ours_t, theirs_t = [], []
    hasher = MinHasher(num_perm=30, bands=10)
    for _ in range(repeats):
        t = time.perf_counter()
        template_buckets(words, np.arange(len(docs)), hasher=hasher).pairs()
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        lsh = MinHashLSH(num_perm=30, params=(10, 3))
        for i, d in enumerate(docs):
            m = MinHash(num_perm=30)
            sh = [" ".join(d[k : k + 3]).encode() for k in range(max(len(d) - 2, 1))]
            m.update_batch(sh)
            lsh.insert(i, m)
        theirs_t.append(time.perf_counter() - t)
    o, d = float(np.median(ours_t)), float(np.median(theirs_t))
    print(
        f"template LSH on {len(docs):,} prompts: ours {o:.2f} s, datasketch MinHashLSH "
        f"{d:.2f} s (median of {repeats}); speed-up x{d / o:.1f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", type=Path, help="log to subset (default: simulate one)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dg-bench-scan-"))
    try:  # the simulated log and its subsets take GBs in a full run
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    log = args.log
    if log is None:
        from distillguard.sim import load_scenario, simulate

        log = work / "log"
        name = "small" if args.quick else "seed-2026"
        print(f"simulating {name} ...", flush=True)
        simulate(load_scenario(name), out=log, seed=2026)
    sizes = [25_000, 100_000] if args.quick else [1_000_000, 4_000_000, 16_000_000]
    points = []
    for size in sizes:
        sub = work / f"sub-{size}"
        n = subset(log, sub, size)
        src = sub if n >= 0 else log
        n = abs(n)
        load0 = os.getloadavg()[0]
        r = run_scan(src, work / f"out-{size}")
        load1 = os.getloadavg()[0]
        points.append((n, r["seconds"], r["cpu_seconds"]))
        print(
            f"{n:>12,} exchanges: wall {r['seconds']:7.1f} s, CPU {r['cpu_seconds']:7.1f} s, "
            f"peak {r['peak_mb'] / 1024:5.2f} GB, {n / r['seconds']:,.0f} exchanges/s, "
            f"{r['flagged']:,} flagged (load average {load0:.1f} -> {load1:.1f} on "
            f"{os.cpu_count()} cores)",
            flush=True,
        )
        stages = ", ".join(f"{k} {v:.0f}" for k, v in dict(r["stages"]).items())
        print(f"             stages (wall s): {stages}", flush=True)
    if len(points) >= 2:
        x = np.log([p[0] for p in points])
        k_wall = float(np.polyfit(x, np.log([p[1] for p in points]), 1)[0])
        k_cpu = float(np.polyfit(x, np.log([p[2] for p in points]), 1)[0])
        print(f"scaling exponent (time ~ n^k): wall k = {k_wall:.2f}, CPU k = {k_cpu:.2f}")
    template_vs_datasketch(log, 20_000 if args.quick else 200_000, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
