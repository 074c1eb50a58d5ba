"""The gateway as a real server (``distillguard serve`` in a subprocess, uvicorn on 127.0.0.1):
the official openai SDK unchanged, slow clients bounded, SIGKILL under load loses no
acknowledged exchange, schemathesis finds no 500."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.config import Settings
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import ADMIN_TOKEN, chat_body
from distillguard.keyring import KeyPurpose, Keyring, open_keyring
from distillguard.ledger import Ledger, audit_ledger
from distillguard.store import open_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``distillguard serve``."""

    config: Path
    settings: Settings
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distillguard.cli.main",
                "--config",
                str(self.config),
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"serve exited: {err[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve did not become ready")

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _new_server(tmp_path: Path) -> Server:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "distillguard.toml"
    config.write_text(
        f'home = "{home}"\n[gateway]\nadmin_token = "{ADMIN_TOKEN}"\nbody_timeout_s = 1.0\n'
        'durability = "batch"\n',
        encoding="utf-8",
    )
    settings = Settings(home=home)
    Keyring.create(settings.keyring_path)
    srv = Server(config=config, settings=settings, port=_free_port())
    srv.start()
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that do not kill it."""
    srv = _new_server(tmp_path_factory.mktemp("gw"))
    try:
        yield srv
    finally:
        srv.stop()


def test_openai_sdk_unchanged(server: Server) -> None:
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    agent = AgentFactory.from_settings(server.settings).issue("acct-sdk")
    sdk = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key="unused",
        http_client=httpx2.Client(auth=agent.httpx2_auth()),
    )
    reply = sdk.chat.completions.create(
        model="stub-1", messages=[{"role": "user", "content": "hello"}], max_tokens=7
    )
    assert reply.choices[0].message.role == "assistant"
    assert len(reply.choices[0].message.content.split()) == 7
    assert reply.usage.completion_tokens == 7
    chunks = list(
        sdk.chat.completions.create(
            model="stub-1",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content[: len(text)] and len(text.split()) == 5
    assert chunks[-1].usage.completion_tokens == 5
    comp = sdk.completions.create(model="stub-1", prompt="once", max_tokens=3)
    assert len(comp.choices[0].text.split()) == 3
    assert [m.id for m in sdk.models.list()] == ["stub-1"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused").chat.completions.create(
            model="stub-1", messages=[{"role": "user", "content": "no passport"}]
        )


def test_simulate_target_replays_through_the_server(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``distillguard simulate --target URL``: agents issued with the server's keyring and
    registry, requests signed, answered and recorded."""
    import orjson

    from distillguard.cli.main import main

    store = open_store(server.settings.store_url)
    try:
        before = store.count("exchanges")
    finally:
        store.close()
    code = main(
        [
            "--config",
            str(server.config),
            "--json",
            "simulate",
            "--scenario",
            "tiny",
            "--out",
            str(tmp_path / "log"),
            "--instructions",
            "grammar",
            "--seed",
            "5",
            "--target",
            server.url,
            "--rate",
            "200",
            "--limit",
            "25",
            "--model",
            "stub-1",
        ]
    )
    assert code == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["replay"]["sent"] == 25 and report["replay"]["ok"] == 25
    store = open_store(server.settings.store_url)
    try:
        assert store.count("exchanges") == before + 25
    finally:
        store.close()


