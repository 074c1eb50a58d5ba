"""Open and closed modes on tiny models trained here, the ASGI app, the client's retries."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from distillguard.errors import InputError, UpstreamError
from distillguard.radioactivity import (
    EndpointConfig,
    KgramFilter,
    RadioactivityReport,
    SuspectClient,
    TokenText,
    plot_curves,
    score_closed,
    score_open,
)
from distillguard.watermark import KGWWatermark

from .conftest import kgw, make_key, marked_tokens, random_tokens

torch = pytest.importorskip("torch")
hf = pytest.importorskip("distillguard.watermark.hf")

VOCAB = 60
WORDS = [f"w{i}" for i in range(VOCAB - 3)]  # ids 3.. (0..2 are <unk>, <pad>, <eos>)


def _train(data: list[np.ndarray[Any, Any]], seed: int) -> Any:
    torch.set_num_threads(1)
    model = hf.build_tiny_model(VOCAB, layers=1, width=32, heads=2, seed=seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    arr = np.stack(data)
    for _ in range(120):
        ids = torch.from_numpy(arr[rng.integers(0, len(arr), 16)])
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def _corpus(wm: KGWWatermark | None, seed: int) -> list[np.ndarray[Any, Any]]:
    out = []
    for s in range(48):
        if wm is None:
            toks = random_tokens(32, seed + s, vocab=VOCAB - 3) + 3
        else:
            toks = marked_tokens(wm, 32, seed + s, vocab=VOCAB - 3) + 3
        out.append(toks)
    return out


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """A student trained on watermarked text (ids shifted by 3) and one on clean text."""
    wm = kgw(make_key(42))
    return {
        "wm": wm,
        "student": _train(_corpus(wm, 0), 0),
        "clean": _train(_corpus(None, 1000), 1),
        "tok": hf.build_word_tokenizer(WORDS),
    }


def _probe(seed: int) -> list[TokenText]:
    return [TokenText.of(random_tokens(32, seed + s, vocab=VOCAB - 3) + 3) for s in range(40)]


def test_open_mode_detects_student_not_clean(models: dict[str, Any]) -> None:
    # the synthetic watermark lives on ids 0..VOCAB-4; the models see them shifted by 3, so
    # score with the matching shifted-id key by subtracting 3 inside a thin wrapper
    wm = models["wm"]
    probe = _probe(7)
    shifted = [TokenText.of(t.tokens - 3) for t in probe]
    results = {}
    for name in ("student", "clean"):
        res = score_open(
            _ShiftModel(models[name]), shifted, wm, subject=name, batch_size=8, pad_id=0
        )
        results[name] = res
    assert results["student"].p_value < 1e-4
    assert results["clean"].p_value > 1e-3
    assert results["student"].mode == "open" and results["student"].detection.n_scored > 50
    # control: the student under another key
    other = score_open(_ShiftModel(models["student"]), shifted, kgw(make_key(43)), subject="s")
    assert other.p_value > 1e-3


class _ShiftModel:
    """Presents a model trained on ids+3 as a model over ids (scores match the synthetic key)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config

    def __call__(self, *, input_ids: Any, attention_mask: Any) -> Any:
        out = self.model(input_ids=input_ids + 3, attention_mask=attention_mask)
        logits = out.logits[..., 3:]
        return type("Out", (), {"logits": logits})()


