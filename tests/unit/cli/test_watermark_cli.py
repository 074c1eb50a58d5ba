"""``distillguard watermark detect | embed | scan-dataset`` through :func:`main`."""

from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.cli.main import main
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.watermark import KGWConfig, KGWWatermark, WordTokenizer
from distillguard.watermark._scheme import softmax

VOCAB = [f"word{i}" for i in range(400)]


@pytest.fixture
def ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keyring:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("DISTILLGUARD_KEYRING__PATH", str(path))
    # a fixed watermark secret: the tests below assert exact outcomes of statistical tests on a
    # few texts (which records BH flags, the pooled p-value), and a fresh random key made them
    # fail a few runs in a hundred (measured: 1 of 30 and 2 of 40). False-positive rates over
    # many keys are tested where that is the point (tests/unit/watermark, calibration).
    with monkeypatch.context() as m:
        m.setattr(secrets, "token_bytes", random.Random(20261127).randbytes)
        return Keyring.create(path)


def marked_text(ring: Keyring, n: int, seed: int) -> str:
    """Words from a synthetic LM over VOCAB, watermarked with the active key (word tokenizer)."""
    wm = KGWWatermark(KGWConfig(), key=ring.watermark_key())
    tok = WordTokenizer()
    ids = np.array([tok.word_id(w) for w in VOCAB])
    rng = np.random.default_rng(seed)
    out = ["word0"]
    for _ in range(n):
        logits = wm.process_candidates([tok.word_id(out[-1])], ids, rng.normal(size=len(VOCAB)))
        out.append(VOCAB[int(rng.choice(len(VOCAB), p=softmax(logits)))])
    return " ".join(out)


