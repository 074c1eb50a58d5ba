"""``distillguard radioactivity open|closed|texts``, through :func:`main`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distillguard.cli.main import main
from distillguard.keyring import Keyring
from distillguard.watermark import KGWConfig, KGWWatermark, MPACConfig, MPACWatermark, WordTokenizer
from distillguard.watermark._scheme import softmax

VOCAB = [f"word{i}" for i in range(300)]


@pytest.fixture
def ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keyring:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("DISTILLGUARD_KEYRING__PATH", str(path))
    return Keyring.create(path)


def _text(wm: Any, n: int, seed: int) -> str:
    tok = WordTokenizer()
    ids = np.array([tok.word_id(w) for w in VOCAB])
    rng = np.random.default_rng(seed)
    out = ["word0"]
    for _ in range(n):
        logits = rng.normal(size=len(VOCAB))
        if wm is not None:
            logits = wm.process_candidates([tok.word_id(out[-1])], ids, logits)
        out.append(VOCAB[int(rng.choice(len(VOCAB), p=softmax(logits)))])
    return " ".join(out)


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_texts_mode_with_default_control(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wm = KGWWatermark(KGWConfig(), key=ring.watermark_key())
    suspect = _jsonl(tmp_path / "s.jsonl", [_text(wm, 120, s) for s in range(5)])
    clean = _jsonl(tmp_path / "c.jsonl", [_text(None, 120, 100 + s) for s in range(5)])
    code, data = run_json(
        capsys,
        "radioactivity",
        "texts",
        str(suspect),
        "--field",
        "text",
        "--out",
        "r.json",
        "--plot",
        "r.png",
    )
    assert code == 0
    assert data["verdict"] == "radioactive"
    assert data["suspect"]["p_value"] < 1e-6
    assert data["control"]["p_value"] > 1e-3  # the suspect under a fresh random key
    assert data["control_key_id"] == "control-random"
    assert data["control"]["subject"] == f"{suspect} (key control-random)"
    assert data["control"]["detection"]["n_scored"] == data["suspect"]["detection"]["n_scored"]
    assert json.loads((tmp_path / "r.json").read_text())["format"].startswith("distillguard-radio")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    code, data = run_json(
        capsys,
        "radioactivity",
        "texts",
        str(clean),
        "--field",
        "text",
        "--control-texts",
        str(suspect),
        "--filter",
        str(suspect),
    )
    assert code == 0
    assert data["suspect"]["p_value"] > 1e-3
    assert data["suspect"]["filter"]["windows"] > 0
    assert data["verdict"].startswith("inconclusive")  # the "clean" control was not clean
    assert main(["radioactivity", "texts", str(suspect), "--field", "text"]) == 0


def test_tracing_cli(
    ring: Keyring,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISTILLGUARD_WATERMARK__SCHEME", "mpac")
    wm = MPACWatermark(MPACConfig(bits=16), key=ring.watermark_key()).for_payload(0xBEEF)
    suspect = _jsonl(tmp_path / "s.jsonl", [_text(wm, 150, s) for s in range(6)])
    (tmp_path / "p.csv").write_text("# accounts\nalice,0xBEEF\nbob,0x1234\ncarol,7\n")
    code, data = run_json(
        capsys,
        "radioactivity",
        "texts",
        str(suspect),
        "--field",
        "text",
        "--trace",
        "--payloads",
        "p.csv",
    )
    assert code == 0
    assert data["tracing"]["label"] == "alice" and data["tracing"]["p_value"] < 1e-4
    (tmp_path / "bad.csv").write_text("alice;12\n")
    code, data = run_json(
        capsys,
        "radioactivity",
        "texts",
        str(suspect),
        "--field",
        "text",
        "--trace",
        "--payloads",
        "bad.csv",
    )
    assert code == 4 and "bad.csv:1" in data["message"]


def test_bad_invocations(ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _jsonl(tmp_path / "s.jsonl", ["word1 word2 word3"])
    assert main(["radioactivity", "texts", str(f), "--endpoint", "http://x/v1"]) == 2  # usage
    assert main(["radioactivity", "closed", "http://x/v1"]) == 2  # --prompts is required
    assert main(["radioactivity", "nope"]) == 2
    code, data = run_json(capsys, "radioactivity", "texts", str(tmp_path / "missing.jsonl"))
    assert code == 4
    code, data = run_json(capsys, "radioactivity", "texts", str(f), "--key", "nope")
    assert code == 3
    code, data = run_json(capsys, "radioactivity", "open", str(tmp_path / "no-model"))
    assert code == 4 and "--read" in data["message"]
    # a significance level outside (0, 1) is refused with the reason, not a traceback
    code, data = run_json(capsys, "radioactivity", "texts", str(f), "--alpha", "0")
    assert code == 4 and "alpha" in data["message"]


def test_open_mode_cli_on_saved_model(
    ring: Keyring, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = pytest.importorskip("distillguard.watermark.hf")
    folder = tmp_path / "model"
    hf.build_tiny_model(len(VOCAB) + 3, layers=1, width=16, heads=2).save_pretrained(folder)
    hf.build_word_tokenizer(VOCAB, folder)
    read = _jsonl(tmp_path / "read.jsonl", [_text(None, 60, s) for s in range(8)])
    code, data = run_json(
        capsys, "radioactivity", "open", str(folder), "--read", str(read), "--field", "text"
    )
    assert code == 0, data
    assert data["suspect"]["mode"] == "open" and data["suspect"]["detection"]["n_scored"] > 0
    assert data["suspect"]["p_value"] > 1e-4  # a random model never saw the watermark
    # --prompts: the model's own answers (one greedy, two sampled per prompt) are read
    asked = _jsonl(tmp_path / "asked.jsonl", [f"word{i} word{i + 2}" for i in range(5)])
    code, data = run_json(
        capsys,
        "radioactivity",
        "open",
        str(folder),
        "--prompts",
        str(asked),
        "--field",
        "text",
        "--samples",
        "2",
        "--max-tokens",
        "16",
    )
    assert code == 0, data
    assert data["suspect"]["n_texts"] == 15 and data["suspect"]["detection"]["n_scored"] > 0
    assert data["suspect"]["p_value"] > 1e-4
    # the control reads the same answers under an unused key (none generated twice)
    assert data["control"]["n_texts"] == 15
    assert data["control"]["detection"]["n_scored"] == data["suspect"]["detection"]["n_scored"]
    code, data = run_json(capsys, "radioactivity", "open", str(folder))
    assert code == 4 and "--read" in data["message"] and "--prompts" in data["message"]


def test_closed_mode_cli_asks_each_prompt_samples_times(
    ring: Keyring,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--endpoint`` with ``--samples``: every prompt is asked once greedily and that many times
    sampled (through an in-process OpenAI-compatible app serving a tiny model)."""
    hf = pytest.importorskip("distillguard.watermark.hf")
    import httpx
    from experiments.radioactivity_lab import model_app

    import distillguard.radioactivity as radioactivity

    model = hf.build_tiny_model(len(VOCAB) + 3, layers=1, width=16, heads=2)
    tok = hf.build_word_tokenizer(VOCAB)
    asked: list[tuple[str, float]] = []
    inner = model_app(model, tok, seed=1)

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        message = await receive()
        body = json.loads(message["body"])
        asked.append((scope["path"], body["temperature"]))
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return message
            return await receive()

        await inner(scope, replay, send)

    real = radioactivity.SuspectClient

    class InProcess(real):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any, **_: Any) -> None:
            super().__init__(config, transport=httpx.ASGITransport(app=counting))

    monkeypatch.setattr(radioactivity, "SuspectClient", InProcess)
    prompts = _jsonl(tmp_path / "p.jsonl", [f"word{i} word{i + 1}" for i in range(4)])
    code, data = run_json(
        capsys,
        "radioactivity",
        "closed",
        "http://suspect.test/v1",
        "--prompts",
        str(prompts),
        "--field",
        "text",
        "--samples",
        "3",
        "--temperature",
        "0.7",
        "--max-tokens",
        "12",
    )
    assert code == 0, data
    # per prompt: one greedy answer and three sampled ones, asked once: the control (the suspect
    # under an unused key) scores the same answers
    assert data["suspect"]["n_texts"] == 16 and data["control"]["n_texts"] == 16
    assert len(asked) == 16 and {p for p, _ in asked} == {"/v1/chat/completions"}
    assert sorted(t for _, t in asked) == [0.0] * 4 + [0.7] * 12
    suspect_n = data["suspect"]["detection"]["n_scored"]
    assert suspect_n > 0 and data["control"]["detection"]["n_scored"] == suspect_n
    assert data["control"]["detection"]["key_id"] != data["suspect"]["detection"]["key_id"]
    assert data["suspect"]["p_value"] > 1e-4  # a random model never saw the watermark
    bad = ["radioactivity", "closed", "http://x/v1", "--prompts", str(prompts)]
    assert main([*bad, "--samples", "-1"]) == 2  # a usage error, nothing asked
    code, data = run_json(capsys, *bad, "--samples", "0", "--no-greedy")
    assert code == 4 and "nothing to ask" in data["message"]
    assert len(asked) == 16
