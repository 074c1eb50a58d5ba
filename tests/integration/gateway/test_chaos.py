"""Chaos: PostgreSQL and Redis stopped under load and brought back (issue 21 item 3).

The test starts its own PostgreSQL cluster (initdb, as the ``postgres`` user when run as root)
and its own redis-server, on free ports: never the machine's shared servers. A gateway in
production mode (store registry, Redis limits, Redis nonces) serves a steady load from
concurrent agents; both servers are stopped (PostgreSQL in ``immediate`` mode, a crash; Redis
killed) while requests run, then started again.

* failure_mode = "open": every request is answered 200 during the outage; afterwards every
  acknowledged exchange is in the store and the ledger (replayed from the spool, exactly once)
  and the ledger audits clean.
* failure_mode = "closed": requests during the outage are refused 503 with Retry-After, and
  every acknowledged (200) exchange is in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distillguard.app import create_gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.keyring import KeyPurpose, open_keyring
from distillguard.ledger import Ledger, audit_ledger
from distillguard.store import open_store

_REDIS_NO_DISK = ("--save", "", "--appendonly", "no")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test's own."""

    bindir: Path
    data: Path
    port: int
    user: list[str] = field(default_factory=list)  # the runuser prefix when run as root

    def _run(self, *args: str) -> None:
        subprocess.run([*self.user, *args], check=True, capture_output=True, timeout=60, cwd="/tmp")

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}",
            "-l",
            str(self.data / "server.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@dataclass
class PrivateRedis:
    """A redis-server of this test's own (no persistence)."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", *_REDIS_NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PrivatePostgres, Any]]:
    bindir = _pg_bin()
    if bindir is None or shutil.which("redis-server") is None:
        pytest.skip("PostgreSQL server binaries and redis-server are needed")
    pytest.importorskip("redis")
    # not under pytest's temporary folder: it is private to root, and initdb runs as postgres
    base = Path(tempfile.mkdtemp(prefix="dg-chaos-"))
    data = base / "pg"
    user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser")
        user = [runuser, "-u", "postgres", "--"]
        base.chmod(0o755)
    data.mkdir()
    if user:
        shutil.chown(data, "postgres", "postgres")
    pg = PrivatePostgres(bindir, data, _free_port(), user)
    subprocess.run(
        [*user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
        cwd="/tmp",
    )
    pg.start()
    redis = PrivateRedis(_free_port())
    redis.start()
    try:
        yield pg, redis
    finally:
        redis.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop("fast")
        shutil.rmtree(base, ignore_errors=True)


async def _load(
    gw: Any,
    agents: list[Any],
    stop: asyncio.Event,
    outcomes: list[tuple[float, int, str | None]],
    refusals: list[str],
    slow: list[tuple[float, float, int]],
) -> None:
    """Each agent sends one request after another until ``stop``."""

    async def agent_loop(agent: Any, n: int) -> None:
        async with client(gw, agent, timeout=60) as c:
            i = 0
            while not stop.is_set():
                started = time.monotonic()
                r = await c.post("/v1/chat/completions", json=chat_body(f"q {n} {i}"))
                outcomes.append(
                    (
                        time.monotonic(),
                        r.status_code,
                        r.headers.get("x-distillguard-exchange-id")
                        if r.status_code == 200
                        else r.headers.get("retry-after"),
                    )
                )
                slow.append((time.monotonic() - started, started, r.status_code))
                if r.status_code != 200:
                    refusals.append(
                        f"{r.status_code} {r.headers.get('retry-after')} {r.text[:200]}"
                    )
                i += 1
                await asyncio.sleep(0.005)

    await asyncio.gather(*(agent_loop(a, n) for n, a in enumerate(agents)))


def _chaos(
    tmp_path: Path, servers: tuple[PrivatePostgres, PrivateRedis], mode: str
) -> tuple[list[tuple[float, int, str | None]], tuple[float, float], str, Any, float]:
    pg, redis = servers
    schema = f"chaos_{mode}_{uuid.uuid4().hex[:8]}"
    url = f"{pg.url}?schema={schema}"
    prefix = f"dg:chaos:{uuid.uuid4().hex}:"
    settings = make_settings(
        tmp_path,
        store_url=url,
        rate_limits="redis",
        redis_url=redis.url,
        redis_prefix=prefix + "rl:",
        failure_mode=mode,
        account_requests_per_minute=1_000_000,
        spool_retry_s=0.2,
        unavailable_retry_after_s=3,
        passport={
            "replay_cache": "redis-async",
            "redis_url": redis.url,
            "redis_prefix": prefix + "nonce:",
            "registry": "store",
        },
    )
    factory = AgentFactory.from_settings(settings, requests_per_minute=100_000)
    agents = [factory.issue(f"acct-{i}") for i in range(6)]
    factory.close()
    gw = create_gateway(settings)
    outcomes: list[tuple[float, int, str | None]] = []
    refusals: list[str] = []
    slow: list[tuple[float, float, int]] = []

    async def scenario() -> tuple[float, float]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(gw, agents, stop, outcomes, refusals, slow))
        await asyncio.sleep(1.5)
        down = time.monotonic()
        await asyncio.to_thread(pg.stop, "immediate")
        await asyncio.to_thread(redis.stop)
        print(f"\nstopped in {time.monotonic() - down:.1f} s")
        await asyncio.sleep(2.5)
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(pg.start)
        up = time.monotonic()
        print(f"restarted in {up - down - 2.5:.1f} s")
        await asyncio.sleep(2.5)
        stop.set()
        await load
        print(f"load stopped in {time.monotonic() - up - 2.5:.1f} s")
        return down, up

    try:
        window = asyncio.run(scenario())
        t0 = time.monotonic()
        if mode == "open":
            assert gw.core.recorder.wait_replayed(30), "the spool was not replayed"
        stats = gw.core.recorder.stats
        print(  # shown with -s: what the run did
            f"\n{mode}: {len(outcomes)} requests, "
            f"{sum(1 for t, _, _ in outcomes if window[0] <= t <= window[1])} during the outage, "
            f"statuses {sorted({s for _, s, _ in outcomes})}, spooled {stats.spooled}, "
            f"replayed {stats.replayed}, replay wait after the load {time.monotonic() - t0:.1f} s, "
            f"first refusals {refusals[:3]}, slowest "
            f"{[(round(d, 2), round(t - window[0], 2), st) for d, t, st in sorted(slow)[-5:]]}"
        )
    finally:
        gw.close_sync()
    return outcomes, window, settings.store_url, settings, max(d for d, _, _ in slow)


def _check_stored(url: str, settings: Any, acknowledged: list[str]) -> None:
    keyring = open_keyring(settings)
    store = open_store(url)
    try:
        missing = [i for i in acknowledged if store.get_exchange(i) is None]
        assert not missing, f"{len(missing)} acknowledged exchanges are not stored"
        ledger = Ledger.open(store)
        assert ledger.size == store.count("exchanges")
        for i in acknowledged[:: max(1, len(acknowledged) // 50)]:
            assert ledger.leaf_for(i) is not None
        ledger.publish_checkpoint(keyring.signing_key(KeyPurpose.LEDGER))
        report = audit_ledger(
            ledger, public_keys=[k.public_key for k in keyring.verify_keys(KeyPurpose.LEDGER)]
        )
        assert report.ok, report
    finally:
        store.close()  # the private cluster goes with the module


def test_open_mode_keeps_serving_and_loses_nothing(
    tmp_path: Path, servers: tuple[PrivatePostgres, PrivateRedis]
) -> None:
    outcomes, (down, up), url, settings, slowest = _chaos(tmp_path, servers, "open")
    assert slowest < 10, f"a request waited {slowest:.1f} s"
    statuses = [s for _, s, _ in outcomes]
    during = [s for t, s, _ in outcomes if down <= t <= up]
    assert during, "no request ran during the outage"
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    acknowledged = [i for _, s, i in outcomes if s == 200 and i]
    assert len(acknowledged) == len(outcomes) and len(set(acknowledged)) == len(acknowledged)
    _check_stored(url, settings, acknowledged)


def test_closed_mode_acknowledges_nothing_it_did_not_store(
    tmp_path: Path, servers: tuple[PrivatePostgres, PrivateRedis]
) -> None:
    outcomes, (_, up), url, settings, slowest = _chaos(tmp_path, servers, "closed")
    assert slowest < 10, f"a request waited {slowest:.1f} s (a refusal should be quick)"
    refused = [(s, h) for _, s, h in outcomes if s != 200]
    assert refused, "nothing was refused while PostgreSQL and Redis were down"
    assert all(s == 503 and h == "3" for s, h in refused), set(refused)
    after = [s for t, s, _ in outcomes if t > up + 1.5]
    assert after and set(after) == {200}, "the gateway did not recover"
    acknowledged = [i for _, s, i in outcomes if s == 200 and i]
    _check_stored(url, settings, acknowledged)


def test_the_private_servers_are_not_the_shared_ones(
    servers: tuple[PrivatePostgres, PrivateRedis],
) -> None:
    pg, redis = servers
    assert pg.port != 5432 and redis.port != 6379
