"""End to end: the openai SDK and httpx clients sign requests; an ASGI app verifies them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.keyring import KeyPurpose, Keyring
from distillguard.passport import (
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    IDENTITY_SCOPE_KEY,
    Auth,
    KeyDirectory,
    PassportIssuer,
    PassportMiddleware,
    PassportValidator,
    RequestVerifier,
    Scopes,
    SQLitePassportRegistry,
    VerifierPolicy,
    agent_jwk,
    httpx2_auth,
)
from distillguard.passport._signatures import (
    HttpRequest,
    HttpResponse,
    parse_signatures,
    verify_signature,
)

openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")


async def chat_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """A tiny OpenAI-compatible endpoint that echoes the verified identity."""
    message = await receive()
    request = json.loads(message.get("body") or b"{}")
    identity = scope[IDENTITY_SCOPE_KEY]
    assert scope["state"]["identity"] is identity
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"hello {identity.account_id}"},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    body = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Any]]:
    keyring = Keyring.create(tmp_path / "keyring.json")
    registry = SQLitePassportRegistry(tmp_path / "passports.sqlite")
    agent_key = Ed25519PrivateKey.generate()
    issuer_key = keyring.signing_key(KeyPurpose.PASSPORT)
    passport = PassportIssuer(key=issuer_key).issue(
        account_id="acct_7",
        org_id="org_7",
        agent_public_jwk=agent_jwk(agent_key.public_key()),
        scopes=Scopes(models=("small-*",), endpoints=("/v1/*",)),
    )
    registry.record_issued(passport)
    verifier = RequestVerifier(
        passports=PassportValidator.from_keyring(keyring),
        revocations=registry,
        policy=VerifierPolicy(authorities=("api.test",)),
    )
    app = PassportMiddleware(
        chat_app,
        verifier=verifier,
        directory=KeyDirectory(registry=registry, signing_key=issuer_key),
    )
    yield {
        "app": app,
        "passport": passport,
        "key": agent_key,
        "verifier": verifier,
        "registry": registry,
        "issuer_key": issuer_key,
    }
    registry.close()


def test_openai_sdk_works_unchanged_through_the_signing_client(service: dict[str, Any]) -> None:
    auth = httpx2_auth(
        passport=service["passport"].token,
        agent_key=service["key"],
        signature_agent="https://api.test",
    )

    async def run() -> Any:
        http_client = httpx2.AsyncClient(
            auth=auth, transport=httpx2.ASGITransport(app=service["app"])
        )
        client = openai.AsyncOpenAI(
            api_key="unused", base_url="https://api.test/v1", http_client=http_client, max_retries=0
        )
        first = await client.chat.completions.create(
            model="small-1", messages=[{"role": "user", "content": "hi"}]
        )
        second = await client.chat.completions.create(
            model="small-1", messages=[{"role": "user", "content": "again"}]
        )
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.chat.completions.create(
                model="large-9", messages=[{"role": "user", "content": "hi"}]
            )
        await http_client.aclose()
        return first, second, denied.value

    first, second, denied = asyncio.run(run())
    assert first.choices[0].message.content == "hello acct_7"
    assert second.choices[0].message.content == "hello acct_7"
    assert denied.status_code == 403 and denied.body["code"] == "scope_violation"
    assert service["verifier"].counter.accepted == 2


def test_httpx_auth_unsigned_replayed_and_revoked(service: dict[str, Any]) -> None:
    app = service["app"]
    auth = Auth(passport=service["passport"].token, agent_key=service["key"])
    captured: list[httpx.Request] = []

    async def run() -> list[httpx.Response]:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="https://api.test"
            ) as plain,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="https://api.test",
                auth=auth,
                event_hooks={"request": [lambda r: _capture(captured, r)]},
            ) as signed,
        ):
            out = [await plain.post("/v1/chat/completions", json={"model": "small-1"})]
            out.append(
                await signed.post("/v1/chat/completions", json={"model": "small-1", "messages": []})
            )
            replay = captured[-1]
            out.append(
                await plain.send(
                    httpx.Request(
                        replay.method, replay.url, headers=replay.headers, content=replay.content
                    )
                )
            )
            service["registry"].revoke(service["passport"].passport_id, reason="test")
            out.append(await signed.post("/v1/chat/completions", json={"model": "small-1"}))
            return out

    unsigned, ok, replayed, revoked = asyncio.run(run())
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"] == "application/problem+json"
    assert unsigned.json()["code"] == "missing_signature"
    assert ok.status_code == 200
    assert replayed.status_code == 401 and replayed.json()["code"] == "replayed_nonce"
    assert revoked.status_code == 403 and revoked.json()["code"] == "revoked_passport"


async def _capture(store: list[httpx.Request], request: httpx.Request) -> None:
    store.append(request)


def test_key_directory_is_served_and_signed(service: dict[str, Any]) -> None:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service["app"]), base_url="https://api.test"
        ) as client:
            return await client.get(DIRECTORY_PATH)

    response = asyncio.run(run())
    assert response.status_code == 200
    assert response.headers["content-type"] == DIRECTORY_MEDIA_TYPE
    (jwk,) = response.json()["keys"]
    assert (
        jwk["kid"] == service["passport"].agent_kid
        and jwk["x"] == service["passport"].agent_jwk["x"]
    )
    (sig,) = parse_signatures(
        response.headers["signature-input"], response.headers["signature"]
    ).values()
    assert sig.tag == "http-message-signatures-directory" and sig.keyid == service["issuer_key"].kid
    view = HttpResponse(
        200,
        {k: (v,) for k, v in response.headers.items()},
        request=HttpRequest.from_url("GET", f"https://api.test{DIRECTORY_PATH}"),
    )
    assert verify_signature(view, sig, service["issuer_key"].public_key())
    service["registry"].revoke(service["passport"].passport_id, reason="gone")
    assert asyncio.run(run()).json() == {"keys": []}
