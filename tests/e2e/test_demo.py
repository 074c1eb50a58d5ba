"""`distillguard demo` runs end to end (on the tiny scenario) and leaves verifiable results."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from distillguard.cli.main import main


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    fast = ["--scenario", "tiny", "--seed", "3", "--lab-preset", "tiny", "--no-attribution"]
    assert main(["--quiet", "demo", "--out", str(out), *fast]) == 0
    printed = capsys.readouterr().out
    assert f"Results are in {out}" in printed.replace("\n", "")
    assert (out / "home" / "store.sqlite").exists()
    assert (out / "log" / "labels.parquet").exists()
    bundle = orjson.loads((out / "proof.json").read_bytes())
    assert bundle["leaf_index"] == 0
    assert "ok: the records, the tree and every checkpoint agree" in printed
    # the gateway step recorded signed traffic; the report and the bundle exist and verify
    assert (out / "gateway-traffic" / "labels.parquet").exists()
    assert (out / "radioactivity.json").exists()
    assert (out / "report" / "report.html").exists()
    assert (out / "evidence.zip").exists()
    # a second run reuses the keyring and adds nothing new to the store
    assert main(["--quiet", "demo", "--out", str(out), *fast]) == 0
    assert "nothing new" in capsys.readouterr().out
