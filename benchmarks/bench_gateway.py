"""Gateway throughput and overhead against calling the stub model directly, in the same run.

Two servers run as subprocesses on 127.0.0.1 (uvicorn, one worker each):

* **direct**: the stub model as its own OpenAI-compatible HTTP service (``stub_app``), no
  verification, no record: the baseline;
* **gateway**: ``distillguard serve`` in embedded mode (SQLite store with the ledger attached,
  ``batch`` durability, in-process rate limits and nonce cache) with the same stub in process,
  online scoring off (the configuration of the target: verification, limits, store, ledger);
* **gateway+scoring**: the same with the online scorer (``distillguard.monitor.online``) fed
  every exchange in its background thread (throughput only).

The load comes from this (second) process over loopback: a minimal HTTP/1.1 keep-alive client
on asyncio streams. Requests to the gateway are signed (passport + RFC 9421) *before* the timed
phase (each with its own nonce), so the client's signing cost does not slow the load down.

Measured:

1. throughput: ``--connections`` concurrent connections send as fast as answers come back for
   ``--seconds`` (bounded also by ``--max-requests``), gateway then direct; requests/s;
2. overhead: one connection, requests to the gateway and to the stub interleaved one by one
   (``--latency-requests``, 10,000 per repeat by default); p50 and p99 latency of each over all
   samples of all repeats (a p99 needs >= 10,000 samples to mean something); overhead =
   gateway - direct;
3. the CPU time per request of each server (user + system time of its process over its
   throughput phase, all threads): the load generator shares the two cores with both servers,
   so the throughput ratio mostly measures the client; CPU per request is the steadier figure.

Each is repeated (``--repeats``) and the medians reported. Targets (issue 10): >= 1,000
requests/s through the gateway; overhead p50 <= 2 ms and p99 <= 10 ms.

    .venv/bin/python benchmarks/bench_gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
            if r.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start")


def start_direct(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn; from distillguard.gateway import stub_app; "
        f"uvicorn.run(stub_app(), host='127.0.0.1', port={port}, log_level='warning', "
        "access_log=False)"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def start_gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distillguard.cli.main",
            "--config",
            str(config),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ]
    )


def build_request(
    *, host: str, path: str, body: bytes, extra: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    for k, v in (extra or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def send_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def throughput(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, Any]:
    queue = list(reversed(requests))
    statuses: dict[int, int] = {}
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue and time.perf_counter() < deadline:
                status = await send_one(reader, writer, queue.pop())
                statuses[status] = statuses.get(status, 0) + 1
                done += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    return {"requests": done, "seconds": elapsed, "rps": done / elapsed, "statuses": statuses}


async def interleaved(
    gw_port: int, gw_requests: list[bytes], direct_port: int, direct_request: bytes
) -> tuple[list[float], list[float], dict[int, int]]:
    gr, gw = await asyncio.open_connection("127.0.0.1", gw_port)
    dr, dw = await asyncio.open_connection("127.0.0.1", direct_port)
    g_lat: list[float] = []
    d_lat: list[float] = []
    statuses: dict[int, int] = {}
    for raw in gw_requests:
        t = time.perf_counter()
        await send_one(dr, dw, direct_request)
        d_lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = await send_one(gr, gw, raw)
        g_lat.append(time.perf_counter() - t)
        statuses[s] = statuses.get(s, 0) + 1
    gw.close()
    dw.close()
    return g_lat, d_lat, statuses


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--seconds", type=float, default=10.0, help="throughput phase length")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument(
        "--latency-requests", type=int, default=10_000, help="per repeat; p99 needs >= 10,000"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=100)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.max_requests, args.repeats = 2.0, 3000, 1

    from distillguard.config import Settings
    from distillguard.gateway.agents import AgentFactory
    from distillguard.keyring import Keyring

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-gw-"))
    # stores and keyring (GBs after a full run); at exit, after the servers were stopped
    atexit.register(shutil.rmtree, tmp, True)
    home = tmp / "home"
    home.mkdir()
    configs = {}
    for name, scoring in (("plain", "false"), ("scoring", "true")):
        configs[name] = tmp / f"{name}.toml"
        configs[name].write_text(
            f'home = "{home}"\n[store]\nurl = "sqlite:///{tmp / name}.sqlite"\n'
            f'[gateway]\ndurability = "batch"\nadmin_token = "bench-admin"\n'
            f"online_scoring = {scoring}\n"
            "account_requests_per_minute = 10000000\naccount_tokens_per_minute = 1000000000\n",
            encoding="utf-8",
        )
    settings = Settings(home=home)
    Keyring.create(settings.keyring_path)
    factory = AgentFactory.from_settings(
        settings, requests_per_minute=10_000_000, tokens_per_day=10**12
    )
    agents = [factory.issue(f"bench-{i:04d}") for i in range(args.accounts)]
    gw_port, direct_port, sc_port = free_port(), free_port(), free_port()
    host_gw = f"127.0.0.1:{gw_port}"
    procs = [
        start_gateway(configs["plain"], gw_port),
        start_direct(direct_port),
        start_gateway(configs["scoring"], sc_port),
    ]
    try:
        wait_ready(gw_port, "/healthz")
        wait_ready(direct_port, "/v1/models")
        wait_ready(sc_port, "/healthz")

        def body(i: int) -> bytes:
            return json.dumps(
                {
                    "model": "stub-1",
                    "messages": [{"role": "user", "content": f"question number {i} about the API"}],
                    "max_tokens": 16,
                }
            ).encode()

        def signed(n: int, offset: int, host: str = host_gw) -> list[bytes]:
            out = []
            for i in range(n):
                agent = agents[(offset + i) % len(agents)]
                b = body(offset + i)
                url = f"http://{host}/v1/chat/completions"
                headers = agent.signer().signed_headers("POST", url, [("host", host)], b)
                out.append(
                    build_request(host=host, path="/v1/chat/completions", body=b, extra=headers)
                )
            return out

        def plain(n: int, offset: int) -> list[bytes]:
            host = f"127.0.0.1:{direct_port}"
            return [
                build_request(host=host, path="/v1/chat/completions", body=body(offset + i))
                for i in range(n)
            ]

        print(
            f"# bench_gateway: {args.accounts} accounts, {args.connections} connections, "
            f"{args.seconds:.0f} s phases, {args.repeats} repeats",
            flush=True,
        )
        t0 = time.perf_counter()
        warm = signed(500, 10**6)
        asyncio.run(throughput(gw_port, warm, 8, 5.0))
        asyncio.run(throughput(direct_port, plain(500, 0), 8, 5.0))
        gw_rps, dr_rps, p50s, p99s, ov50, ov99, gp50, gp99 = [], [], [], [], [], [], [], []
        sc_rps: list[float] = []
        cpu_ms: list[float] = []
        cpu_sc_ms: list[float] = []
        cpu_direct_ms: list[float] = []
        all_g: list[float] = []
        all_d: list[float] = []
        host_sc = f"127.0.0.1:{sc_port}"
        asyncio.run(throughput(sc_port, signed(300, 2 * 10**6, host_sc), 8, 5.0))
        for rep in range(args.repeats):
            pre = signed(args.max_requests, rep * 10**7)
            c0 = cpu_seconds(procs[0].pid)
            g = asyncio.run(throughput(gw_port, pre, args.connections, args.seconds))
            cpu_ms.append((cpu_seconds(procs[0].pid) - c0) * 1e3 / max(1, g["requests"]))
            c0 = cpu_seconds(procs[1].pid)
            d = asyncio.run(
                throughput(direct_port, plain(args.max_requests, 0), args.connections, args.seconds)
            )
            cpu_direct_ms.append((cpu_seconds(procs[1].pid) - c0) * 1e3 / max(1, d["requests"]))
            pre_sc = signed(args.max_requests, rep * 10**7 + 3 * 10**6, host_sc)
            c0 = cpu_seconds(procs[2].pid)
            sc = asyncio.run(throughput(sc_port, pre_sc, args.connections, args.seconds))
            cpu_sc_ms.append((cpu_seconds(procs[2].pid) - c0) * 1e3 / max(1, sc["requests"]))
            gw_rps.append(g["rps"])
            dr_rps.append(d["rps"])
            sc_rps.append(sc["rps"])
            print(
                f"  repeat {rep + 1}: gateway {g['rps']:,.0f} req/s ({g['requests']} in "
                f"{g['seconds']:.1f} s, statuses {g['statuses']}); direct {d['rps']:,.0f} req/s; "
                f"gateway+scoring {sc['rps']:,.0f} req/s (statuses {sc['statuses']})",
                flush=True,
            )
            lat_pre = signed(args.latency_requests, rep * 10**7 + 5 * 10**6)
            gl, dl, st = asyncio.run(interleaved(gw_port, lat_pre, direct_port, plain(1, 0)[0]))
            all_g.extend(gl)
            all_d.extend(dl)
            g50, g99, d50, d99 = pct(gl, 0.5), pct(gl, 0.99), pct(dl, 0.5), pct(dl, 0.99)
            gp50.append(g50)
            gp99.append(g99)
            p50s.append(d50)
            p99s.append(d99)
            ov50.append(g50 - d50)
            ov99.append(g99 - d99)
            print(
                f"  repeat {rep + 1}: latency gateway p50 {g50 * 1e3:.2f} ms p99 "
                f"{g99 * 1e3:.2f} ms; direct p50 {d50 * 1e3:.2f} ms p99 {d99 * 1e3:.2f} ms; "
                f"statuses {st}",
                flush=True,
            )
        med = statistics.median
        print()
        print(
            f"gateway throughput (embedded, batch, verify+limits+store+ledger): "
            f"{med(gw_rps):,.0f} req/s (target >= 1,000)"
        )
        print(
            f"CPU per request (process user+system time over the throughput phase, all threads; "
            f"steadier than throughput, which the load generator on the same cores distorts): "
            f"gateway {med(cpu_ms):.3f} ms, direct stub {med(cpu_direct_ms):.3f} ms, "
            f"ratio {med(cpu_ms) / med(cpu_direct_ms):.2f}x, gateway overhead "
            f"{med(cpu_ms) - med(cpu_direct_ms):.3f} ms"
        )
        print(
            f"gateway + online scoring throughput:                             "
            f"{med(sc_rps):,.0f} req/s; CPU per request {med(cpu_sc_ms):.3f} ms"
        )
        print(
            f"direct stub throughput (baseline):                               "
            f"{med(dr_rps):,.0f} req/s; gateway/direct = {med(gw_rps) / med(dr_rps):.2f} "
            f"(mostly the client's share of the cores)"
        )
        # percentiles over every interleaved sample of every repeat (>= 10,000 per contender)
        g50, g99, d50, d99 = pct(all_g, 0.5), pct(all_g, 0.99), pct(all_d, 0.5), pct(all_d, 0.99)
        print(
            f"latency over {len(all_g):,} interleaved samples each: p50 gateway "
            f"{g50 * 1e3:.2f} ms, direct {d50 * 1e3:.2f} ms, overhead {(g50 - d50) * 1e3:.2f} ms "
            f"(target <= 2 ms)"
        )
        print(
            f"    p99 gateway {g99 * 1e3:.2f} ms, direct {d99 * 1e3:.2f} ms, overhead "
            f"{(g99 - d99) * 1e3:.2f} ms (target <= 10 ms)"
            + ("" if len(all_g) >= 10_000 else "  [fewer than 10,000 samples: p99 indicative]")
        )
        print(
            f"load average: {os.getloadavg()[0]:.2f} (2-core VM shared with other work); "
            f"total {time.perf_counter() - t0:.0f} s"
        )
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
