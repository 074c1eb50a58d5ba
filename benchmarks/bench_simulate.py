"""Benchmark of the traffic simulator: exchanges per second written to Parquet.

    .venv/bin/python benchmarks/bench_simulate.py            # ~2M exchanges of seed-2026
    .venv/bin/python benchmarks/bench_simulate.py --quick    # ~300k exchanges
    .venv/bin/python benchmarks/bench_simulate.py --full     # all of seed-2026: time, peak memory

Measured: the simulator's streamed, vectorised path (hourly windows → Arrow tables → Parquet).
Baseline, in the same run on the same windows: the straightforward way, one Python dict per
record serialised with ``json.dumps`` to a JSONL file. Medians over repeats; the ratio is
simulator rate / baseline rate. ``--full`` runs ``distillguard simulate --scenario seed-2026`` in a
child process and reports its wall time and peak resident memory (targets: ≤ 300 s, ≤ 4 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard._internal.timeutil import format_ts
from distillguard.records import EXCHANGE_SCHEMA
from distillguard.sim import load_scenario
from distillguard.sim._engine import Simulation
from distillguard.sim._text import build_pools, load_instructions


def _simulation() -> Simulation:
    scenario = load_scenario("seed-2026")
    pools = build_pools(
        seed=1,
        instructions=load_instructions("auto"),
        campaign_ids=[c.campaign_id for c in scenario.campaigns],
    )
    return Simulation(scenario=scenario, seed=1, pools=pools)


def run_simulator(sim: Simulation, windows: range, out: Path) -> int:
    """Generate ``windows`` and write them to one Parquet file; returns the rows written."""
    writer = pq.ParquetWriter(out, EXCHANGE_SCHEMA, compression="zstd", compression_level=1)
    rows = 0
    buffer: list[pa.Table] = []
    for w in windows:
        table = sim.window(w)
        buffer.append(table)
        rows += table.num_rows
        if sum(t.num_rows for t in buffer) >= 131_072:
            writer.write_table(pa.concat_tables(buffer))
            buffer = []
    if buffer:
        writer.write_table(pa.concat_tables(buffer))
    writer.close()
    return rows


def run_baseline(tables: list[pa.Table], out: Path) -> int:
    """Per-record dicts and json.dumps, one line per exchange."""
    rows = 0
    with out.open("w", encoding="utf-8") as fh:
        for table in tables:
            for record in table.to_pylist():
                record["ts"] = format_ts(record["ts"])
                fh.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
                rows += 1
    return rows


def full_run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "distillguard.cli.main",
            "--quiet",
            "simulate",
            "--scenario",
            "seed-2026",
            "--out",
            str(Path(tmp) / "out"),
            "--seed",
            "1",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr)
            raise SystemExit(proc.returncode)
        summary = json.loads((Path(tmp) / "out" / "simulation.json").read_text())
    n = summary["exchanges"]
    print(
        f"seed-2026 full: {n:,} exchanges, {summary['accounts']:,} accounts "
        f"({summary['campaign_accounts']:,} in campaigns)"
    )
    print(f"  wall {wall:.1f} s (target <= 300 s), {n / wall:,.0f} exchanges/s")
    print(f"  peak RSS {peak_mb:,.0f} MB (target <= 4096 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~300k exchanges, 3 repeats")
    parser.add_argument("--full", action="store_true", help="the whole seed-2026 scenario")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.full:
        full_run()
        return
    hours = 12 if args.quick else 80
    sim = _simulation()
    windows = range(0, hours)
    sample = [sim.window(w) for w in range(0, 2)]  # the baseline's input: the same records
    rates: list[float] = []
    base_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            start = time.perf_counter()
            n = run_simulator(sim, windows, Path(tmp) / "sim.parquet")
            rates.append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            nb = run_baseline(sample, Path(tmp) / "base.jsonl")
            base_rates.append(nb / (time.perf_counter() - start))
    ours = statistics.median(rates)
    base = statistics.median(base_rates)
    print(
        f"simulate → Parquet: {ours:,.0f} exchanges/s (median of {args.repeats}, "
        f"{n:,} exchanges of seed-2026; target >= 100,000)"
    )
    print(
        f"baseline per-record dict + json.dumps (serialisation only, {nb:,} records): "
        f"{base:,.0f} exchanges/s"
    )
    print(f"ratio: {ours / base:.1f}x")


if __name__ == "__main__":
    main()
