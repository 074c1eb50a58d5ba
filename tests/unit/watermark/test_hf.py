"""transformers and vLLM integrations on a tiny random GPT-2 and a word-list tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from distillguard.keyring import WatermarkKey
from distillguard.watermark import (
    AaronsonConfig,
    AaronsonWatermark,
    KGWConfig,
    KGWWatermark,
    MPACConfig,
    MPACWatermark,
    SynthIDConfig,
    SynthIDWatermark,
    WatermarkScheme,
)
from distillguard.watermark._tokenizers import HFTokenizer
from distillguard.watermark.hf import (
    WatermarkLogitsProcessor,
    build_tiny_model,
    build_word_tokenizer,
    generate_watermarked,
)
from distillguard.watermark.vllm import VLLMWatermarkProcessor

WORDS = [f"w{i}" for i in range(509)]


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    torch.set_num_threads(1)
    tok = build_word_tokenizer(WORDS)
    return build_tiny_model(len(tok), layers=1, width=32), tok


@pytest.mark.parametrize("kind", ["kgw", "aaronson", "synthid"])
def test_generate_then_detect(tiny: tuple[object, object], key: WatermarkKey, kind: str) -> None:
    model, tok = tiny
    wm: WatermarkScheme
    if kind == "kgw":
        wm = KGWWatermark(KGWConfig(delta=4.0), key=key)
    elif kind == "aaronson":
        wm = AaronsonWatermark(AaronsonConfig(context_width=2), key=key)
    else:
        wm = SynthIDWatermark(SynthIDConfig(context_width=2), key=key)
    out = generate_watermarked(
        model, tok, ["w1 w2 w3", "w7"], scheme=wm, max_new_tokens=40, min_new_tokens=40, seed=3
    )
    for ids, plen in zip(out.token_ids, out.prompt_lengths, strict=True):
        assert len(ids) == plen + 40
        assert wm.detect(ids, prompt_len=plen).p_value < 1e-4
    plain = generate_watermarked(
        model, tok, ["w1 w2 w3"], scheme=None, max_new_tokens=40, min_new_tokens=40, seed=3
    )
    assert wm.detect(plain.token_ids[0], prompt_len=plain.prompt_lengths[0]).p_value > 1e-4


def test_per_row_payloads(tiny: tuple[object, object], key: WatermarkKey) -> None:
    model, tok = tiny
    base = MPACWatermark(MPACConfig(bits=4, delta=5.0), key=key)
    rows = [base.for_payload(0b1010), base.for_payload(0b0111)]
    out = generate_watermarked(
        model,
        tok,
        ["w3 w4", "w5 w6"],
        scheme=rows[0],
        schemes_per_row=rows,
        max_new_tokens=60,
        min_new_tokens=60,
        seed=1,
    )
    assert base.decode(out.token_ids[0], prompt_len=out.prompt_lengths[0]).payload == 0b1010
    assert base.decode(out.token_ids[1], prompt_len=out.prompt_lengths[1]).payload == 0b0111


def test_processor_matches_numpy(key: WatermarkKey) -> None:
    wm = KGWWatermark(KGWConfig(), key=key)
    scores = torch.randn(2, 300)
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    out = WatermarkLogitsProcessor(wm)(ids, scores)
    for row in range(2):
        want = wm.process_logits(ids[row].tolist(), scores[row].double().numpy())
        assert np.allclose(out[row].numpy(), want, atol=1e-5)


def test_tokenizer_round_trip_through_folder(tmp_path: Path) -> None:
    build_word_tokenizer(WORDS, tmp_path / "tok")
    loaded = HFTokenizer(tmp_path / "tok")
    assert loaded.encode("w3 w4 w3").tolist()[0] == loaded.encode("w3").tolist()[0]
    assert len(loaded.encode("w3 w4 w3")) == 3


def test_vllm_adapter_callable(key: WatermarkKey) -> None:
    for wm in (
        KGWWatermark(KGWConfig(context_width=3), key=key),
        AaronsonWatermark(AaronsonConfig(context_width=3), key=key),
    ):
        proc = VLLMWatermarkProcessor(wm)
        logits = torch.randn(400)
        # context spans prompt and output
        got = proc([1, 2], [3], logits)
        want = wm.process_logits([1, 2, 3], logits.double().numpy())
        assert np.allclose(got.double().numpy(), want, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed here (it needs a GPU machine); the adapter's callable is "
    "tested above with torch tensors",
)
def test_vllm_engine_end_to_end(tmp_path: Path, key: WatermarkKey) -> None:  # pragma: no cover
    from vllm import LLM, SamplingParams

    tok = build_word_tokenizer(WORDS, tmp_path / "m")
    build_tiny_model(len(tok), layers=1, width=64).save_pretrained(str(tmp_path / "m"))
    wm = KGWWatermark(KGWConfig(delta=4.0), key=key)
    params = SamplingParams(
        max_tokens=60, min_tokens=60, logits_processors=[VLLMWatermarkProcessor(wm)]
    )
    llm = LLM(model=str(tmp_path / "m"), enforce_eager=True, gpu_memory_utilization=0.2)
    out = llm.generate(["w1 w2 w3"], params)[0]
    ids = list(out.prompt_token_ids) + list(out.outputs[0].token_ids)
    assert wm.detect(ids, prompt_len=len(out.prompt_token_ids)).p_value < 1e-4
