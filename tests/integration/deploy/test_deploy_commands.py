"""The commands the image and the compose services run, run here against the machine's real
PostgreSQL and Redis (base images cannot be pulled on these machines): the keyring service's
install, the migration job (twice at once, as racing replicas would), two gateway replicas with
the production settings (two workers each), the image's HEALTHCHECK probe; then what the
replica settings promise: a request replayed to the other replica is refused, each replica's
/metrics sums its workers, and a deployment that declares several replicas with in-process
nonces or limits refuses to start and says what to configure.

Each command is read from deploy/compose.yaml and deploy/Dockerfile, not restated here; only the
host names (postgres, redis), the container paths and the ports are mapped to this machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from distillguard.testing import postgres_store_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DISTILLGUARD = [sys.executable, "-m", "distillguard.cli.main"]
PUBLIC = "http://api.example.com"  # the load balancer's name, the @authority clients sign


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def dockerfile() -> str:
    return re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage."""
    runtime = dockerfile().split("AS runtime", 1)[1]
    (env_line,) = [line for line in runtime.splitlines() if line.startswith("ENV ")]
    pairs = re.findall(r"(\w+)=(\S+)", env_line)
    return {k: v for k, v in pairs if k != "PATH"}


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK CMD (exec form)."""
    line = next(x for x in dockerfile().splitlines() if x.startswith("HEALTHCHECK"))
    cmd = json.loads(line.split(" CMD ", 1)[1])
    assert isinstance(cmd, list) and cmd[0] == "python"
    return [sys.executable, *cmd[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """The compose deployment mapped onto this machine."""

    env: dict[str, str]
    tmp: Path
    keys: Path

    def command(self, service: str) -> list[str]:
        svc = compose()["services"][service]
        cmd = svc["command"]
        assert isinstance(cmd, list)
        return [*DISTILLGUARD, *cmd]  # the image's ENTRYPOINT is `distillguard`

    def run(self, service: str, *extra: str, env: dict[str, str] | None = None) -> Any:
        return subprocess.run(
            [*self.command(service), *extra],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def _map_hosts(text: str) -> str:
    return text.replace("@postgres:5432", "@127.0.0.1:5432").replace(
        "redis://redis:6379", "redis://127.0.0.1:6379"
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    redis = pytest.importorskip("redis")
    r = redis.Redis(host="127.0.0.1", port=6379)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"dg:test:deploy:{uuid.uuid4().hex}:"
    config = _map_hosts((DEPLOY / "distillguard.toml").read_text())
    config = config.replace('"dg:rl:"', f'"{prefix}rl:"').replace(
        '"dg:nonce:"', f'"{prefix}nonce:"'
    )
    (tmp_path / "distillguard.toml").write_text(config)
    # the operator's step (docs/deploy.md): a keyring made once, kept as the secret file
    secrets = tmp_path / "secrets"
    done = subprocess.run(
        [*DISTILLGUARD, "keys", "init"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DISTILLGUARD_HOME": str(secrets)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the keyring service: its entrypoint and command, container paths mapped
    svc = compose()["services"]["keyring"]
    keys = tmp_path / "keys"
    keys.mkdir()
    install = [*svc["entrypoint"], *svc["command"]]
    install = [
        a.replace("/run/secrets/keyring", str(secrets / "keyring.json")).replace(
            "/var/lib/distillguard/keys", str(keys)
        )
        for a in install
    ]
    if os.geteuid() != 0:  # the job runs as root in its container; here only root may chown
        install = [a for a in install if a not in ("-o", "-g", "10001")]
    subprocess.run(install, check=True, timeout=30)
    assert (keys / "keyring.json").stat().st_mode & 0o777 == 0o600
    with postgres_store_url() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env |= image_env()
        for key, value in compose()["x-distillguard"]["environment"].items():
            env[key] = _map_hosts(str(value))
        env |= {
            "DISTILLGUARD_CONFIG": str(tmp_path / "distillguard.toml"),
            "DISTILLGUARD_STORE__URL": url,
            "DISTILLGUARD_KEYRING__PATH": str(keys / "keyring.json"),
            "DISTILLGUARD_HOME": str(tmp_path / "home"),
            "DISTILLGUARD_GATEWAY__HOST": "127.0.0.1",
        }
        try:
            yield Deployment(env=env, tmp=tmp_path, keys=keys)
        finally:
            for key in r.scan_iter("{" + prefix + "*"):
                r.delete(key)
            for key in r.scan_iter(prefix + "*"):
                r.delete(key)


def test_migration_job_then_current(deployment: Deployment) -> None:
    # two migration jobs at once (a re-run job and a replica's): both succeed, one applies
    procs = [
        subprocess.Popen(
            deployment.command("migrate"),
            env=deployment.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    again = deployment.run("migrate")
    assert again.returncode == 0, again.stderr[-1500:]
    current = subprocess.run(
        [*DISTILLGUARD, "--json", "db", "current"],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert current.returncode == 0, current.stderr[-1500:]
    assert "pending" in current.stdout.lower() or "current" in current.stdout.lower()


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_replica(deployment: Deployment, name: str) -> Replica:
    port = free_port()
    log = deployment.tmp / f"{name}.log"
    env = {
        **deployment.env,
        "DISTILLGUARD_GATEWAY__PORT": str(port),
        "DISTILLGUARD_HOME": str(deployment.tmp / name),
    }
    proc = subprocess.Popen(
        deployment.command(name),
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    replica = Replica(proc, port, log)
    deadline = time.monotonic() + 120
    probe = healthcheck_command()
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        ok = subprocess.run(probe, env=env, capture_output=True, timeout=10, check=False)
        if ok.returncode == 0 and httpx.get(replica.url + "/readyz", timeout=5).status_code == 200:
            return replica
        if time.monotonic() > deadline:
            stop(replica)
            pytest.fail(f"{name} not healthy in 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(replica: Replica) -> None:
    if replica.proc.poll() is None:
        os.killpg(replica.proc.pid, signal.SIGTERM)
        try:
            replica.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(replica.proc.pid, signal.SIGKILL)
            replica.proc.wait(timeout=30)


def requests_counted(exposition: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("distillguard_gateway_requests_total{") and (
            'endpoint="/v1/chat/completions"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_replicas_with_the_production_settings(deployment: Deployment) -> None:
    from distillguard.config import load_settings
    from distillguard.gateway.agents import AgentFactory

    assert deployment.run("migrate").returncode == 0
    replicas = [start_replica(deployment, "gateway-1"), start_replica(deployment, "gateway-2")]
    try:
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(deployment.env)
            settings = load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert settings.gateway.workers == 2 and settings.gateway.replicas == 2
        agent = AgentFactory.from_settings(settings).issue(f"acct-{uuid.uuid4().hex[:8]}")
        signer = agent.signer()

        def signed(text: str) -> tuple[bytes, dict[str, str]]:
            body = json.dumps(
                {"model": "stub-1", "messages": [{"role": "user", "content": text}]}
            ).encode()
            headers = {"content-type": "application/json", "host": "api.example.com"}
            headers |= signer.signed_headers(
                "POST", PUBLIC + "/v1/chat/completions", list(headers.items()), body
            )
            return body, headers

        # every request answered by either replica (the load balancer's choice)
        sent = [0, 0]
        for i in range(24):
            body, headers = signed(f"question {i}")
            r = httpx.post(
                replicas[i % 2].url + "/v1/chat/completions",
                content=body,
                headers=headers,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"].startswith("gx_")
            sent[i % 2] += 1
        # the same signed request replayed to the other replica: refused (shared nonces)
        body, headers = signed("replay me")
        first = httpx.post(
            replicas[0].url + "/v1/chat/completions", content=body, headers=headers, timeout=30
        )
        second = httpx.post(
            replicas[1].url + "/v1/chat/completions", content=body, headers=headers, timeout=30
        )
        assert first.status_code == 200
        assert second.status_code == 401 and second.json()["error"]["code"] == "replayed_nonce"
        sent[0] += 1
        # each replica's /metrics counts the requests of both its workers, whichever answers
        # (the second replica also answered the refused replay: answered requests count it)
        expected = [sent[0], sent[1] + 1]
        for replica, n in zip(replicas, expected, strict=True):
            seen = {requests_counted(httpx.get(replica.url + "/metrics").text) for _ in range(6)}
            assert seen == {float(n)}
    finally:
        for replica in replicas:
            stop(replica)
    # SIGTERM: both replicas stopped cleanly
    assert [r.proc.returncode for r in replicas] == [0, 0], [
        r.log.read_text()[-2000:] for r in replicas
    ]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DISTILLGUARD_PASSPORT__REPLAY_CACHE", "memory", "replay_cache"),
        ("DISTILLGUARD_GATEWAY__RATE_LIMITS", "memory", "rate_limits"),
    ],
)
def test_replicas_on_in_process_state_refuse_to_start(
    deployment: Deployment, variable: str, value: str, named: str
) -> None:
    """Even with one worker per replica: the deployment declares two replicas."""
    done = deployment.run(
        "gateway-1",
        env={
            variable: value,
            "DISTILLGUARD_GATEWAY__WORKERS": "1",
            "DISTILLGUARD_GATEWAY__PORT": str(free_port()),
        },
    )
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert named in message and "replicas" in message, message[-2000:]
    assert "redis" in message  # what to configure instead
