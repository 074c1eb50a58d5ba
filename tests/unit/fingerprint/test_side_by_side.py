"""Canary, radioactivity and lineage evidence side by side (fingerprint.side_by_side and
``distillguard fingerprint evidence``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from distillguard.cli.main import app, main
from distillguard.fingerprint.side_by_side import side_by_side, side_by_side_markdown
from distillguard.results import read_attribution, read_radioactivity

DATA = Path(__file__).parents[1] / "results" / "data"
RADIO = DATA / "radioactivity-v1.json"
ATTR = DATA / "attribution-v1.json"

CANARY: dict[str, Any] = {
    "verdict": True,
    "statistic": 5.0,
    "p_value": 3.2e-5,
    "alpha": 0.01,
    "planted": 8,
    "planted_hits": 6,
    "decoys": 24,
    "decoy_hits": 1,
    "failed": 0,
    "method": "fisher-exact-one-sided (planted vs decoy recall)",
    "reason": "6 of 8 planted vs 1 of 24 decoys",
}


def test_all_three_side_by_side() -> None:
    rows = side_by_side(
        canaries=CANARY,
        radioactivity=read_radioactivity(RADIO),
        attribution=read_attribution(ATTR),
    )
    by = {r.channel: r for r in rows}
    assert list(by) == ["canaries", "radioactivity", "lineage", "lineage --teacher"]
    assert by["canaries"].positive is True and by["canaries"].p_value == pytest.approx(3.2e-5)
    assert "6 of 8 planted" in by["canaries"].detail and "1 of 24 decoys" in by["canaries"].detail
    radio = read_radioactivity(RADIO)
    assert by["radioactivity"].verdict == radio.verdict == "not detected"
    assert by["radioactivity"].positive is False
    assert by["radioactivity"].p_value == radio.p_value
    assert by["lineage"].positive is True
    assert by["lineage"].verdict == "related to gpt-3.5 (openai)"
    assert by["lineage"].p_value == pytest.approx(1.2e-5)
    assert by["lineage --teacher"].verdict == "learned from gpt-3.5-turbo"
    assert by["lineage --teacher"].p_value == pytest.approx(1e-4)
    assert all(r.ran and r.shows and r.misleads for r in rows)
    md = side_by_side_markdown(rows)
    assert (
        md.startswith("| evidence |")
        and md.count("\n| ") == len(rows)
        and "style cannot cause it" in md
    )


def test_missing_results_are_rows_that_say_how_to_get_them() -> None:
    rows = side_by_side(attribution=read_attribution(ATTR))
    not_run = [r for r in rows if not r.ran]
    assert [r.channel for r in not_run] == ["canaries", "radioactivity"]
    assert all(r.positive is None and r.p_value is None for r in not_run)
    assert "probe-canaries" in not_run[0].verdict


def test_cli_json_and_table(tmp_path: Path) -> None:
    canary = tmp_path / "canaries.json"
    canary.write_text(json.dumps(CANARY))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "--json",
            "fingerprint",
            "evidence",
            "--canaries",
            str(canary),
            "--radioactivity",
            str(RADIO),
            "--attribution",
            str(ATTR),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert [r["channel"] for r in doc["evidence"]][:3] == ["canaries", "radioactivity", "lineage"]
    res = runner.invoke(app, ["fingerprint", "evidence", "--canaries", str(canary)])
    assert res.exit_code == 0 and "| canaries |" in res.stdout


def test_cli_refuses_nothing_and_a_file_that_is_not_a_canary_result(tmp_path: Path) -> None:
    assert main(["fingerprint", "evidence"]) == 4
    bad = tmp_path / "bad.json"
    bad.write_text('{"p_value": 0.1}')
    assert main(["fingerprint", "evidence", "--canaries", str(bad)]) == 4
    bad.write_text("not json")
    assert main(["fingerprint", "evidence", "--canaries", str(bad)]) == 4
