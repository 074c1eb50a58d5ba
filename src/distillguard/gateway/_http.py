"""Small ASGI helpers: problem documents, JSON responses, bounded body reading."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_BASE = "https://distillguard.dev/problems/"


class BodyError(Exception):
    """The request body could not be read within the bounds (size or time)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def problem_body(status: int, code: str, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document."""
    return orjson.dumps(
        {
            "type": PROBLEM_BASE + code.replace("_", "-"),
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
    )


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete response."""
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw += headers
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send an ``application/problem+json`` response."""
    extra = [(b"cache-control", b"no-store")] + (headers or [])
    await send_bytes(
        send,
        status,
        problem_body(status, code, title, detail),
        content_type=b"application/problem+json",
        headers=extra,
    )


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` lower-case)."""
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v)
    return None


async def read_body(receive: Receive, scope: Scope, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, refusing more than ``limit`` bytes or more than ``timeout_s`` seconds.

    Raises:
        BodyError: 413 (too large), 408 (too slow), 400 (client went away or bad length).
    """
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise BodyError(400, "invalid_request", "Content-Length is not a number") from None
        if n > limit:
            raise BodyError(413, "body_too_large", f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyError(400, "client_disconnected", "the client went away")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, "body_too_large", f"the body exceeds {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyError(408, "request_timeout", f"the body took more than {timeout_s} s") from None
    return b"".join(chunks)