def plain_text(n: int, seed: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(VOCAB, n))


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_detect_text_files(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.txt").write_text(marked_text(ring, 150, 1))
    (tmp_path / "b.txt").write_text(plain_text(150, 2))
    code, data = run_json(capsys, "watermark", "detect", "a.txt", "b.txt")
    assert code == 1  # found in a text: exit 1, as every command that reports findings
    a, b = data["texts"]
    assert a["detected"] and a["p_value"] < 1e-6
    assert a["scheme"] == "kgw"
    assert data["detected"] == 1
    assert data["schemes_tested"] == ["kgw (tokenizer: word)", "cater (tokenizer: words (lexicon))"]
    assert not b["detected"] and b["p_value"] > 1e-3
    assert a["key_id"] == ring.watermark_key().kid
    assert main(["watermark", "detect", "a.txt"]) == 1
    out = capsys.readouterr().out
    assert "yes" in out and "schemes tested: kgw" in out and "found in 1 of 1" in out
    assert main(["watermark", "detect", "b.txt"]) == 0  # nothing found: exit 0
    assert "found in 0 of 1" in capsys.readouterr().out


def test_detect_jsonl_chat_and_all_keys(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = ring.watermark_key().kid
    text = marked_text(ring, 150, 3)
    ring.rotate(KeyPurpose.WATERMARK)
    rows = [
        {"output": f"<|im_start|>user\nword1 word2<|im_end|>\n<|im_start|>assistant\n{text}"},
        {"output": plain_text(100, 4)},
        {"other": 1},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    code, data = run_json(
        capsys, "watermark", "detect", "d.jsonl", "--field", "output", "--chat", "--all-keys"
    )
    assert code == 1
    assert len(data["texts"]) == 2
    first = data["texts"][0]
    assert first["key_id"] == old and first["p_value"] < 1e-5
    assert len(first["results"]) == 4  # two keys under each of kgw and cater
    # Holm over two keys: the adjusted p-value is at least the raw one
    raw = min(r["p_value"] for r in first["results"])
    assert first["p_value"] >= raw


def test_embed_then_detect_post_hoc(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "However, this method often helps people. We typically use a simple approach, "
        "and the main benefits are obvious. Additionally, it is important to begin early. "
    ) * 6
    (tmp_path / "in.txt").write_text(text)
    code, data = run_json(capsys, "watermark", "embed", "in.txt", "-o", "out.txt")
    assert code == 0 and data["changed"] > 0
    code, det = run_json(capsys, "watermark", "detect", "out.txt", "--scheme", "cater")
    assert code == 1 and det["texts"][0]["p_value"] < 1e-3
    # a plain detect (no --scheme) finds the post-hoc mark too, and says which scheme it was
    code, det = run_json(capsys, "watermark", "detect", "out.txt")
    assert code == 1
    assert det["texts"][0]["detected"] and det["texts"][0]["scheme"] == "cater"
    code, det = run_json(capsys, "watermark", "detect", "in.txt")  # the unmarked original
    assert code == 0 and not det["texts"][0]["detected"]
    (tmp_path / "in.jsonl").write_text(json.dumps({"output": text}) + "\n")
    code, data = run_json(capsys, "watermark", "embed", "in.jsonl", "-o", "out.jsonl")
    assert code == 0 and data["texts"] == 1
    marked = json.loads((tmp_path / "out.jsonl").read_text())["output"]
    assert marked == (tmp_path / "out.txt").read_text()


def test_scan_dataset_formats(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = [plain_text(80, 100 + i) for i in range(40)]
    marked = {5, 17, 33}
    for i in marked:
        texts[i] = marked_text(ring, 120, i)
    (tmp_path / "ds.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "ds.parquet")
    with (tmp_path / "ds.csv").open("w") as fh:
        fh.write("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"{i:03d}.txt").write_text(t)
    for target in ("ds.jsonl", "ds.parquet", "ds.csv", "folder"):
        code, data = run_json(capsys, "watermark", "scan-dataset", target, "--fdr", "0.01")
        assert code == 0, target
        assert data["records"] == 40
        assert data["n_flagged"] == 3, target
        assert data["corpus"]["p_value"] < 1e-6
    code, data = run_json(capsys, "watermark", "scan-dataset", "ds.jsonl", "--limit", "10")
    assert data["records"] == 10 and data["n_flagged"] == 1
    assert main(["watermark", "scan-dataset", "ds.jsonl"]) == 0
    assert "flagged" in capsys.readouterr().out


def test_scan_dataset_post_hoc_scheme(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "However, this method often helps people. We typically use a simple approach, "
        "and the main benefits are obvious. Additionally, it is important to begin early. "
    )
    rows = [{"output": text * (1 + i % 3)} for i in range(12)]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, _ = run_json(capsys, "watermark", "embed", "in.jsonl", "-o", "marked.jsonl")
    assert code == 0
    code, data = run_json(
        capsys,
        "watermark",
        "scan-dataset",
        "marked.jsonl",
        "--scheme",
        "cater",
        "--field",
        "output",
    )
    assert code == 0
    assert data["scheme"] == "cater" and data["records"] == 12
    assert data["corpus"]["p_value"] < 1e-4
    # the pooled test counts each (previous word, group) context once: the repeated answers
    # add no scored occurrence beyond the first
    assert data["corpus"]["n_scored"] < data["tokens"]
    code, clean = run_json(
        capsys, "watermark", "scan-dataset", "in.jsonl", "--scheme", "cater", "--field", "output"
    )
    assert clean["corpus"]["p_value"] > 1e-3 and clean["n_flagged"] == 0
    assert main(["watermark", "scan-dataset", "marked.jsonl", "--scheme", "cater"]) == 0
    assert "scheme tested: cater" in capsys.readouterr().out


def test_bad_inputs(ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watermark", "detect", "missing.txt"]) == 4
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\nnot json\n')
    assert main(["watermark", "scan-dataset", "bad.jsonl"]) == 4
    assert "bad.jsonl:2" in capsys.readouterr().err.replace("\n", "")
    (tmp_path / "a.txt").write_text("x")
    assert main(["watermark", "detect", "a.txt", "--scheme", "nope"]) == 4
    assert main(["watermark", "detect", "a.txt", "--key", "no-such-key"]) == 3
    pq.write_table(pa.table({"other": ["x"]}), tmp_path / "n.parquet")
    assert main(["watermark", "scan-dataset", "n.parquet"]) == 4
    assert main(["watermark", "scan-dataset", "a.txt", "--fdr", "2"]) == 4