def test_slow_client_is_cut_off(server: Server) -> None:
    """Headers announce 1000 bytes, 10 arrive, then nothing: 408 after the body timeout."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n"
            b'content-type: application/json\r\n\r\n{"model":'
        )
        t0 = time.monotonic()
        data = b""
        while b"request_timeout" not in data and time.monotonic() - t0 < 8:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in data
    assert elapsed < 5
    # the server still serves others
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_oversized_body_is_refused_by_the_server(server: Server) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"x" * (2 << 20),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _send_huge_header(port: int, size: int) -> bytes:
    """One request whose single header is ``size`` bytes; what came back (b"" if reset)."""
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
            chunk = b"a" * 65_536
            for _ in range(size // len(chunk)):
                s.sendall(chunk)
            s.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection while we were sending: refused early
        try:
            while part := s.recv(65_536):
                reply += part
        except (ConnectionResetError, TimeoutError):
            pass
    return reply


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_oversized_headers_are_refused_early_with_bounded_memory(server: Server) -> None:
    """A 16 MB header (limit: 64 KiB) gets 431 or a closed connection, not 200; the server's
    peak memory grows by less than 8 MB (unbounded it grew by more than the header) and it
    still answers."""
    assert server.proc is not None
    pid = server.proc.pid
    assert httpx.get(server.url + "/healthz").status_code == 200
    rss = _status_kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    t0 = time.monotonic()
    reply = _send_huge_header(server.port, 16 << 20)
    elapsed = time.monotonic() - t0
    peak = _status_kib(pid, "VmHWM")
    assert not reply.startswith(b"HTTP/1.1 200")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert peak - rss < 8 * 1024, (rss, peak)
    assert elapsed < 10
    assert httpx.get(server.url + "/healthz").status_code == 200
    # a head within the limit is served as before
    r = httpx.get(server.url + "/healthz", headers={"x-ok": "a" * 30_000})
    assert r.status_code == 200


def test_sigkill_under_load_loses_no_acknowledged_exchange(tmp_path: Path) -> None:
    server = _new_server(tmp_path)
    try:
        _sigkill_scenario(server)
    finally:
        server.stop()


def _sigkill_scenario(server: Server) -> None:
    factory = AgentFactory.from_settings(server.settings)
    agents = [factory.issue(f"acct-k{i}") for i in range(8)]
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(i: int) -> None:
        with agents[i].client(server.url, timeout=5) as c:
            n = 0
            while not stop.is_set():
                try:
                    r = c.post("/v1/chat/completions", json=chat_body(f"t{i} q{n}"))
                except httpx.HTTPError:
                    return  # the server died
                n += 1
                if r.status_code == 200:
                    with lock:
                        acked.append(r.headers["x-distillguard-exchange-id"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 20
    store = open_store(server.settings.store_url)
    try:
        missing = [x for x in acked if store.get_exchange(x) is None]
        assert missing == []
        ledger = Ledger.open(store)
        keys = [k.public_key for k in open_keyring(server.settings).verify_keys(KeyPurpose.LEDGER)]
        assert audit_ledger(ledger, public_keys=keys).ok
        assert all(ledger.leaf_for(x) is not None for x in acked[:: max(1, len(acked) // 50)])
    finally:
        store.close()
    # restart: the gateway serves again and the ledger still audits
    server.start()
    with agents[0].client(server.url) as c:
        assert c.post("/v1/chat/completions", json=chat_body("after restart")).status_code == 200
    store = open_store(server.settings.store_url)
    try:
        assert audit_ledger(Ledger.open(store), public_keys=keys).ok
    finally:
        store.close()


def test_schemathesis_finds_no_500(tmp_path: Path) -> None:
    """Property-based calls generated from the OpenAPI schema, against the app in process."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    from distillguard.app import create_gateway
    from distillguard.gateway.testing import make_settings

    gw = create_gateway(make_settings(tmp_path))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", gw)
        failures: list[str] = []
        calls: dict[str, int] = {}

        for op in schema.get_all_operations():
            operation = op.ok()

            @settings(
                max_examples=4,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                case.headers = {
                    **(case.headers or {}),
                    "authorization": f"Bearer {ADMIN_TOKEN}",
                }
                response = case.call()
                label = case.operation.label
                calls[label] = calls.get(label, 0) + 1
                if response.status_code >= 500 and response.status_code not in (502, 503, 504):
                    failures.append(f"{label}: {response.status_code}")

            check()
        assert failures == []
        assert len(calls) >= 16 and min(calls.values()) >= 1  # every operation was exercised
    finally:
        gw.close_sync()
