"""Images end to end: a signed request through the gateway, then ``distillguard image detect``.

The provider's setup is the documented one: ``keys init``, ``image certs`` (test certificates
for the keyring's ledger key), ``[image]`` in distillguard.toml; the gateway is built from that
configuration; the investigator's side is the CLI on the saved files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.app import create_gateway
from distillguard.cli.main import main
from distillguard.config import load_settings
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.policy import payload_for
from distillguard.gateway.testing import client
from distillguard.keyring import open_keyring
from distillguard.ledger import Ledger
from distillguard.store import open_store


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A provider's folder: keyring, test C2PA certificates, distillguard.toml."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    assert main(["--quiet", "keys", "init"]) == 0
    assert main(["--quiet", "image", "certs", "c2pa"]) == 0
    (tmp_path / "distillguard.toml").write_text(
        "[image]\n"
        'c2pa_chain = "c2pa/chain.pem"\n'
        'trust_anchors = "c2pa/test-ca.pem"\n'
        "[gateway]\n"
        'admin_token = "e2e-admin-token-0123456789"\n'
    )
    return tmp_path


def _request(body: dict[str, Any], *, signed: bool, account: str = "acct-img") -> httpx.Response:
    settings = load_settings()
    gateway = create_gateway(settings)
    agent = AgentFactory.from_settings(settings).issue(account) if signed else None

    async def go() -> httpx.Response:
        async with client(gateway, agent) as c:
            return await c.post("/v1/images/generations", json=body)

    try:
        return asyncio.run(go())
    finally:
        gateway.close_sync()


def test_signed_request_image_detects_with_payload_and_trusted_manifest(
    provider: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"model": "stub-image-1", "prompt": "a lighthouse at dusk", "n": 2, "size": "384x256"}
    r = _request(body, signed=True)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2
    out = provider / "suspects"
    out.mkdir()
    blobs = [base64.b64decode(d["b64_json"]) for d in data]
    for i, blob in enumerate(blobs):
        (out / f"img{i}.png").write_bytes(blob)
    settings = load_settings()
    key = open_keyring(settings).watermark_key()
    expected = payload_for(key.secret, "acct-img")

    capsys.readouterr()
    assert main(["--json", "image", "detect", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 2 and doc["detected"] == 2
    for row in doc["results"]:
        assert row["payload"] == expected
        assert row["p_value"] < 1e-6
        assert row["c2pa"]["state"] == "trusted"
        assert row["c2pa"]["watermark_kid"] == key.kid

    # the exchange is in the store and the ledger, with the hashes of the bytes delivered
    store = open_store(settings.store_url)
    try:
        stored = store.get_exchange(r.headers["x-distillguard-exchange-id"])
        assert stored is not None
        ex = stored.exchange
        assert ex.account_id == "acct-img" and ex.status == 200
        assert ex.endpoint == "/v1/images/generations"
        assert ex.messages[0].content == "a lighthouse at dusk"
        summary = json.loads(ex.response or "")
        assert [i["sha256"] for i in summary["images"]] == [
            hashlib.sha256(b).hexdigest() for b in blobs
        ]
        assert all(i["c2pa"] and (i["width"], i["height"]) == (384, 256) for i in summary["images"])
        assert ex.extra["dg_watermark"]["payload"] == expected
        assert ex.completion_tokens == 2 * (85 + 170 * 1 * 1)
        ledger = Ledger.open(store)
        assert ledger.size == 1 and ledger.leaf_for(ex.exchange_id) is not None
    finally:
        store.close()


def test_unsigned_request_is_refused_and_not_served(provider: Path) -> None:
    r = _request({"prompt": "a lighthouse"}, signed=False)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert "b64_json" not in r.text
    store = open_store(load_settings().store_url)
    try:
        assert [e for batch in store.iter_exchanges() for e in batch] == []
    finally:
        store.close()
