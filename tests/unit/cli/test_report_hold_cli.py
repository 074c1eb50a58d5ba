"""``report --bundle`` and ``bundle`` say they put the cited records on legal hold, and
``--no-hold`` writes the bundle without holds (issue 25)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distillguard.cli.main import main
from distillguard.evidence.testing import World, build_world
from distillguard.privacy import LegalHolds
from distillguard.store import open_store


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return build_world(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")


def _holds(world: World) -> int:
    with open_store(world.store_url) as store:
        return len(LegalHolds(store).holds())


def test_report_bundle_says_it_holds_and_no_hold_places_none(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["report", "--scan", str(world.scan_dir), "--store", world.store_url]
    capsys.readouterr()
    code = main(["--json", *base, "--out", "r1.html", "--bundle", "b1.zip", "--no-hold"])
    made = json.loads(capsys.readouterr().out)
    assert code == 0 and made["bundle"]["hold"] is False and made["bundle"]["holds"] == 0
    assert _holds(world) == 0
    assert main([*base, "--out", "r2.html", "--bundle", "b2.zip"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "5 put on legal hold" in out and "retention hold release" in out
    assert _holds(world) > 0
    assert main(["bundle", "--scan", str(world.scan_dir), "--out", "b3.zip", "--no-hold"]) == 0
    assert "no legal hold placed (--no-hold)" in " ".join(capsys.readouterr().out.split())


def test_help_tells_of_the_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-hold" in text and "legal hold" in text


def test_report_pdf_keeps_weasyprint_notes_out_of_the_output(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """WeasyPrint's warnings about this machine's fonts (and, before, the report's CSS) filled
    the terminal of ``report --pdf``: they are logged only with ``--debug``."""
    import logging

    args = ["report", "--scan", str(world.scan_dir), "--store", world.store_url]
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--out", "r.html", "--pdf"]) == 0
    assert Path("r.pdf").is_file()
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("weasyprint", "fontTools")]
    assert noisy == [], [r.getMessage() for r in noisy]
