"""The rate limiter on a real Redis Cluster: three private redis-server nodes that this test
starts on free ports (not the machine's shared Redis), the script's keys in one slot."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from distillguard.gateway.ratelimit import _LUA, Check, Limit, RedisRateLimiter

pytestmark = pytest.mark.redis


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free too, so both below 65536."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(21000, 31000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are not installed")
    redis = pytest.importorskip("redis")
    base = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_ports(3)
    procs = []
    try:
        for port in ports:
            d = base / str(port)
            d.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(d / "nodes.conf"),
                        "--dir",
                        str(d),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in ports:
            _wait_ping(redis, port)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_cluster_ok(redis, ports[0])
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def _wait_ping(redis: object, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping()  # type: ignore[attr-defined]
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _cluster_state(info: object) -> str:
    """``cluster_state`` of a CLUSTER INFO reply (redis-py parses it into a dict)."""
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.partition(":")[2].strip()
    return ""


def _wait_cluster_ok(redis: object, port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while _cluster_state(client.execute_command("CLUSTER INFO")) != "ok":
        if time.monotonic() > deadline:
            raise RuntimeError("the test cluster did not come up")
        time.sleep(0.1)
    client.close()


def _gateway_like_checks(tag: str) -> list[Check]:
    """Keys like one gateway decision: passport, account requests and tokens, a /24."""
    return [
        Check("passport", f"pp:{tag}", Limit(60, 60, 3)),
        Check("account", f"acct:{tag}", Limit(60, 60, 5)),
        Check("account_tokens", f"acct-tok:{tag}", Limit(10_000, 60, 10_000), cost=100),
        Check("network", "net:203.0.113.0/24", Limit(600, 60, 50)),
    ]


def _keyslot(node: Any, key: str) -> int:
    """The server's CLUSTER KEYSLOT for ``key``."""
    return int(node.execute_command("CLUSTER KEYSLOT", key))


def test_the_keys_of_a_decision_share_one_slot_on_the_cluster(cluster_url: str) -> None:
    import redis

    rl = RedisRateLimiter.from_url(cluster_url, prefix=f"dg:t:{uuid.uuid4().hex}:", cluster=True)
    keys = rl.redis_keys(_gateway_like_checks("alice"))
    node = redis.Redis.from_url(cluster_url)
    slots = {_keyslot(node, k) for k in keys}
    assert len(slots) == 1
    # without the hash tag the same keys span slots: the cluster refuses the script
    cluster = redis.RedisCluster.from_url(cluster_url)
    untagged = [k.split("}", 1)[1] for k in keys]
    assert len({_keyslot(node, k) for k in untagged}) > 1
    args = ["1", *(["1000.0", "5000.0", "1.0"] * 4)]
    with pytest.raises(redis.RedisError, match="hash to the same slot"):  # CROSSSLOT
        node.eval(_LUA, len(untagged), *untagged, *args)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        cluster.eval(_LUA, len(untagged), *untagged, *args)  # the cluster client's
    # with the tags, the same call is served
    assert cluster.eval(_LUA, len(keys), *keys, *args)[0] == 1
    node.close()
    cluster.close()


def test_limits_on_the_cluster_blocking_and_async(cluster_url: str) -> None:
    rl = RedisRateLimiter.from_url(cluster_url, prefix=f"dg:t:{uuid.uuid4().hex}:", cluster=True)
    checks = _gateway_like_checks("bob")
    # the account allows a burst of 5; the passport 3: the passport limits first
    blocking = [rl.acquire(checks).allowed for _ in range(4)]
    assert blocking == [True, True, True, False]
    assert rl.acquire(checks).limited_by == "passport"

    async def go() -> list[bool]:
        other = _gateway_like_checks("carol")
        try:
            out = await asyncio.gather(*(rl.aacquire(other) for _ in range(6)))
            await rl.acharge(
                [Check("account_tokens", "acct-tok:carol", Limit(10_000, 60, 10_000), cost=9_800)]
            )
            # 300 tokens admitted + 9,800 charged: another 100 would exceed the 10,000 burst
            out.append(await rl.aacquire([other[2]]))
            return [d.allowed for d in out]
        finally:
            await rl.aclose()

    admitted = asyncio.run(go())
    assert sum(admitted[:6]) == 3  # concurrent: any three of the six, the passport's burst
    assert admitted[6] is False
