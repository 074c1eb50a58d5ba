"""Production mode (two replicas on PostgreSQL + Redis) against embedded mode, same run; then
SIGKILL of one replica under load.

Servers, each a ``distillguard serve`` subprocess on 127.0.0.1 with the stub upstream in
process, online scoring off:

* **replica A, replica B**: production settings (``deploy/distillguard.toml``'s choices): a fresh
  schema on the machine's PostgreSQL (store, ledger, passports), Redis for nonces
  (``redis-async``) and rate limits, one worker each, ``[gateway] replicas = 2``;
* **embedded**: SQLite store, in-process nonces and limits (the defaults);
* **direct**: the stub model alone as an HTTP service (no verification, no record): the baseline
  of the overhead.

The load comes from this process (another process than every server), over loopback, with
requests signed before the timed phases (bench_gateway's client). Measured, each ``--repeats``
times, medians reported:

1. throughput: ``--connections`` connections, half to each replica, for ``--seconds``; the same
   number to the embedded server; the same to the direct stub;
2. latency: one connection each, direct / replica A / replica B / embedded interleaved request by
   request (``--latency-requests`` per contender and repeat); p50 and p99 over all samples;
   overhead = contender - direct;
3. SIGKILL: both replicas under load (``--connections`` split), replica A killed with SIGKILL
   after ``--kill-after`` seconds, load on for ``--seconds`` in all; afterwards every exchange
   acknowledged (HTTP 200, its id from ``X-Request-Id``) by either replica is looked up in the
   store, the ledger is audited with a fresh signed checkpoint, and replica B's answers after the
   kill are counted.

Targets (issue 21): >= 1,500 req/s in total over the two replicas; overhead p50 <= 2 ms, p99 <=
10 ms; no acknowledged exchange lost, the ledger audits clean, the other replica keeps serving.

    .venv/bin/python benchmarks/bench_scaleout.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import (
    build_request,
    cpu_seconds,
    free_port,
    pct,
    start_direct,
    start_gateway,
    wait_ready,
)


async def send_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, str | None]:
    """Send one request; (status, X-Request-Id of the answer)."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, rid = 0, None
    for line in head.split(b"\r\n"):
        low = line[:15].lower()
        if low == b"content-length:":
            length = int(line[15:])
        elif line[:13].lower() == b"x-request-id:":
            rid = line[13:].strip().decode()
    if length:
        await reader.readexactly(length)
    return status, rid


async def load(
    targets: list[tuple[int, list[bytes]]],
    connections: int,
    seconds: float,
    *,
    kill: tuple[float, subprocess.Popen[bytes]] | None = None,
) -> dict[str, Any]:
    """``connections`` connections spread over ``targets`` (port, requests) for ``seconds``.

    Returns totals and, per port, the acknowledged request ids and their times.
    """
    queues = {port: list(reversed(reqs)) for port, reqs in targets}
    acked: dict[int, list[tuple[float, str]]] = {port: [] for port, _ in targets}
    statuses: dict[int, int] = {}
    errors = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    killed_at: float | None = None

    async def worker(port: int) -> None:
        nonlocal errors
        queue = queues[port]
        reader = writer = None
        while queue and time.perf_counter() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                status, rid = await send_one(reader, writer, queue.pop())
            except (OSError, asyncio.IncompleteReadError):
                errors += 1  # connection to a killed replica: not acknowledged
                writer = None
                if time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200 and rid is not None:
                acked[port].append((time.perf_counter() - t0, rid))
        if writer is not None:
            writer.close()

    async def killer() -> None:
        nonlocal killed_at
        if kill is None:
            return
        await asyncio.sleep(kill[0])
        kill[1].send_signal(signal.SIGKILL)
        killed_at = time.perf_counter() - t0

    ports = [port for port, _ in targets]
    await asyncio.gather(killer(), *(worker(ports[i % len(ports)]) for i in range(connections)))
    elapsed = time.perf_counter() - t0
    done = sum(statuses.values())
    return {
        "requests": done,
        "seconds": elapsed,
        "rps": done / elapsed,
        "statuses": statuses,
        "errors": errors,
        "acked": acked,
        "killed_at": killed_at,
    }


