"""The local transformers upstream: a tiny random GPT-2 built here, served by the gateway, with
the generation-time watermark carrying the account's payload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import admin_client, client, make_settings
from distillguard.gateway.watermarking import payload_key
from distillguard.keyring import open_keyring
from distillguard.store import open_store

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

WORDS = [f"w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from distillguard.watermark.hf import build_tiny_model, build_word_tokenizer

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "tiny-gpt2"
    tok = build_word_tokenizer(WORDS, path)
    build_tiny_model(len(tok), layers=1, width=32).save_pretrained(str(path))
    return path


def test_local_model_answers_with_the_accounts_watermark(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random
    import secrets

    from transformers import AutoTokenizer

    from distillguard.watermark import KGWConfig, KGWWatermark

    # A fixed keyring secret and sampling seed: the assertions below are exact outcomes of one
    # sampled answer (its length, its p-values), and with a fresh random key and sampling state
    # the random tiny model sometimes stopped early (37 words of 60, seen in a full run). Power
    # and false-positive rates over many keys are tested in tests/unit/watermark.
    with monkeypatch.context() as m:
        m.setattr(secrets, "token_bytes", random.Random(20261207).randbytes)
        settings = make_settings(
            tmp_path, upstream="local", upstream_model_path=str(model_dir), models=["tiny-gpt2"]
        )
        open_keyring(settings)
    torch.manual_seed(20261207)
    gw = create_gateway(settings)
    factory = AgentFactory.from_settings(settings)
    marked, plain = factory.issue("acct-wm"), factory.issue("acct-plain")
    body = {
        "model": "tiny-gpt2",
        "messages": [{"role": "user", "content": "w1 w2 w3"}],
        "max_tokens": 60,
    }

    async def go() -> list[httpx.Response]:
        async with admin_client(gw) as a:
            r = await a.put(
                "/admin/accounts/acct-wm/action",
                json={"action": "watermark", "reason": "suspected harvesting"},
            )
            assert r.status_code == 200
        out = []
        for agent in (marked, plain):
            async with client(gw, agent, timeout=60) as c:
                out.append(await c.post("/v1/chat/completions", json=body))
        return out

    try:
        rs = asyncio.run(go())
    finally:
        gw.close_sync()
    assert [r.status_code for r in rs] == [200, 200]
    store = open_store(settings.store_url)
    try:
        ex = store.get_exchange(rs[0].headers["x-distillguard-exchange-id"]).exchange  # type: ignore[union-attr]
        ex_plain = store.get_exchange(rs[1].headers["x-distillguard-exchange-id"]).exchange  # type: ignore[union-attr]
    finally:
        store.close()
    info = ex.extra["dg_watermark"]
    assert info["applied"] is True and info["scheme"] == "generation"
    assert "dg_watermark" not in ex_plain.extra
    key = open_keyring(settings).watermark_key()
    tok = AutoTokenizer.from_pretrained(str(model_dir))

    def p_value(text: str, payload: int) -> float:
        prompt = tok("w1 w2 w3")["input_ids"]
        ids = prompt + tok(text)["input_ids"]
        scheme = KGWWatermark(KGWConfig(), key=payload_key(key, payload))
        return float(scheme.detect(ids, prompt_len=len(prompt)).p_value)

    text = rs[0].json()["choices"][0]["message"]["content"]
    assert len(text.split()) >= 40
    assert p_value(text, info["payload"]) < 1e-4  # the account's payload key detects it
    assert p_value(rs[1].json()["choices"][0]["message"]["content"], info["payload"]) > 1e-4
