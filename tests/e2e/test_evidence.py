"""Evidence end to end through the CLI: report, bundle, offline verification, tampering; and the
report opened in a real headless Chromium (skipped where /usr/bin/chromium is absent)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.evidence._zip import layout, read_local_entry
from distillguard.evidence.testing import World, build_world

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def cli_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return build_world(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_report_bundle_verify_tamper(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", cli_world.store_url]
    code, made = _run(
        capsys, "report", "--scan", str(cli_world.scan_dir), *store, "--out",
        str(tmp_path / "out" / "report.html"), "--bundle", str(tmp_path / "out" / "ev.zip"),
    )  # fmt: skip
    assert code == 0, made
    assert made["cited_exchanges"] == 5 and made["bundle"]["holds"] == 5
    assert main(["keys", "export-public", "--out", str(tmp_path / "jwks.json")]) == 0
    bundle = tmp_path / "out" / "ev.zip"
    code, check = _run(
        capsys, "verify-bundle", str(bundle), "--public-key", str(tmp_path / "jwks.json")
    )
    assert code == 0 and check["ok"] is True and check["trust"] == "given keys"
    assert check["exchanges_verified"] == 5
    # one byte of the report inside the bundle changed: exit 5, report.html named
    blob = bytearray(bundle.read_bytes())
    _, manifest, after = read_local_entry(bytes(blob), 0)
    _, sig, _ = read_local_entry(bytes(blob), after)
    files = json.loads(manifest)["files"]
    regions = layout(
        [("manifest.json", len(manifest)), ("manifest.sig", len(sig))]
        + [(f["path"], f["size"]) for f in files]
    )
    target = next(r for r in regions if r.member == "report.html" and r.part == "data")
    blob[target.start + 100] ^= 0x20
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(blob))
    code, check = _run(capsys, "verify-bundle", str(bad), "-k", str(tmp_path / "jwks.json"))
    assert code == 5 and check["ok"] is False
    assert [p["members"] for p in check["problems"]] == [["report.html"]]
    # the text output names it too
    capsys.readouterr()
    assert main(["verify-bundle", str(bad)]) == 5
    captured = capsys.readouterr()
    assert "report.html" in captured.out + captured.err


def test_bundle_command_and_pdf(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, made = _run(
        capsys, "bundle", "--scan", str(cli_world.scan_dir), "--store", cli_world.store_url,
        "--out", str(tmp_path / "b.zip"), "--no-report",
    )  # fmt: skip
    assert code == 0 and made["exchanges"] == 5
    code, check = _run(capsys, "verify-bundle", str(tmp_path / "b.zip"))
    assert code == 0 and check["trust"] == "keys in the bundle"
    code, err = _run(capsys, "report", "--scan", str(tmp_path / "nowhere"))
    assert code == 4 and "not a scan output folder" in err["message"]


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is not installed (/usr/bin/chromium and /usr/bin/chromedriver; "
    "Debian: apt-get install chromium chromium-driver)",
)
def test_report_renders_in_chromium(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out = tmp_path / "report.html"
    code, _ = _run(
        capsys,
        "report",
        "--scan",
        str(cli_world.scan_dir),
        "--store",
        cli_world.store_url,
        "--out",
        str(out),
    )
    assert code == 0
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="dg-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,2400",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(out.resolve().as_uri())
        assert driver.title == "DistillGuard evidence report"
        for selector in ("#title", "#summary", "section.campaign", "table.signals", "#methods"):
            assert driver.find_element(By.CSS_SELECTOR, selector).is_displayed(), selector
        images = driver.find_elements(By.CSS_SELECTOR, "img.timeline, img.graph, img.histogram")
        assert len(images) == 3
        for img in images:
            assert (
                driver.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth", img
                )
                > 100
            )
        assert "[EMAIL]" in driver.find_element(By.CSS_SELECTOR, "div.exchange").text
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"evidence-report-{os.getpid()}.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
