"""``distillguard serve`` pieces: the worker factory, JSON logs with redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.app import app_from_environment
from distillguard.gateway import Gateway
from distillguard.gateway.logs import JsonFormatter, configure_json_logging
from distillguard.keyring import Keyring

_LOGGERS = ("distillguard", "uvicorn", "uvicorn.error")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Restore the loggers (and the GC settings) that serving changes."""
    import gc

    threshold = gc.get_threshold()
    saved = {
        n: (
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in _LOGGERS
    }
    yield
    for n, (handlers, propagate, level) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers, lg.propagate, lg.level = handlers, propagate, level
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_worker_factory_builds_the_configured_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    Keyring.create(home / "keyring.json")
    config = tmp_path / "dg.toml"
    config.write_text(f'home = "{home}"\n[gateway]\nmodels = ["m-1"]\n', encoding="utf-8")
    monkeypatch.setenv("DISTILLGUARD_CONFIG", str(config))
    import gc

    application = app_from_environment()
    gw = application.gateway
    try:
        assert isinstance(gw, Gateway)
        assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() > 0
        assert gw.core.upstream.models() == ["m-1"]
        token = (home / "admin.token").read_text().strip()  # created, owner-only
        assert len(token) >= 32 and (home / "admin.token").stat().st_mode & 0o077 == 0
        assert gw.admin_token == token
    finally:
        gw.close_sync()


def test_json_logs_carry_fields_and_redact(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_json_logging("INFO", stream=stream)
    logging.getLogger("distillguard.gateway.access").info(
        "exchange for bob@example.com", extra={"exchange_id": "gx_1", "status": 200}
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["exchange_id"] == "gx_1" and line["status"] == 200
    assert line["level"] == "INFO" and line["logger"] == "distillguard.gateway.access"
    assert "bob@example.com" not in line["message"]


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "failed" and "ValueError: bad" in out["exception"]


def _serve_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, *args: str
) -> tuple[int, dict[str, object]]:
    from distillguard.cli.main import main

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    Keyring.create(home / "keyring.json")
    path = tmp_path / "dg.toml"
    path.write_text(f'home = "{home}"\n{config}', encoding="utf-8")
    capsys.readouterr()
    code = main(["--json", "--config", str(path), "serve", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("config", "args", "in_process"),
    [
        ("", ("--workers", "2"), 2),
        ('[gateway]\nworkers = 3\nrate_limits = "redis"\n', (), 1),
        ('[passport]\nreplay_cache = "redis"\n', ("--workers", "2"), 1),
    ],
)
def test_several_workers_with_in_process_state_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
    config: str,
    args: tuple[str, ...],
    in_process: int,
) -> None:
    # Each worker would keep its own nonce cache and limits: replays accepted, limits multiplied.
    import uvicorn

    def must_not_run(*a: object, **k: object) -> None:
        raise AssertionError("uvicorn started")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    monkeypatch.delenv("DISTILLGUARD_CONFIG", raising=False)
    code, out = _serve_json(tmp_path, capsys, config, *args)
    assert code == 3
    assert out["ok"] is False and out["code"] == "DG100"
    assert "replay" in str(out["message"]) and "redis" in str(out["hint"])
    details = out["details"]
    assert isinstance(details, dict) and len(details["in_process"]) == in_process


def test_several_workers_with_redis_state_start_with_the_head_limit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    import functools

    import uvicorn

    from distillguard.gateway._server import HeadLimitedHttpToolsProtocol

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.delenv("DISTILLGUARD_CONFIG", raising=False)
    config = (
        '[passport]\nreplay_cache = "redis"\n'
        '[gateway]\nrate_limits = "redis"\nmax_header_bytes = 8192\n'
    )
    code, out = _serve_json(tmp_path, capsys, config, "--workers", "2")
    assert code == 0 and out["workers"] == 2
    assert seen["workers"] == 2 and seen["proxy_headers"] is False
    http = seen["http"]
    assert isinstance(http, functools.partial) and http.func is HeadLimitedHttpToolsProtocol
    assert http.keywords == {"max_head_bytes": 8192}
    import pickle

    assert pickle.loads(pickle.dumps(http)).keywords == {"max_head_bytes": 8192}  # to workers


def test_configured_routes_build_a_routed_upstream(tmp_path: Path) -> None:
    """[gateway.upstreams] + [[gateway.routes]] in the configuration: the served gateway routes."""
    from distillguard.app import create_gateway
    from distillguard.gateway.testing import make_settings
    from distillguard.gateway.upstream import OpenAIUpstream, RoutedUpstream

    settings = make_settings(
        tmp_path,
        models=["chat-1"],
        upstreams={"primary": {"url": "http://a.test/v1"}, "backup": {"url": "http://b.test/v1"}},
        routes=[{"models": ["chat-*"], "upstreams": ["primary", "backup"]}],
    )
    gw = create_gateway(settings)
    try:
        upstream = gw.core.upstream
        assert isinstance(upstream, RoutedUpstream)
        assert upstream.models() == ["chat-1"]
        assert [u.name for u in upstream.routes[0].upstreams] == ["primary", "backup"]
        assert all(isinstance(u, OpenAIUpstream) for u in upstream.routes[0].upstreams)
    finally:
        gw.close_sync()
