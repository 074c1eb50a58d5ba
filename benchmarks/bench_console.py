"""Operator console: time to first byte and to the full HTML of every page, on a store with one
campaign of 24,000 accounts (6,000 with --quick) plus 2,000 legitimate accounts, 4 exchanges
each, over a real uvicorn server on 127.0.0.1 (the gateway with the console mounted).

Setup (not timed): the log ingested into a SQLite store, a scan output folder naming the
campaign, the gateway started, one analyst logged in. Timed per page: the first render (cold:
the campaign's timeline is not cached yet) and the median over repeats. Baseline in the same
run: the same campaign page unpaginated (every account in one page, what a console without
server-side pagination would send). Target: first render of every page <= 1 s.

    .venv/bin/python benchmarks/bench_console.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from distillguard.app import create_application
from distillguard.app.ingest import ingest_log
from distillguard.console import ConsoleOptions, create_console, derive_session_key
from distillguard.evidence.testing import CAMPAIGN, write_scan
from distillguard.gateway import NullScorer
from distillguard.gateway.testing import ADMIN_TOKEN, make_settings
from distillguard.keyring import open_keyring
from distillguard.ledger import Ledger
from distillguard.records import Exchange, Message
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_log

PER_ACCOUNT = 4


def setup(folder: Path, n_campaign: int) -> tuple[object, list[str]]:
    campaign = [f"acct-c{i:06d}" for i in range(n_campaign)]
    others = [f"acct-o{i:06d}" for i in range(2000)]
    accounts = [
        make_account(a, payment_fingerprint=f"card-{i % 40}") for i, a in enumerate(campaign)
    ] + [make_account(a) for a in others]

    def exchanges() -> Iterator[Exchange]:
        for i, a in enumerate(campaign + others):
            for j in range(PER_ACCOUNT):
                yield make_exchange(
                    f"ex-{a}-{j}",
                    account_id=a,
                    offset_s=float((i * 7 + j * 3600) % 172_800),
                    ip=f"198.51.{i % 200}.{j}" if i < n_campaign else f"203.0.{i % 250}.1",
                    asn=64500 + i % 30,
                    messages=(Message("user", f"Solve step by step; mail ops@example.com. {i}"),),
                )

    settings = make_settings(folder)
    log = write_log(folder / "log", accounts, exchanges(), fmt="parquet")
    with open_store(settings.store_url) as store:
        Ledger.attach(store)
        ingest_log(store, log)
    settings.console.scan_results = write_scan(folder / "scan", campaign, others)
    return settings, campaign


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def login(c: httpx.AsyncClient, prefix: str) -> None:
    form = await c.get(f"{prefix}/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    r = await c.post(
        f"{prefix}/login", data={"csrf": token.group(1), "token": ADMIN_TOKEN, "analyst": "bench"}
    )
    assert r.status_code == 303, r.text


async def fetch(c: httpx.AsyncClient, path: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    async with c.stream("GET", path) as r:
        ttfb = time.perf_counter() - t0
        body = await r.aread()
        total = time.perf_counter() - t0
    assert r.status_code == 200, (path, r.status_code)
    return ttfb, total, len(body)


async def measure(url: str, pages: list[tuple[str, str]], repeats: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        await login(c, "/console")
        await login(c, "/console-full")
        print(f"{'page':<34} {'first ms':>9} {'TTFB ms':>8} {'median ms':>10} {'KB':>8}")
        results = {}
        for name, path in pages:
            _, first, size = await fetch(c, path)
            runs = [await fetch(c, path) for _ in range(repeats)]
            ttfb = statistics.median(r[0] for r in runs) * 1000
            med = statistics.median(r[1] for r in runs) * 1000
            results[name] = (first * 1000, med)
            flag = "" if first <= 1.0 else "  (> 1 s)"
            print(
                f"{name:<34} {first * 1000:9.0f} {ttfb:8.0f} {med:10.0f} {size / 1024:8.0f}{flag}"
            )
        paged, full = results["campaign page 1"][1], results["baseline: campaign unpaginated"][1]
        worst = max(v[0] for k, v in results.items() if not k.startswith("baseline"))
        print(f"\nslowest first render: {worst:.0f} ms (target <= 1000 ms)")
        print(f"campaign page vs unpaginated baseline: {paged:.0f} ms vs {full:.0f} ms "
              f"({full / paged:.1f}x faster)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 6_000 if args.quick else 24_000
    repeats = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        settings, campaign = setup(Path(tmp), n)
        print(f"setup: {n:,} campaign accounts + 2,000 others, {PER_ACCOUNT} exchanges each, "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        application = create_application(settings, scorer=NullScorer())  # type: ignore[arg-type]
        gw = application.gateway
        key = derive_session_key(
            secret=open_keyring(settings).watermark_key().secret,  # type: ignore[arg-type]
            admin_token=ADMIN_TOKEN,
        )
        full = create_console(
            operations=application.operations,
            admin_token=ADMIN_TOKEN,
            session_key=key,
            options=ConsoleOptions(
                scan_results=settings.console.scan_results,  # type: ignore[attr-defined]
                page_size=n,
            ),
        )
        gw.mount("/console-full", full, admin_only=False)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(gw, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        mid = campaign[n // 2]
        pages = [
            ("overview", "/console/"),
            ("overview live fragment", "/console/live"),
            ("campaigns", "/console/campaigns"),
            ("campaign page 1", f"/console/campaigns/{CAMPAIGN}"),
            ("campaign last page", f"/console/campaigns/{CAMPAIGN}?page={n // 50}"),
            ("campaign filtered (id contains)", f"/console/campaigns/{CAMPAIGN}?q=c0012"),
            ("campaign filtered (score, by id)",
             f"/console/campaigns/{CAMPAIGN}?min_score=0.5&sort=account_id&page=3"),
            ("account", f"/console/accounts/{mid}"),
            ("ledger", "/console/ledger"),
            ("results", "/console/results"),
            ("audit trail", "/console/audit"),
            ("baseline: campaign unpaginated", f"/console-full/campaigns/{CAMPAIGN}"),
        ]  # fmt: skip
        try:
            asyncio.run(measure(f"http://127.0.0.1:{port}", pages, repeats))
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
