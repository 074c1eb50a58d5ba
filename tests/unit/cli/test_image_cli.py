"""Tests of ``distillguard image``, driven through :func:`distillguard.cli.main.main`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from distillguard.cli.main import main
from distillguard.image import synthetic_image


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated folder with a keyring and two source images."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    assert main(["--quiet", "keys", "init"]) == 0
    Image.fromarray(synthetic_image(seed=1, width=320, height=240)).save(tmp_path / "a.png")
    Image.fromarray(synthetic_image(seed=2, width=300, height=300)).save(
        tmp_path / "b.jpg", quality=92
    )
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_embed_then_detect_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "out"
    out.mkdir()
    code, doc = run_json(capsys, "image", "embed", "a.png", "out/a.png", "--payload", "4242")
    assert code == 0 and doc["payload"] == 4242 and doc["c2pa"] is False
    code, doc = run_json(capsys, "image", "embed", "b.jpg", "out/b.jpg", "--payload", "7")
    assert code == 0
    (out / "clean.png").write_bytes((workdir / "a.png").read_bytes())
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    code, doc = run_json(capsys, "image", "detect", "out")
    assert code == 0
    assert doc["images"] == 4 and doc["detected"] == 2
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert by_name["a.png"]["payload"] == 4242 and by_name["a.png"]["detected"]
    assert by_name["b.jpg"]["payload"] == 7
    assert not by_name["clean.png"]["detected"]
    assert by_name["clean.png"]["c2pa"]["state"] == "absent"
    assert by_name["broken.png"]["code"] == "DG230"
    code, doc = run_json(capsys, "image", "detect", "out/a.png", "--payload", "4243")
    assert doc["results"][0]["bit_accuracy"] == pytest.approx(31 / 32)


def test_c2pa_with_test_certificates(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "image", "certs", "c2pa")
    assert code == 0 and Path(doc["chain"]).is_file() and Path(doc["ca"]).is_file()
    (workdir / "distillguard.toml").write_text(
        '[image]\nc2pa_chain = "c2pa/chain.pem"\ntrust_anchors = "c2pa/test-ca.pem"\n'
    )
    code, doc = run_json(capsys, "image", "embed", "a.png", "signed.png", "--payload", "1")
    assert code == 0 and doc["c2pa"] is True
    code, doc = run_json(capsys, "image", "detect", "signed.png")
    result = doc["results"][0]
    assert result["detected"] and result["payload"] == 1
    assert result["c2pa"]["state"] == "trusted"
    assert result["c2pa"]["watermark_kid"] == result["kid"]


def test_table_output_and_errors(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "embed", "a.png", "m.png", "-p", "5"]) == 0
    capsys.readouterr()
    assert main(["image", "detect", "m.png"]) == 0
    out = capsys.readouterr().out
    assert "m.png" in out and "yes" in out and "1 of 1" in out
    assert main(["image", "detect", "missing-folder"]) == 4
    assert main(["image", "embed", "a.png", "x.png", "-p", str(2**40)]) == 4
    assert main(["image", "embed", "a.png", "x.png"]) == 2  # --payload is required


def test_image_settings_from_config_and_env(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "distillguard.toml").write_text("[image]\npayload_bits = 16\nstrength = 3.0\n")
    code, doc = run_json(capsys, "image", "embed", "a.png", "m.png", "--payload", "65535")
    assert code == 0
    code, doc = run_json(capsys, "image", "detect", "m.png")
    assert doc["results"][0]["payload_bits"] == 16 and doc["results"][0]["payload"] == 65535
    code, doc = run_json(capsys, "image", "embed", "a.png", "m.png", "--payload", "65536")
    assert code == 4  # does not fit in 16 bits
    monkeypatch.setenv("DISTILLGUARD_IMAGE__PAYLOAD_BITS", "8")
    code, doc = run_json(capsys, "image", "detect", "m.png")
    assert code == 3 and "payload_bits" in doc["message"]
