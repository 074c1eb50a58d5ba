"""Campaign detection judged by held-out family and by held-out generator.

Generates labelled logs with the simulator (``distillguard.sim``, the scenarios the scan was
designed on) and with the scenario zoo (``distillguard.sim.zoo``, written without reading the
detector), scans each once, and prints:

* **leave-one-family-out**: every legitimate population and campaign strategy scored by a
  combiner fitted on all the other families (``distillguard.monitor.lofo``);
* **leave-one-generator-out**: the zoo's logs scored by a combiner fitted on the simulator's
  logs only, and back;

each beside the hand-set scan (``scan``) and the per-account baselines PRADA and SEAT on the same
accounts; and **analyst feedback**: per log, 2%, 5% and 10% of the accounts labelled at random
(by class), the combiner refitted on them alone, precision and recall on the unlabelled rest
beside the hand-set scan on the same accounts (``distillguard.monitor.feedback``). Per-family
figures: the share of the family's accounts flagged (recall for campaigns, false-positive rate
for legitimate populations). The load average is printed with the timings.

    .venv/bin/python benchmarks/bench_scan_lofo.py [--quick] [--json out.json]
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

from distillguard.monitor.feedback import FeedbackFigures, feedback_figures
from distillguard.monitor.lofo import (
    LabelledScan,
    labelled_scan,
    leave_one_family_out,
    leave_one_generator_out,
)

ROOT = Path(__file__).resolve().parent.parent
DG = [sys.executable, "-m", "distillguard.cli.main", "--quiet"]


def _run(args: list[str]) -> None:
    subprocess.run(DG + args, check=True, stdout=subprocess.DEVNULL)


def _sim(work: Path, scenario: str, seed: int) -> Path:
    out = work / f"sim-{Path(scenario).stem}-{seed}"
    _run(["simulate", "--scenario", scenario, "--seed", str(seed), "--out", str(out)])
    return out


def _zoo(work: Path, seed: int, scale: float) -> Path:
    out = work / f"zoo-{seed}"
    _run(["zoo", "--seed", str(seed), "--scale", str(scale), "--out", str(out)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="one log per generator, smaller zoo")
    ap.add_argument("--json", type=Path, help="write both reports as JSON here")
    ap.add_argument("--no-baselines", action="store_true", help="skip PRADA and SEAT")
    ap.add_argument("--alpha", type=float, default=0.002, help="target FPR per family")
    args = ap.parse_args()
    heldout = str(ROOT / "benchmarks" / "scenarios" / "scan-heldout.toml")
    sims = [("small", 7)] if args.quick else [("small", 7), ("small", 11), (heldout, 5)]
    zoos = [(1, 0.3)] if args.quick else [(1, 1.0), (2, 1.0), (3, 1.0)]
    t0 = time.perf_counter()
    scans: list[LabelledScan] = []
    with tempfile.TemporaryDirectory(prefix="dg-lofo-") as tmp:
        work = Path(tmp)
        logs = [("sim", _sim(work, sc, seed)) for sc, seed in sims]
        logs += [("zoo", _zoo(work, seed, scale)) for seed, scale in zoos]
        t_gen = time.perf_counter() - t0
        for gen, log in logs:
            t = time.perf_counter()
            s = labelled_scan(log, generator=gen, name=log.name, baselines=not args.no_baselines)
            scans.append(s)
            print(
                f"scanned {log.name}: {len(s)} accounts, {int(s.y.sum())} in campaigns, "
                f"{time.perf_counter() - t:.1f} s",
                flush=True,
            )
    t_scan = time.perf_counter() - t0 - t_gen
    lofo = leave_one_family_out(scans, alpha=args.alpha)
    logo = leave_one_generator_out(scans, alpha=args.alpha)
    feedback: list[FeedbackFigures] = [
        feedback_figures(scans, fraction=f, seed=0, alpha=args.alpha) for f in (0.02, 0.05, 0.1)
    ]
    t_fit = time.perf_counter() - t0 - t_gen - t_scan
    print()
    print(f"== leave-one-family-out (alpha {args.alpha}) ==")
    print(lofo.table())
    print()
    print("== leave-one-generator-out ==")
    print(logo.table())
    print()
    print("== analyst feedback (per log, fraction labelled at random; unlabelled accounts) ==")
    head = ("share", "labelled", "detector", "precision", "recall")
    print(" ".join(f"{h:>9}" for h in head) + "  worst FPR")
    for fb in feedback:
        for d in ("refitted", "scan"):
            fam, fpr = fb.worst_fpr[d]
            print(
                f"{fb.fraction:>9.0%} {fb.labelled:>9} {d:>9} {fb.precision[d]:>9.3f} "
                f"{fb.recall[d]:>9.3f}  {fpr:.4f} ({fam})"
            )
    load = os.getloadavg()
    print()
    print(
        f"generation {t_gen:.0f} s, scans {t_scan:.0f} s, fits {t_fit:.0f} s; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "lofo": lofo.to_dict(),
                    "logo": logo.to_dict(),
                    "feedback": [fb.to_dict() for fb in feedback],
                },
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
