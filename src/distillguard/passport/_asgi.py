"""ASGI pieces the gateway mounts: the verifying middleware and the key directory.

* :class:`PassportMiddleware` wraps any ASGI app (Starlette, FastAPI, plain ASGI): it buffers the
  body (bounded), verifies the request with a :class:`~distillguard.passport.RequestVerifier`,
  answers a rejection with ``application/problem+json``, and otherwise calls the app with the
  verified identity in ``scope["distillguard.identity"]`` (and ``scope["state"]["identity"]``,
  which Starlette exposes as ``request.state.identity``).
* :class:`KeyDirectory` serves ``GET /.well-known/http-message-signatures-directory``: the JWKS of
  the agent keys of active passports, as ``application/http-message-signatures-directory+json``
  (Web Bot Auth directory draft), with a response signature (``tag=
  "http-message-signatures-directory"``) covering ``"@authority";req`` and ``content-digest``,
  made with the provider's passport issuer key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from distillguard.passport._credential import IssuerKey
from distillguard.passport._digest import make_content_digest
from distillguard.passport._registry import PassportRegistry
from distillguard.passport._signatures import HttpRequest, HttpResponse, component_id, sign_message
from distillguard.passport._verifier import Rejection, RejectionReason, RequestVerifier

__all__ = [
    "DIRECTORY_MEDIA_TYPE",
    "DIRECTORY_PATH",
    "DIRECTORY_TAG",
    "IDENTITY_SCOPE_KEY",
    "KeyDirectory",
    "PassportMiddleware",
]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
"""Where the key directory is served."""

DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"
"""Media type of the key directory (Web Bot Auth directory draft)."""

DIRECTORY_TAG = "http-message-signatures-directory"
"""``tag`` of the directory response signature."""

IDENTITY_SCOPE_KEY = "distillguard.identity"
"""ASGI scope key holding the :class:`~distillguard.passport.VerifiedIdentity`."""


async def _send_body(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_problem(send: Send, rejection: Rejection) -> None:
    problem = rejection.problem()
    body = problem.to_json()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if problem.status == 401:
        headers.append((b"www-authenticate", b'Signature realm="distillguard"'))
    await _send_body(send, problem.status, headers, body)


class KeyDirectory:
    """The JWKS key directory of registered agents, signed by the provider.

    Args:
        registry: where issued passports and revocations are recorded.
        signing_key: the provider's passport issuer key (signs the response).
        validity_s: validity of the response signature.
        clock: time source (UNIX seconds).
    """

    def __init__(
        self,
        *,
        registry: PassportRegistry,
        signing_key: IssuerKey | None = None,
        validity_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._signing_key = signing_key
        self.validity_s = validity_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"KeyDirectory(registry={self.registry!r})"

    def jwks(self, *, now: float | None = None) -> dict[str, Any]:
        """``{"keys": [...]}``: each agent key of a passport neither revoked nor expired, once."""
        t = self._clock() if now is None else now
        keys: dict[str, dict[str, str]] = {}
        for record in self.registry.list_passports():
            if record.status(t) == "active":
                keys[record.agent_kid] = {**record.agent_jwk, "kid": record.agent_kid}
        return {"keys": list(keys.values())}

    def response(self, request: HttpRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the directory response to ``request``."""
        body = json.dumps(self.jwks(), separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = [
            ("content-type", DIRECTORY_MEDIA_TYPE),
            ("content-digest", make_content_digest(body)),
            ("cache-control", "max-age=60"),
        ]
        if self._signing_key is not None:
            created = int(self._clock())
            response = HttpResponse(200, {k: (v,) for k, v in headers}, request=request)
            signed = sign_message(
                response,
                private_key=self._signing_key.private_key,
                keyid=self._signing_key.kid,
                created=created,
                expires=created + self.validity_s,
                tag=DIRECTORY_TAG,
                components=[component_id("@authority", req=True), "content-digest"],
                label="sig1",
            )
            headers += [
                ("signature-input", signed.signature_input),
                ("signature", signed.signature),
            ]
        headers.append(("content-length", str(len(body))))
        return 200, headers, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the directory as a plain ASGI app."""
        status, headers, body = self.response(HttpRequest.from_asgi(scope))
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await _send_body(send, status, raw, body)


class PassportMiddleware:
    """ASGI middleware verifying every HTTP request (see the module documentation).

    Args:
        app: the protected application.
        verifier: the request verifier.
        directory: serve this key directory at :data:`DIRECTORY_PATH` (unauthenticated).
        exempt_paths: paths passed through without verification (health checks).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: RequestVerifier,
        directory: KeyDirectory | None = None,
        exempt_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.directory = directory
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Verify, then call the app or answer with a problem document."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.directory is not None and path == DIRECTORY_PATH:
            await self.directory(scope, receive, send)
            return
        if path in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        limit = self.verifier.policy.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                rejection = self.verifier.reject(
                    RejectionReason.BODY_TOO_LARGE, f"the body exceeds {limit} bytes"
                )
                await _send_problem(send, rejection)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        result = await self.verifier.averify(HttpRequest.from_asgi(scope), body)
        if result.rejection is not None:
            await _send_problem(send, result.rejection)
            return
        inner = dict(scope)
        inner[IDENTITY_SCOPE_KEY] = result.identity
        state = dict(scope.get("state") or {})
        state["identity"] = result.identity
        inner["state"] = state
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(inner, replay, send)
