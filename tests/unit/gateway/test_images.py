"""``POST /v1/images/generations``: request parsing, upstreams, provenance, refusals, records."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from distillguard.app import create_gateway
from distillguard.config import ImageSettings, Settings
from distillguard.errors import UpstreamError, UpstreamTimeoutError
from distillguard.gateway import Gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.images import (
    IMAGES_PATH,
    ImageRequest,
    OpenAIImageUpstream,
    SyntheticImageUpstream,
    image_tokens,
    mount_images,
    parse_image_request,
)
from distillguard.gateway.policy import RiskScore, payload_for
from distillguard.gateway.testing import client, make_settings
from distillguard.gateway.upstream import CircuitBreaker
from distillguard.image import inspect_image, make_test_credentials
from distillguard.keyring import KeyPurpose, open_keyring
from distillguard.records import Exchange
from distillguard.store import open_store


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _body(**kw: Any) -> bytes:
    return orjson.dumps({"prompt": "a red fox", **kw})


# -- parsing ------------------------------------------------------------------------------------


def test_parse_defaults_and_fields() -> None:
    req = parse_image_request(_body(), default_model="m", max_n=4)
    assert (req.model, req.prompt, req.n, req.width, req.height) == (
        "m",
        "a red fox",
        1,
        1024,
        1024,
    )
    req = parse_image_request(
        _body(model="x", n=3, size="512x256", quality="hd", style="vivid", response_format=None),
        default_model="m",
        max_n=4,
    )
    assert (req.model, req.n, req.size, req.quality, req.style) == (
        "x",
        3,
        "512x256",
        "hd",
        "vivid",
    )
    assert parse_image_request(_body(size="auto"), default_model="m", max_n=1).size == "1024x1024"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({"model": "m"}), "'prompt'"),
        (_body(prompt="   "), "'prompt'"),
        (_body(prompt="x" * 32_001), "longer"),
        (_body(model=""), "'model'"),
        (_body(model=3), "'model'"),
        (_body(n=0), "'n'"),
        (_body(n=5), "'n'"),
        (_body(n=True), "'n'"),
        (_body(n=1.5), "'n'"),
        (_body(size="big"), "WIDTHxHEIGHT"),
        (_body(size=1024), "'size'"),
        (_body(size="64x64"), "between"),
        (_body(size="4096x1024"), "between"),
        (_body(size="-5x100"), "WIDTHxHEIGHT"),
        (_body(response_format="url"), "b64_json"),
        (_body(quality=1), "'quality'"),
        (_body(style=["a"]), "'style'"),
    ],
)
def test_parse_refuses_bad_requests(body: bytes, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_image_request(body, default_model="m", max_n=4)


@hsettings(max_examples=60, derandomize=True)
@given(
    width=st.integers(128, 2048),
    height=st.integers(128, 2048),
    n=st.integers(1, 10),
    prompt=st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != ""),
)
def test_parse_round_trips_valid_requests(width: int, height: int, n: int, prompt: str) -> None:
    body = orjson.dumps({"prompt": prompt, "n": n, "size": f"{width}x{height}"})
    req = parse_image_request(body, default_model="m", max_n=10)
    assert (req.width, req.height, req.n, req.prompt) == (width, height, n, prompt)
    assert image_tokens(width, height) == 85 + 170 * (-(-width // 512)) * (-(-height // 512))


@hsettings(max_examples=80, derandomize=True)
@given(st.binary(max_size=300))
def test_parse_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    """Any bytes give a valid request or a ValueError (HTTP 400), never another exception."""
    try:
        req = parse_image_request(data, default_model="m", max_n=4)
    except ValueError as exc:
        assert str(exc)
    else:
        assert 1 <= req.n <= 4 and 128 <= req.width <= 2048 and 128 <= req.height <= 2048


# -- the synthetic upstream -----------------------------------------------------------------------


def test_synthetic_upstream_is_deterministic_per_prompt() -> None:
    up = SyntheticImageUpstream(models=["img"])
    req = ImageRequest(model="img", prompt="a castle", n=2, width=160, height=128)
    a = run(up.generate(req))
    b = run(up.generate(req))
    other = run(up.generate(ImageRequest(model="img", prompt="a boat", n=1, width=160, height=128)))
    assert [i.data for i in a.images] == [i.data for i in b.images]
    assert a.images[0].data != a.images[1].data != other.images[0].data
    img = Image.open(io.BytesIO(a.images[0].data))
    assert img.size == (160, 128) and img.format == "PNG"
    assert len(set(img.convert("L").tobytes())) > 50  # not a flat image
    with pytest.raises(ValueError):
        SyntheticImageUpstream(models=[])


# -- an OpenAI-compatible image server (a real ASGI app) ------------------------------------------


class ImageServer:
    """An OpenAI-compatible ``/v1/images/generations`` serving synthetic images, or failing."""

    def __init__(self, *, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self._model = SyntheticImageUpstream(models=["remote-img"])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        data = json.loads(body)
        self.requests.append(data)
        status, out = 200, b""
        if self.mode == "garbage":
            out = b'{"data": [{"url": "http://x/1.png"}]}'
        elif self.mode == "error":
            status, out = 503, b'{"error": "busy"}'
        elif self.mode == "refuse":
            status, out = 400, b'{"error": {"message": "content policy"}}'
        else:
            w, h = (int(v) for v in data["size"].split("x"))
            req = ImageRequest(
                model=data["model"], prompt=data["prompt"], n=data["n"], width=w, height=h
            )
            result = await self._model.generate(req)
            out = orjson.dumps(
                {
                    "created": 1,
                    "data": [
                        {"b64_json": base64.b64encode(i.data).decode(), "revised_prompt": "r"}
                        for i in result.images
                    ],
                }
            )
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


def _remote(server: ImageServer, **kw: Any) -> OpenAIImageUpstream:
    return OpenAIImageUpstream(
        base_url="http://images.test/v1",
        models=["remote-img"],
        transport=httpx.ASGITransport(app=server),
        backoff_s=0.0,
        **kw,
    )


def test_openai_image_upstream_success_retries_and_garbage() -> None:
    server = ImageServer()
    up = _remote(server, api_key="sk-secret")
    req = ImageRequest(model="remote-img", prompt="a fox", n=2, width=128, height=128, style="x")
    result = run(up.generate(req))
    assert len(result.images) == 2 and result.images[0].revised_prompt == "r"
    assert server.requests[0] == {
        "model": "remote-img",
        "prompt": "a fox",
        "n": 2,
        "size": "128x128",
        "response_format": "b64_json",
        "style": "x",
    }
    assert "sk-secret" not in repr(up)
    server.mode = "error"
    with pytest.raises(UpstreamError, match="HTTP 503"):
        run(up.generate(req))
    assert len(server.requests) == 1 + 3  # two retries
    server.mode = "garbage"
    with pytest.raises(UpstreamError, match="not an OpenAI image response"):
        run(up.generate(req))


def test_openai_image_upstream_refusal_is_not_retried_and_keeps_the_circuit_closed() -> None:
    server = ImageServer(mode="refuse")
    up = _remote(server, breaker=CircuitBreaker(failures=1, reset_s=60))
    req = ImageRequest(model="remote-img", prompt="a fox", n=1, width=64, height=64)
    with pytest.raises(UpstreamError, match="HTTP 400") as info:
        run(up.generate(req))
    assert info.value.details == {"upstream_status": 400}
    assert len(server.requests) == 1  # a refusal is final: no retry
    assert up.breaker.state == "closed" and up.ready()  # the upstream works
    server.mode = "ok"
    assert len(run(up.generate(req)).images) == 1


def test_openai_image_upstream_timeout_and_breaker() -> None:
    """A real socket that accepts and never answers: the read timeout fires, the breaker opens."""
    req = ImageRequest(model="remote-img", prompt="a fox", n=1, width=128, height=128)

    async def go() -> tuple[BaseException | None, bool, BaseException | None]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = OpenAIImageUpstream(
            base_url=f"http://127.0.0.1:{port}/v1",
            read_timeout_s=0.3,
            retries=0,
            breaker=CircuitBreaker(failures=1, reset_s=60),
        )
        first: BaseException | None = None
        second: BaseException | None = None
        try:
            async with asyncio.timeout(4):
                try:
                    await up.generate(req)
                except UpstreamError as exc:
                    first = exc
                ready = up.ready()
                try:
                    await up.generate(req)
                except UpstreamError as exc:
                    second = exc
        finally:
            await up.aclose()
            server.close()
        return first, ready, second

    first, ready, second = run(go())
    assert isinstance(first, UpstreamTimeoutError)
    assert not ready
    assert isinstance(second, UpstreamError) and "circuit is open" in str(second)


# -- through the gateway --------------------------------------------------------------------------


def _with_c2pa(settings: Settings, tmp_path: Path) -> tuple[Settings, str]:
    ring = open_keyring(settings)
    creds = make_test_credentials(ring.signing_key(KeyPurpose.LEDGER).private_key)
    chain = tmp_path / "chain.pem"
    chain.write_text(creds.credentials.certificate_chain_pem)
    image = ImageSettings(c2pa_chain=chain)
    return settings.model_copy(update={"image": image}), creds.ca_pem


def _post(gw: Gateway, agent: Any, body: dict[str, Any]) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post(IMAGES_PATH, json=body)

    response: httpx.Response = run(go())
    return response


def _exchange(settings: Settings, exchange_id: str) -> Exchange:
    store = open_store(settings.store_url)
    try:
        stored = store.get_exchange(exchange_id)
        assert stored is not None
        return stored.exchange
    finally:
        store.close()


def test_images_are_marked_per_account_and_signed(tmp_path: Path) -> None:
    settings, ca = _with_c2pa(make_settings(tmp_path), tmp_path)
    gw = create_gateway(settings)
    try:
        agents = AgentFactory.from_settings(settings)
        key = open_keyring(settings).watermark_key()
        for account in ("acct-a", "acct-b"):
            r = _post(gw, agents.issue(account), {"prompt": "a quiet harbour", "size": "256x256"})
            assert r.status_code == 200, r.text
            blob = base64.b64decode(r.json()["data"][0]["b64_json"])
            report = inspect_image(blob, keys=[key], trust_anchors_pem=ca)
            assert report.detected and report.detection.payload == payload_for(key.secret, account)
            assert report.manifest.state == "trusted"
            ex = _exchange(settings, r.headers["x-distillguard-exchange-id"])
            assert ex.extra["dg_watermark"]["scheme"] == "distillguard-image-wm-v1"
            assert json.loads(ex.response or "")["images"][0]["c2pa"] is True
    finally:
        gw.close_sync()


def test_without_c2pa_credentials_images_are_watermarked_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings)
    try:
        agent = AgentFactory.from_settings(settings).issue("acct-n")
        r = _post(gw, agent, {"model": "stub-image-1", "prompt": "dunes", "size": "200x150"})
        assert r.status_code == 200
        blob = base64.b64decode(r.json()["data"][0]["b64_json"])
        key = open_keyring(settings).watermark_key()
        report = inspect_image(blob, keys=[key])
        assert report.detected and report.manifest.state == "absent"
        ex = _exchange(settings, r.headers["x-distillguard-exchange-id"])
        assert json.loads(ex.response or "")["images"][0]["c2pa"] is False
        # refusals of the request itself
        assert _post(gw, agent, {"prompt": "x", "response_format": "url"}).status_code == 400
        r404 = _post(gw, agent, {"model": "dall-e-3", "prompt": "x", "size": "128x128"})
        assert r404.status_code == 404 and r404.json()["error"]["code"] == "model_not_found"
    finally:
        gw.close_sync()


class _Risky:
    """An OnlineScorer with fixed risks (test double of the real interface)."""

    def __init__(self, risks: dict[str, RiskScore]) -> None:
        self.risks = risks

    def observe(self, exchange: Exchange) -> RiskScore:
        return self.score(exchange.account_id)

    def score(self, account_id: str) -> RiskScore:
        return self.risks.get(account_id, RiskScore())


def test_blocked_account_is_refused_and_recorded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    gw = create_gateway(settings, scorer=_Risky({"bad": RiskScore(account_risk=0.99)}))
    try:
        r = _post(gw, AgentFactory.from_settings(settings).issue("bad"), {"prompt": "x"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "account_blocked"
        store = open_store(settings.store_url)
        try:
            rows = [e.exchange for b in store.iter_exchanges() for e in b]
        finally:
            store.close()
        assert [(e.account_id, e.status, e.response) for e in rows] == [("bad", 403, None)]
        assert rows[0].endpoint == IMAGES_PATH and rows[0].extra["dg_action"] == "block"
    finally:
        gw.close_sync()


def test_rate_limits_count_image_tokens(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, account_tokens_per_minute=1200)
    gw = create_gateway(settings)
    try:
        agent = AgentFactory.from_settings(settings).issue("acct-t")
        body = {"prompt": "a tree", "size": "1024x1024"}  # 765 tokens an image
        assert _post(gw, agent, body).status_code == 200
        r = _post(gw, agent, body)  # the bucket (burst 200 tokens) is now in debt
        assert r.status_code == 429 and "account_tokens" in r.json()["error"]["message"]
    finally:
        gw.close_sync()


def test_openai_upstream_through_the_gateway_and_its_failure(tmp_path: Path) -> None:
    gw = create_gateway(make_settings(tmp_path, images={"enabled": False}))
    settings = make_settings(tmp_path)  # the same home and keyring, images enabled
    try:
        assert (
            run(client(gw).post(IMAGES_PATH, json={"prompt": "x"})).status_code == 404
        )  # not mounted: FastAPI's 404
        server = ImageServer()
        endpoint = mount_images(gw, settings, open_keyring(settings), upstream=_remote(server))
        assert endpoint is not None
        agent = AgentFactory.from_settings(settings).issue("acct-o")
        body = {"model": "remote-img", "prompt": "a bridge", "size": "256x256"}
        r = _post(gw, agent, body)
        assert r.status_code == 200 and r.json()["data"][0]["revised_prompt"] == "r"
        key = open_keyring(settings).watermark_key()
        blob = base64.b64decode(r.json()["data"][0]["b64_json"])
        assert inspect_image(blob, keys=[key]).detection.payload == payload_for(
            key.secret, "acct-o"
        )
        server.mode = "garbage"
        r = _post(gw, agent, body)
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
        store = open_store(settings.store_url)
        try:
            rows = [e.exchange for b in store.iter_exchanges() for e in b]
        finally:
            store.close()
        assert [e.status for e in rows] == [200, 502]
        assert "dg_error" in rows[1].extra
        schema = gw.api.openapi()
        assert IMAGES_PATH in schema["paths"]
    finally:
        gw.close_sync()
