"""Evidence report speed and size for one campaign of 24,000 accounts (6,000 with --quick).

Setup (not timed): a store with the campaign's accounts (a few exchanges each, shared cards and
proxies) plus 2,000 legitimate accounts, and a synthetic scan output folder that names the
campaign. Timed: ``build_report`` + ``render_html`` as ``distillguard report`` runs them (SQL
aggregation for the timeline, the infrastructure graph of the 150 highest-scored accounts,
redacted representative exchanges, the accounts table abridged to 200 rows). Baseline in the
same run: the same report with every account listed in the HTML (no abridging). Targets: ≤ 60 s
and HTML ≤ 20 MB. Medians over repeats.

    .venv/bin/python benchmarks/bench_report.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from distillguard.app.ingest import ingest_log
from distillguard.evidence import ReportOptions, build_report, render_html
from distillguard.evidence.testing import write_scan
from distillguard.records import Exchange, Message
from distillguard.results import read_scan
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log


def setup(folder: Path, n_campaign: int, per_account: int) -> tuple[str, Path]:
    campaign = [f"acct-c{i:06d}" for i in range(n_campaign)]
    others = [f"acct-o{i:06d}" for i in range(2000)]
    accounts = [
        make_account(a, payment_fingerprint=f"card-{i % 40}") for i, a in enumerate(campaign)
    ] + [make_account(a) for a in others]
    prompt = "Solve step by step and show your reasoning; reply to ops@example.com. Task {i}."

    def exchanges() -> Iterator[Exchange]:
        for i, a in enumerate(campaign + others):
            for j in range(per_account):
                yield make_exchange(
                    f"ex-{a}-{j}",
                    account_id=a,
                    offset_s=float((i * 7 + j * 3600) % 172_800),
                    ip=f"198.51.{i % 200}.{j}" if i < n_campaign else f"203.0.{i % 250}.1",
                    asn=64500 + i % 30,
                    completion_tokens=100 + j,
                    messages=(Message("user", prompt.format(i=i)),),
                )

    log = write_log(folder / "log", accounts, exchanges(), fmt="parquet")
    url = f"sqlite:///{folder / 'store.sqlite'}"
    with open_store(url) as store:
        ingest_log(store, log)
    scan = write_scan(folder / "scan", campaign, others)
    return url, scan


def run(url: str, scan_dir: Path, options: ReportOptions) -> tuple[float, int]:
    started = time.perf_counter()
    scan = read_scan(scan_dir)
    with open_store(url) as store:
        html = render_html(build_report(scan=scan, store=store, options=options))
    return time.perf_counter() - started, len(html.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 6_000 if args.quick else 24_000
    repeats = 2 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        url, scan_dir = setup(Path(tmp), n, per_account=4)
        print(
            f"setup: {n:,} campaign accounts, {4 * (n + 2000):,} exchanges "
            f"({time.perf_counter() - t0:.0f} s, not timed)"
        )
        ours, base = [], []
        size = base_size = 0
        for _ in range(repeats):
            t, size = run(url, scan_dir, ReportOptions())
            ours.append(t)
            t, base_size = run(url, scan_dir, ReportOptions(accounts_shown=n))
            base.append(t)
    mo, mb = statistics.median(ours), statistics.median(base)
    print(
        f"report of a {n:,}-account campaign: {mo:.1f} s (median of {repeats}), "
        f"HTML {size / 1e6:.2f} MB  [targets: <= 60 s, <= 20 MB]"
    )
    print(f"baseline, every account listed: {mb:.1f} s, HTML {base_size / 1e6:.2f} MB")
    print(f"ratio baseline/ours: time {mb / mo:.2f}x, size {base_size / size:.1f}x")
    print(f"target ratios: time {mo / 60:.2f} of 60 s, size {size / 20e6:.3f} of 20 MB")


if __name__ == "__main__":
    main()
