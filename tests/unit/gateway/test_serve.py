"""``distillguard serve`` pieces: the worker factory, JSON logs with redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.gateway import Gateway
from distillguard.gateway.app import app_from_environment
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

    gw = app_from_environment()
    try:
        assert isinstance(gw, Gateway)
        assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() > 0
        assert gw.core.upstream.models() == ["m-1"]
        token = (home / "admin.token").read_text().strip()  # created, owner-only
        assert len(token) >= 32 and (home / "admin.token").stat().st_mode & 0o077 == 0
        assert gw.admin.token == token
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