def test_closed_mode_through_asgi_app(models: dict[str, Any], tmp_path: Any) -> None:
    from experiments.radioactivity_lab import model_app

    tok = models["tok"]
    wm = models["wm"]

    def encode(text: str) -> np.ndarray[Any, Any]:
        return np.asarray(tok.encode(text, add_special_tokens=False), dtype=np.int64) - 3

    prompts = [" ".join(f"w{i}" for i in random_tokens(4, s, vocab=VOCAB - 3)) for s in range(48)]
    flt = KgramFilter.from_texts([TokenText.of(t - 3) for t in _corpus(wm, 0)], width=1, top=None)
    res = {}
    for name in ("student", "clean"):
        client = SuspectClient(
            EndpointConfig(url="http://suspect.test/v1", max_tokens=24, concurrency=16),
            transport=httpx.ASGITransport(app=model_app(models[name], tok, seed=3)),
        )
        seen: list[int] = []
        res[name] = score_closed(
            client,
            prompts,
            wm,
            encode,
            subject=name,
            kgram_filter=flt,
            batch_size=16,
            on_point=lambda p, seen=seen: seen.append(p.n_scored),  # type: ignore[misc]
        )
        assert len(seen) == 3 and seen == sorted(seen)
    assert res["student"].p_value < 1e-3
    assert res["clean"].p_value > 1e-3
    report = RadioactivityReport(suspect=res["student"], control=res["clean"], alpha=1e-3)
    assert report.verdict == "radioactive"
    report.write_json(tmp_path / "r.json")
    assert (tmp_path / "r.json").read_bytes().startswith(b"{")
    png = plot_curves([res["student"], res["clean"]], tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    flipped = RadioactivityReport(suspect=res["student"], control=res["student"], alpha=1e-3)
    assert flipped.verdict.startswith("inconclusive")


def test_client_retries_then_fails() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"choices": [{"message": {"content": "w1 w2 w3"}}]})

    cfg = EndpointConfig(url="http://x/v1", retries=3, backoff_s=0.001, concurrency=1)
    client = SuspectClient(cfg, transport=httpx.MockTransport(flaky))
    assert client.complete(["a", "b"]) == ["w1 w2 w3", "w1 w2 w3"]
    down = SuspectClient(
        EndpointConfig(url="http://x/v1", retries=1, backoff_s=0.001),
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    with pytest.raises(UpstreamError):
        down.complete(["a"])
    refused = SuspectClient(cfg, transport=httpx.MockTransport(lambda r: httpx.Response(401)))
    with pytest.raises(UpstreamError, match="401"):
        refused.complete(["a"])
    garbage = SuspectClient(
        cfg, transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    )
    with pytest.raises(UpstreamError, match="OpenAI-compatible"):
        garbage.complete(["a"])
    with pytest.raises(InputError):
        EndpointConfig(url="ftp://x")
    assert "secret" not in repr(EndpointConfig(url="http://x", api_key="secret"))


def _own_texts(model: Any, tok: Any, **kw: Any) -> list[TokenText]:
    """The model's own answers, shifted back to the synthetic watermark's ids (end-of-text and
    padding dropped)."""
    from distillguard.radioactivity import own_answers

    prompts = [" ".join(f"w{i}" for i in random_tokens(4, s, vocab=VOCAB - 3)) for s in range(12)]
    texts = own_answers(model, tok, prompts, max_new_tokens=24, seed=5, **kw)
    out = []
    for t in texts:
        assert 0 < t.prompt_len < t.tokens.shape[0]
        body = t.tokens[t.tokens >= 3] - 3
        out.append(TokenText.of(body, t.prompt_len))
    return out


def test_open_mode_reads_the_models_own_answers(models: dict[str, Any]) -> None:
    """Own answers (one greedy + sampled per prompt) as the texts read: the student that learned
    the watermark is detected, the clean model is not, under any key."""
    tok = models["tok"]
    own = {n: _own_texts(models[n], tok, samples=3, temperature=0.7) for n in ("student", "clean")}
    assert len(own["student"]) == 12 * (1 + 3)
    # the greedy answers are reproducible
    again = _own_texts(models["student"], tok, samples=0)
    assert [t.tokens.tolist() for t in again] == [t.tokens.tolist() for t in own["student"][:12]]
    wm = models["wm"]
    student = score_open(_ShiftModel(models["student"]), own["student"], wm, subject="s")
    clean = score_open(_ShiftModel(models["clean"]), own["clean"], wm, subject="c")
    assert student.p_value < 1e-4 and clean.p_value > 1e-3
    # null: the clean model's own answers under 40 unrelated keys; p-values uniform, so about
    # 2 of 40 below 0.05 (more than 7 has probability < 0.001 under Binomial(40, 0.05))
    ps = [
        score_open(
            _ShiftModel(models["clean"]), own["clean"], kgw(make_key(100 + k)), subject="c"
        ).p_value
        for k in range(40)
    ]
    assert sum(p < 0.05 for p in ps) <= 7
    with pytest.raises(InputError):
        _own_texts(models["clean"], tok, samples=0, greedy=False)
    with pytest.raises(InputError):
        _own_texts(models["clean"], tok, samples=2, temperature=0.0)


def test_answer_plan_greedy_first_then_samples_per_prompt() -> None:
    from distillguard.radioactivity import answer_plan

    assert answer_plan(["a", "b"], samples=2, temperature=0.2, greedy=True) == [
        (["a", "b"], 0.0),
        (["a", "a", "b", "b"], 0.2),
    ]
    assert answer_plan(["a"], samples=0, temperature=0.2, greedy=True) == [(["a"], 0.0)]
    assert answer_plan(["a"], samples=1, temperature=0.7, greedy=False) == [(["a"], 0.7)]
    assert answer_plan([], samples=3, temperature=0.2, greedy=True) == []
    assert answer_plan(["a"], samples=0, temperature=0.2, greedy=False) == []
