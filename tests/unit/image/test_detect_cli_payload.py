"""Issue 26: ``image detect`` reports no payload when no watermark is found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from distillguard.cli.main import main
from distillguard.image import detect_pixels, embed_pixels, synthetic_image
from distillguard.keyring import WatermarkKey


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a keyring, a clean image and a watermarked one (payload 4242)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    assert main(["--quiet", "keys", "init"]) == 0
    Image.fromarray(synthetic_image(seed=3, width=320, height=240)).save(tmp_path / "clean.png")
    assert main(["--quiet", "image", "embed", "clean.png", "marked.png", "-p", "4242"]) == 0
    return tmp_path


def test_json_has_no_payload_without_a_mark(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--json", "image", "detect", "clean.png"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["detected"] is False
    assert row["payload"] is None
    assert main(["--json", "image", "detect", "marked.png"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["detected"] is True and row["payload"] == 4242


def test_table_shows_a_dash_without_a_mark(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["image", "detect", "clean.png"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "clean.png" in x)
    assert line.split()[1:3] == ["no", "-"]


def test_wrong_claim_still_shows_the_payload_found_blind(key: WatermarkKey) -> None:
    """A false claim is rejected, but the mark found blind still names its payload."""
    image = synthetic_image(seed=4, width=320, height=320)
    marked = embed_pixels(image, payload=77, key=key)
    result = detect_pixels(marked, key=key, claimed_payload=0xFFFF0000)
    assert not result.detected and result.payload_found
    assert result.to_dict()["payload"] == 77
    clean = detect_pixels(image, key=key)
    assert not clean.payload_found and clean.to_dict()["payload"] is None
