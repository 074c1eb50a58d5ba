"""Detection quality of ``distillguard scan`` on several scenarios and seeds, next to PRADA and
SEAT on the same logs: account precision and recall, recall per true campaign, the purity of each
detected campaign, and the false-positive rate of every legitimate population.

    python benchmarks/bench_scan_quality.py                  # adversarial x3, small x2, held-out
    python benchmarks/bench_scan_quality.py --quick          # tiny and adversarial, one seed each
    python benchmarks/bench_scan_quality.py --log ./seed-2026   # also a labelled log of yours

``benchmarks/scenarios/scan-heldout.toml`` was written for this evaluation and never used to
choose a parameter of the scan (see docs/scan.md, "Evaluation").
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

from distillguard.monitor import scan
from distillguard.monitor.evaluate import EvaluationReport, evaluate_scan

HERE = Path(__file__).resolve().parent
FULL = [
    ("adversarial", 7),
    ("adversarial", 11),
    ("adversarial", 23),
    ("small", 7),
    ("small", 11),
    (str(HERE / "scenarios" / "scan-heldout.toml"), 5),
]
QUICK = [("tiny", 3), ("adversarial", 7)]


def _row(name: str, report: EvaluationReport, seconds: float) -> None:
    for fig in [report.ours, *report.baselines]:
        worst = max(fig.fpr_by_population.items(), key=lambda kv: kv[1], default=("-", 0.0))
        print(
            f"{name:<26} {fig.detector:<13} P {fig.precision:6.3f}  R {fig.recall:6.3f}  "
            f"worst FPR {worst[1]:6.2%} ({worst[0]})",
            flush=True,
        )
    rec = ", ".join(f"{k} {v:.3f}" for k, v in report.recall_by_campaign.items())
    pur = ", ".join(f"{v:.3f}" for v in report.campaign_purity.values())
    fpr = ", ".join(f"{k} {v:.2%}" for k, v in report.ours.fpr_by_population.items())
    print(f"{'':<26} recall by campaign: {rec}")
    print(f"{'':<26} purity of detected campaigns: {pur}")
    print(f"{'':<26} DistillGuard FPR by population: {fpr}")
    print(f"{'':<26} scan {seconds:.0f} s", flush=True)


def evaluate_log(name: str, log: Path, out: Path, *, baselines: bool) -> None:
    """Scan ``log`` (with ``labels.parquet``) and print the figures."""
    t = time.perf_counter()
    scan(log, out=out)
    seconds = time.perf_counter() - t
    report = evaluate_scan(out, log / "labels.parquet", log=log, baselines=baselines)
    _row(name, report, seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--log", type=Path, action="append", default=[], help="a labelled log")
    ap.add_argument("--no-baselines", action="store_true", help="skip PRADA and SEAT")
    args = ap.parse_args()
    from distillguard.sim import load_scenario, simulate

    work = Path(tempfile.mkdtemp(prefix="dg-bench-quality-"))
    atexit.register(shutil.rmtree, work, True)  # simulated logs and scan outputs (GBs in full)
    for scenario, seed in QUICK if args.quick else FULL:
        spec = load_scenario(scenario)
        log = work / f"{spec.name}-{seed}"
        simulate(spec, out=log, seed=seed)
        evaluate_log(
            f"{spec.name} seed {seed}",
            log,
            work / f"out-{spec.name}-{seed}",
            baselines=not args.no_baselines,
        )
    for log in args.log:
        evaluate_log(log.name, log, work / f"out-{log.name}", baselines=not args.no_baselines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
