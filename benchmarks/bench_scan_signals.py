"""What one signal of the scan is worth: the same logs scanned with and without it, same run.

Generates labelled logs with the scenario zoo (``distillguard.sim.zoo``, written without reading
the detector) and, unless ``--no-sim``, with the simulator, scans each log once per variant of
the scan's settings, and prints per family the share of its accounts flagged (recall for
campaign strategies, false-positive rate for legitimate populations), pooled account precision
and recall, the worst legitimate false-positive rate, the scan times per variant and the load
average. Variants:

* ``before``: the default scan, without the semantic paraphrase buckets;
* ``semantic``: with them (``ScanConfig(semantic=SemanticHasher())``: link kind ``semantic``,
  plan signal).

    .venv/bin/python benchmarks/bench_scan_signals.py --seeds 1 2 3 --scale 0.5 [--no-sim]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from distillguard.monitor.lofo import detector_figures
from distillguard.monitor.scan import ScanConfig, scan
from distillguard.monitor.semantic import SemanticHasher

ROOT = Path(__file__).resolve().parent.parent
DG = [sys.executable, "-m", "distillguard.cli.main", "--quiet"]

VARIANTS: dict[str, ScanConfig] = {
    "before": ScanConfig(semantic=None),
    "semantic": ScanConfig(semantic=SemanticHasher()),
}


def _run(args: list[str]) -> None:
    subprocess.run(DG + args, check=True, stdout=subprocess.DEVNULL)


def _families(log: Path, ids: list[str], generator: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(log / "labels.parquet")
    cols = set(t.column_names)
    acct = t["account_id"].to_pylist()
    camp = t["campaign_id"].to_pylist()
    fam = t["family"].to_pylist() if "family" in cols else [None] * len(acct)
    pop = t["population"].to_pylist() if "population" in cols else [None] * len(acct)
    by = {
        a: (camp[i] is not None, f"{generator}:{fam[i] or camp[i] or pop[i]}")
        for i, a in enumerate(acct)
    }
    y = np.array([by[a][0] for a in ids], dtype=bool)
    return y, np.array([by[a][1] for a in ids], dtype=object)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--scale", type=float, default=0.5, help="zoo scale")
    ap.add_argument("--no-sim", action="store_true", help="zoo logs only")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    heldout = str(ROOT / "benchmarks" / "scenarios" / "scan-heldout.toml")
    t0 = time.perf_counter()
    ys: list[np.ndarray] = []
    fams: list[np.ndarray] = []
    flags: dict[str, list[np.ndarray]] = {v: [] for v in args.variants}
    secs: dict[str, float] = dict.fromkeys(args.variants, 0.0)
    with tempfile.TemporaryDirectory(prefix="dg-signals-") as tmp:
        work = Path(tmp)
        logs: list[tuple[str, Path]] = []
        for seed in args.seeds:
            out = work / f"zoo-{seed}"
            _run(["zoo", "--seed", str(seed), "--scale", str(args.scale), "--out", str(out)])
            logs.append(("zoo", out))
        if not args.no_sim:
            for sc, seed in (("small", 7), ("adversarial", 7), (heldout, 5)):
                out = work / f"sim-{Path(sc).stem}-{seed}"
                _run(["simulate", "--scenario", sc, "--seed", str(seed), "--out", str(out)])
                logs.append(("sim", out))
        t_gen = time.perf_counter() - t0
        for gen, log in logs:
            ids: list[str] | None = None
            for v in args.variants:
                t = time.perf_counter()
                res = scan(log, config=VARIANTS[v])
                secs[v] += time.perf_counter() - t
                got = res.accounts["account_id"].to_pylist()
                if ids is None:
                    ids = got
                    y, fam = _families(log, ids, gen)
                    ys.append(y)
                    fams.append(fam)
                elif got != ids:
                    raise RuntimeError(f"{log.name}: variants scanned other accounts")
                flags[v].append(np.asarray(res.accounts["flagged"].to_numpy(), dtype=bool))
            print(f"scanned {log.name}", flush=True)
    y_all = np.concatenate(ys)
    fam_all = np.concatenate(fams)
    f_all = {v: np.concatenate(flags[v]) for v in args.variants}
    precision, recall, worst = detector_figures(f_all, y_all, fam_all)
    head = f"{'family':<28} {'kind':<5} {'n':>6} " + " ".join(f"{v:>9}" for v in args.variants)
    print()
    print(head)
    print("-" * len(head))
    rows = []
    for name in sorted(set(fam_all.tolist()), key=lambda f: (not y_all[fam_all == f][0], f)):
        m = fam_all == name
        share = {v: float(f_all[v][m].mean()) for v in args.variants}
        kind = "camp" if y_all[m][0] else "legit"
        rows.append({"family": name, "kind": kind, "accounts": int(m.sum()), "share": share})
        vals = " ".join(f"{share[v]:>9.3f}" for v in args.variants)
        print(f"{name:<28} {kind:<5} {int(m.sum()):>6} {vals}")
    print("-" * len(head))
    print(f"{'precision':<41} " + " ".join(f"{precision[v]:>9.3f}" for v in args.variants))
    print(f"{'recall':<41} " + " ".join(f"{recall[v]:>9.3f}" for v in args.variants))
    worst_row = " ".join(f"{worst[v][1]:>9.4f}" for v in args.variants)
    print(f"{'worst legitimate FPR':<41} {worst_row}")
    for v in args.variants:
        print(f"  {v}: worst legitimate family {worst[v][0]}, scans {secs[v]:.0f} s")
    load = os.getloadavg()
    print(
        f"zoo seeds {args.seeds} scale {args.scale}; generation {t_gen:.0f} s; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "families": rows,
                    "precision": precision,
                    "recall": recall,
                    "worst_fpr": worst,
                    "scan_seconds": secs,
                    "load": load,
                },
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
