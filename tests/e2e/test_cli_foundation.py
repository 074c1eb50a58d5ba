"""The command line end to end: validate, ingest, export, config; exit codes and --json."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from distillguard.cli.main import main
from distillguard.testing import make_account, make_exchange, write_jsonl, write_log


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_validate_clean_and_dirty(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_log(tmp_path / "good", [make_account()], [make_exchange()])
    assert main(["--json", "validate", str(good)]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["ok"] and report["exchanges"] == {"read": 1, "accepted": 1, "quarantined": 0}

    bad = tmp_path / "bad"
    write_jsonl(bad / "accounts.jsonl", [make_account().to_dict()])
    write_jsonl(bad / "exchanges.jsonl", [{**make_exchange().to_dict(), "ts": "noon"}])
    assert main(["--json", "validate", str(bad), "--quarantine", str(tmp_path / "q.jsonl")]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["exchanges"]["quarantined"] == 1
    assert report["sample"][0]["field"] == "ts"
    assert (tmp_path / "q.jsonl").exists()


def test_missing_log_folder_is_a_clear_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "/no/such/log"]) == 4
    err = capsys.readouterr().err
    assert "DG201" in err and "/no/such/log does not exist" in err
    assert "Traceback" not in err


def test_ingest_then_reingest_then_export(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "log", [make_account()], [make_exchange("a"), make_exchange("b")])
    assert main(["--json", "ingest", str(log)]) == 0
    first = orjson.loads(capsys.readouterr().out)
    assert first["exchanges"]["inserted"] == 2
    assert first["store"].endswith("home/store.sqlite")
    assert main(["ingest", str(log)]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert main(["--json", "export", "--out", str(tmp_path / "out")]) == 0
    exported = orjson.loads(capsys.readouterr().out)
    assert exported["exchanges"] == 2
    assert (tmp_path / "out" / "exchanges.parquet").exists()


def test_export_rejects_unknown_format(home: Path, tmp_path: Path) -> None:
    assert main(["export", "--out", str(tmp_path / "o"), "--format", "xml"]) == 2


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("distillguard ")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "ingest", "export", "keys", "config"):
        assert command in out


def test_ingest_minimises_content_per_retention_policy(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillguard.store import open_store

    config = tmp_path / "distillguard.toml"
    config.write_text('[retention]\nminimise = "truncate:8"\n')
    log = write_log(tmp_path / "log", [make_account()], [make_exchange("m1")])
    assert main(["--config", str(config), "keys", "init"]) == 0
    assert main(["--config", str(config), "ingest", str(log)]) == 0
    with open_store(f"sqlite:///{home / 'store.sqlite'}") as store:
        stored = store.get_exchange("m1")
    assert stored is not None
    assert all(len(m.content) <= 8 for m in stored.exchange.messages)
    assert stored.exchange.response is not None and len(stored.exchange.response) <= 8
    capsys.readouterr()
    # the ledger committed to the full record first: the audit names the content as erased
    assert main(["--config", str(config), "--json", "ledger", "audit"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert "minimisation" in orjson.dumps(report).decode()
