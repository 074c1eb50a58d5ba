"""A gateway launched by uvicorn directly (``uvicorn --workers N --factory
distillguard.app:app_from_environment``) refuses several workers with in-process replay
cache or rate limits, as ``distillguard serve`` does, and says the header cap is off (issue 24
follow-up, gap C)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from distillguard.app import Application, detected_workers
from distillguard.errors import ConfigurationError
from distillguard.gateway import Gateway, uvicorn_options
from distillguard.keyring import Keyring

FACTORY = "distillguard.app:app_from_environment"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import gc

    home = tmp_path / "home"
    home.mkdir()
    Keyring.create(home / "keyring.json")
    path = tmp_path / "dg.toml"
    path.write_text(f'home = "{home}"\n[gateway]\nmodels = ["m-1"]\n', encoding="utf-8")
    monkeypatch.setenv("DISTILLGUARD_CONFIG", str(path))
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    saved = {n: list(logging.getLogger(n).handlers) for n in ("distillguard", "uvicorn")}
    propagate = logging.getLogger("distillguard").propagate
    threshold = gc.get_threshold()
    yield path
    for n, handlers in saved.items():
        logging.getLogger(n).handlers = handlers
    logging.getLogger("distillguard").propagate = propagate
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _load(**kw: object) -> Gateway:
    """What each uvicorn worker does: ``Config.load()`` calls the factory."""
    cfg = uvicorn.Config(FACTORY, factory=True, **kw)  # type: ignore[arg-type]
    cfg.load()
    app = cfg.loaded_app
    while not isinstance(app, Application):  # uvicorn wraps the app in its middlewares
        app = app.app
    return app.gateway


@pytest.mark.parametrize("how", ["config", "WEB_CONCURRENCY", "argv", "gunicorn"])
def test_several_workers_with_in_process_state_are_refused(
    config: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw: dict[str, object] = {}
    if how == "config":
        kw["workers"] = 3
    elif how == "WEB_CONCURRENCY":
        monkeypatch.setenv("WEB_CONCURRENCY", "3")
    elif how == "argv":  # a spawned uvicorn worker sees its parent's command line
        monkeypatch.setattr(sys, "argv", ["/venv/bin/uvicorn", "--workers=3", FACTORY])
    else:
        monkeypatch.setattr(sys, "argv", ["/venv/bin/gunicorn", "-w", "3", "x:y"])
    with pytest.raises(ConfigurationError) as caught:
        _load(**kw)
    message = str(caught.value)
    assert "3 workers" in message and 'replay_cache = "memory"' in message
    assert 'rate_limits = "memory"' in message


def test_detected_workers_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(sys, "argv", ["pytest", "--workers", "4"])  # not a server command line
    assert detected_workers() == (1, "one worker")
    assert detected_workers(uvicorn.Config(FACTORY, workers=2))[0] == 2
    monkeypatch.setenv("WEB_CONCURRENCY", "5")  # uvicorn's and gunicorn's default
    assert detected_workers() == (5, "WEB_CONCURRENCY")


def test_one_worker_starts_and_warns_that_the_header_cap_is_off(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = _load()  # the factory sets up JSON logs on standard error
    try:
        lines = [ln for ln in capsys.readouterr().err.splitlines() if "header cap" in ln]
        assert len(lines) == 1 and "distillguard serve" in lines[0]
    finally:
        gw.close_sync()
    gw = _load(**uvicorn_options(max_header_bytes=65536))  # what 'distillguard serve' passes
    try:
        assert "header cap" not in capsys.readouterr().err
    finally:
        gw.close_sync()


@pytest.mark.redis
def test_several_workers_with_shared_state_start(config: Path) -> None:
    home = config.parent / "home"
    config.write_text(
        f'home = "{home}"\n[passport]\nreplay_cache = "redis"\n'
        '[gateway]\nrate_limits = "redis"\nmodels = ["m-1"]\n',
        encoding="utf-8",
    )
    gw = _load(workers=2)  # what each worker of 'distillguard serve --workers 2' does
    gw.close_sync()


def test_uvicorn_command_line_with_two_workers_does_not_serve(config: Path) -> None:
    """The real launch: the workers refuse to load the app (uvicorn restarts them; none serves)."""
    env = {**os.environ, "DISTILLGUARD_CONFIG": str(config)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--workers",
            "2",
            "--factory",
            FACTORY,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    try:  # uvicorn restarts a worker that died: read until a worker has refused, then stop
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode(errors="replace")
            lines.append(line)
            if not line or "cannot share in-process state" in line:
                break
    finally:
        proc.kill()
        lines.append(proc.communicate()[0].decode(errors="replace"))
    text = "".join(lines)
    assert "2 workers (uvicorn --workers) cannot share in-process state" in text
    assert "Application startup complete" not in text