async def interleaved(
    contenders: dict[str, tuple[int, list[bytes]]],
) -> tuple[dict[str, list[float]], dict[int, int]]:
    conns = {
        name: await asyncio.open_connection("127.0.0.1", port)
        for name, (port, _) in contenders.items()
    }
    lat: dict[str, list[float]] = {name: [] for name in contenders}
    statuses: dict[int, int] = {}
    n = min(len(reqs) for _, reqs in contenders.values())
    for i in range(n):
        for name, (_, reqs) in contenders.items():
            reader, writer = conns[name]
            t = time.perf_counter()
            status, _ = await send_one(reader, writer, reqs[i])
            lat[name].append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
    for _, writer in conns.values():
        writer.close()
    return lat, statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--latency-requests", type=int, default=3_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--kill-after", type=float, default=3.0)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.max_requests, args.repeats, args.latency_requests = 3.0, 4000, 1, 500

    import redis

    from distillguard.config import load_settings
    from distillguard.gateway.agents import AgentFactory
    from distillguard.keyring import KeyPurpose, Keyring, open_keyring
    from distillguard.ledger import Ledger, audit_ledger
    from distillguard.store import open_store
    from distillguard.testing import postgres_store_url

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-scale-"))
    atexit.register(shutil.rmtree, tmp, True)
    home = tmp / "home"
    home.mkdir()
    Keyring.create(home / "keyring.json")
    prefix = f"dg:bench:{uuid.uuid4().hex[:8]}:"
    limits = "account_requests_per_minute = 10000000\naccount_tokens_per_minute = 1000000000\n"
    t_start = time.perf_counter()
    with postgres_store_url() as pg_url:
        prod = tmp / "production.toml"
        prod.write_text(
            f'home = "{home}"\n[store]\nurl = "{pg_url}"\n'
            f'[passport]\nregistry = "store"\nreplay_cache = "redis-async"\n'
            f'redis_url = "redis://127.0.0.1:6379/0"\nredis_prefix = "{prefix}nonce:"\n'
            f'[gateway]\ndurability = "batch"\nadmin_token = "bench-admin"\n'
            f'online_scoring = false\nrate_limits = "redis"\nreplicas = 2\n'
            f'redis_url = "redis://127.0.0.1:6379/0"\nredis_prefix = "{prefix}rl:"\n' + limits,
            encoding="utf-8",
        )
        emb = tmp / "embedded.toml"
        emb.write_text(
            f'home = "{home}"\n[store]\nurl = "sqlite:///{tmp / "embedded.sqlite"}"\n'
            f'[gateway]\ndurability = "batch"\nadmin_token = "bench-admin"\n'
            f"online_scoring = false\n" + limits,
            encoding="utf-8",
        )
        # migrate the production schema first (the deployment's job), then issue passports
        subprocess.run(
            [sys.executable, "-m", "distillguard.cli.main", "--config", str(prod), "db", "migrate"],
            check=True,
            capture_output=True,
        )
        prod_settings = load_settings(prod)
        emb_settings = load_settings(emb)
        kw: dict[str, Any] = {"requests_per_minute": 10_000_000, "tokens_per_day": 10**12}
        with AgentFactory.from_settings(prod_settings, **kw) as factory:
            prod_agents = [factory.issue(f"p-{i:04d}") for i in range(args.accounts)]
        with AgentFactory.from_settings(emb_settings, **kw) as factory:
            emb_agents = [factory.issue(f"e-{i:04d}") for i in range(args.accounts)]
        pa, pb, pe, pd = free_port(), free_port(), free_port(), free_port()
        procs = {
            "A": start_gateway(prod, pa),
            "B": start_gateway(prod, pb),
            "embedded": start_gateway(emb, pe),
            "direct": start_direct(pd),
        }
        try:
            for port in (pa, pb, pe):
                wait_ready(port, "/readyz")
            wait_ready(pd, "/v1/models")
            host = "api.example.com"
            counter = [0]

            def body() -> bytes:
                counter[0] += 1
                return json.dumps(
                    {
                        "model": "stub-1",
                        "messages": [
                            {"role": "user", "content": f"question {counter[0]} about the API"}
                        ],
                        "max_tokens": 16,
                    }
                ).encode()

            def signed(n: int, agents: list[Any]) -> list[bytes]:
                out = []
                for i in range(n):
                    agent = agents[(counter[0] + i) % len(agents)]
                    b = body()
                    headers = agent.signer().signed_headers(
                        "POST", f"http://{host}/v1/chat/completions", [("host", host)], b
                    )
                    out.append(
                        build_request(host=host, path="/v1/chat/completions", body=b, extra=headers)
                    )
                return out

            def plain(n: int) -> list[bytes]:
                return [
                    build_request(host=host, path="/v1/chat/completions", body=body())
                    for _ in range(n)
                ]

            print(
                f"# bench_scaleout: {args.accounts} accounts per mode, {args.connections} "
                f"connections, {args.seconds:.0f} s phases, {args.repeats} repeats; load "
                f"average at start {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            # warm-up
            asyncio.run(
                load([(pa, signed(300, prod_agents)), (pb, signed(300, prod_agents))], 8, 3)
            )
            asyncio.run(load([(pe, signed(300, emb_agents))], 8, 3))
            asyncio.run(load([(pd, plain(300))], 8, 3))
            prod_rps, emb_rps, dir_rps, cpu_prod, cpu_emb = [], [], [], [], []
            lat_all: dict[str, list[float]] = {}
            half = args.max_requests // 2
            for rep in range(args.repeats):
                c0 = cpu_seconds(procs["A"].pid) + cpu_seconds(procs["B"].pid)
                p = asyncio.run(
                    load(
                        [(pa, signed(half, prod_agents)), (pb, signed(half, prod_agents))],
                        args.connections,
                        args.seconds,
                    )
                )
                cpu_p = cpu_seconds(procs["A"].pid) + cpu_seconds(procs["B"].pid) - c0
                c0 = cpu_seconds(procs["embedded"].pid)
                e = asyncio.run(
                    load(
                        [(pe, signed(args.max_requests, emb_agents))],
                        args.connections,
                        args.seconds,
                    )
                )
                cpu_e = cpu_seconds(procs["embedded"].pid) - c0
                d = asyncio.run(
                    load([(pd, plain(args.max_requests))], args.connections, args.seconds)
                )
                prod_rps.append(p["rps"])
                emb_rps.append(e["rps"])
                dir_rps.append(d["rps"])
                cpu_prod.append(cpu_p * 1e3 / max(1, p["requests"]))
                cpu_emb.append(cpu_e * 1e3 / max(1, e["requests"]))
                print(
                    f"  repeat {rep + 1}: production (A+B) {p['rps']:,.0f} req/s (statuses "
                    f"{p['statuses']}); embedded {e['rps']:,.0f} req/s (statuses "
                    f"{e['statuses']}); direct {d['rps']:,.0f} req/s",
                    flush=True,
                )
                n = args.latency_requests
                lat, st = asyncio.run(
                    interleaved(
                        {
                            "direct": (pd, plain(n)),
                            "replica A": (pa, signed(n, prod_agents)),
                            "replica B": (pb, signed(n, prod_agents)),
                            "embedded": (pe, signed(n, emb_agents)),
                        }
                    )
                )
                for name, values in lat.items():
                    lat_all.setdefault(name, []).extend(values)
                print(f"  repeat {rep + 1}: latency statuses {st}", flush=True)
            med = statistics.median
            print()
            print(
                f"throughput, production (two replicas, PostgreSQL + Redis): "
                f"{med(prod_rps):,.0f} req/s (target >= 1,500)"
            )
            print(
                f"throughput, embedded (one process, SQLite, in-process state): "
                f"{med(emb_rps):,.0f} req/s; production/embedded = "
                f"{med(prod_rps) / med(emb_rps):.2f}"
            )
            print(
                f"throughput, direct stub (baseline): {med(dir_rps):,.0f} req/s "
                f"(the load generator shares the 2 cores with every server)"
            )
            print(
                f"gateway CPU per request: production {med(cpu_prod):.3f} ms (A+B), embedded "
                f"{med(cpu_emb):.3f} ms, ratio {med(cpu_prod) / med(cpu_emb):.2f}"
            )
            prod_lat = lat_all["replica A"] + lat_all["replica B"]
            d50, d99 = pct(lat_all["direct"], 0.5), pct(lat_all["direct"], 0.99)
            for name, values in (("production", prod_lat), ("embedded", lat_all["embedded"])):
                v50, v99 = pct(values, 0.5), pct(values, 0.99)
                print(
                    f"latency {name} over {len(values):,} samples: p50 {v50 * 1e3:.2f} ms, p99 "
                    f"{v99 * 1e3:.2f} ms; overhead vs direct p50 {(v50 - d50) * 1e3:.2f} ms "
                    f"(target <= 2), p99 {(v99 - d99) * 1e3:.2f} ms (target <= 10)"
                )
            print(
                f"latency direct over {len(lat_all['direct']):,} samples: p50 {d50 * 1e3:.2f} ms, "
                f"p99 {d99 * 1e3:.2f} ms"
            )
            # --- SIGKILL of replica A under load -------------------------------------------
            k = asyncio.run(
                load(
                    [(pa, signed(half, prod_agents)), (pb, signed(half, prod_agents))],
                    args.connections,
                    args.seconds,
                    kill=(args.kill_after, procs["A"]),
                )
            )
            procs["A"].wait(timeout=30)
            killed_at = k["killed_at"] or 0.0
            acked_a = [rid for _, rid in k["acked"][pa]]
            acked_b = [rid for _, rid in k["acked"][pb]]
            b_after = sum(1 for t, _ in k["acked"][pb] if t > killed_at)
            store = open_store(pg_url)
            try:
                found: set[str] = set()
                ids = acked_a + acked_b
                with store.transaction() as cur:
                    for i in range(0, len(ids), 1000):
                        found |= store.existing_ids(
                            cur, "exchanges", "exchange_id", ids[i : i + 1000]
                        )
                keyring = open_keyring(prod_settings)
                ledger = Ledger.open(store)
                ledger.publish_checkpoint(keyring.signing_key(KeyPurpose.LEDGER))
                report = audit_ledger(
                    ledger,
                    public_keys=[key.public_key for key in keyring.verify_keys(KeyPurpose.LEDGER)],
                )
                stored, size = store.count("exchanges"), ledger.size
            finally:
                store.close()
            missing = len(ids) - len(found)
            print(
                f"SIGKILL of replica A at {killed_at:.1f} s of {k['seconds']:.1f} s under load: "
                f"acknowledged A {len(acked_a):,}, B {len(acked_b):,} (B after the kill "
                f"{b_after:,}); connection errors {k['errors']}; statuses {k['statuses']}"
            )
            print(
                f"  acknowledged exchanges missing from the store: {missing} (target 0); "
                f"store {stored:,} exchanges, ledger {size:,} leaves; ledger audit "
                f"{'clean' if report.ok else 'FAILED'}"
            )
            print(
                f"load average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs, shared with "
                f"other work); "
                f"total {time.perf_counter() - t_start:.0f} s"
            )
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc in procs.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            r = redis.Redis(host="127.0.0.1", port=6379)
            for pattern in (prefix + "*", "{" + prefix + "*"):
                for key in r.scan_iter(pattern):
                    r.delete(key)


if __name__ == "__main__":
    main()
