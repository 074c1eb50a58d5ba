"""``distillguard provenance FILE...`` (and ``video embed|detect`` with C2PA) through main()."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from distillguard.cli.main import main
from distillguard.config import load_settings
from distillguard.image import synthetic_image
from distillguard.keyring import open_keyring
from tests.unit.provenance.test_check import marked_text


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    assert main(["--quiet", "keys", "init"]) == 0
    assert main(["--quiet", "image", "certs", "c2pa"]) == 0
    (tmp_path / "distillguard.toml").write_text(
        '[image]\nc2pa_chain = "c2pa/chain.pem"\ntrust_anchors = "c2pa/test-ca.pem"\n'
    )
    Image.fromarray(synthetic_image(seed=2, width=320, height=256)).save(tmp_path / "gen.png")
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_provenance_files(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "s").mkdir()
    assert main(["--quiet", "image", "embed", "gen.png", "s/marked.png", "-p", "99"]) == 0
    key = open_keyring(load_settings()).watermark_key()
    (workdir / "s" / "answer.txt").write_text(marked_text(key, 250, seed=4))
    (workdir / "s" / "plain.txt").write_text("Nothing to see here, just a note. " * 10)
    (workdir / "s" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    code, doc = run_json(capsys, "provenance", "s", "gen.png")
    assert code == 1 and doc["files"] == 5 and doc["found"] == 2
    rows = {Path(r["file"]).name: r for r in doc["results"]}
    marked = rows["marked.png"]
    assert marked["media"] == "image" and marked["found"]
    assert [s["present"] for s in marked["signals"]] == [True, True]
    assert marked["signals"][0]["payload"] == 99
    assert marked["signals"][1]["state"] == "trusted"
    assert rows["answer.txt"]["found"] and rows["answer.txt"]["media"] == "text"
    assert not rows["plain.txt"]["found"] and not rows["gen.png"]["found"]
    assert rows["gen.png"]["signals"][0]["payload"] is None
    assert rows["broken.png"]["error"]["code"] == "DG230"
    # payloads mapped back to candidate accounts
    from distillguard.provenance import account_payload

    (workdir / "accounts.txt").write_text("\n".join(f"u{i}" for i in range(20)) + "\n")
    expected = [f"u{i}" for i in range(20) if account_payload(key, f"u{i}") == 99]
    code, doc = run_json(capsys, "provenance", "s/marked.png", "--accounts", "accounts.txt")
    mapped = doc["results"][0]["signals"][0]["accounts"]
    assert mapped == expected
    assert main(["provenance", "s/marked.png", "--accounts", "nofile.txt"]) == 4
    # table form: a verdict line per file
    capsys.readouterr()
    assert main(["provenance", "gen.png", "s/marked.png"]) == 1
    out = capsys.readouterr().out
    assert "payload 99" in out and "C2PA manifest trusted" in out
    assert "1 of 2 files carry a DistillGuard signal" in out
    # nothing found: exit 0; a missing path: input error
    assert main(["--quiet", "provenance", "gen.png"]) == 0
    assert main(["provenance", "nowhere"]) == 4
    assert main(["provenance", "gen.png", "--alpha", "2"]) == 4


def test_video_embed_signs_and_detect_verifies(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("av")
    from distillguard.video import synthetic_video

    synthetic_video(workdir / "clip.mp4", seed=3, seconds=5.5, width=320, height=192)
    code, doc = run_json(capsys, "video", "embed", "clip.mp4", "marked.mp4", "-p", "31")
    assert code == 0 and doc["c2pa"] is True
    code, doc = run_json(capsys, "video", "detect", "marked.mp4")
    row = doc["results"][0]
    assert row["detected"] and row["payload"] == 31 and row["c2pa"]["state"] == "trusted"
    code, doc = run_json(capsys, "provenance", "marked.mp4", "clip.mp4")
    assert code == 1 and doc["found"] == 1
    code, doc = run_json(capsys, "video", "embed", "clip.mp4", "plain.mp4", "-p", "31", "--no-c2pa")
    assert code == 0 and doc["c2pa"] is False
    assert main(["video", "embed", "clip.mp4", "out.mkv", "-p", "1"]) == 4  # C2PA needs MP4
