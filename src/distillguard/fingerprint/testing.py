"""Local OpenAI-compatible "suspect" apps for testing collection and canary probes.

:class:`SuspectApp` is a plain ASGI application that answers ``POST .../chat/completions`` with
whatever its ``answer`` function returns; it can fail a share of requests (429/500/503), return
garbage, or stall, to exercise retries and resumption. Use it through
``httpx.ASGITransport(app=SuspectApp(...))``: no network, no server.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["SuspectApp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SuspectApp:
    """An ASGI chat-completions endpoint answering with ``answer(prompt)``.

    Args:
        answer: the model: prompt text -> answer text.
        fail_rate: share of requests answered with an error status instead (seeded).
        fail_status: the error statuses, picked in turn.
        garbage: answer every request with a body that is not a chat completion.
        stall_after: after this many answers, further requests never complete (an interrupted
            run); ``None``: never stall.
        seed: seed of the failures.

    Attributes:
        requests: requests received (all, failed included).
        answered: prompts answered successfully, in order.
    """

    def __init__(
        self,
        *,
        answer: Callable[[str], str],
        fail_rate: float = 0.0,
        fail_status: tuple[int, ...] = (429, 500, 503),
        garbage: bool = False,
        stall_after: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= fail_rate < 1.0:
            raise ValueError("fail_rate must be in [0, 1)")
        self._answer = answer
        self.fail_rate = fail_rate
        self.fail_status = fail_status
        self.garbage = garbage
        self.stall_after = stall_after
        self._rng = random.Random(seed)
        self.requests = 0
        self.answered: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
            await self._send(send, 404, {"error": "not found"})
            return
        if self.fail_rate and self._rng.random() < self.fail_rate:
            status = self.fail_status[self.requests % len(self.fail_status)]
            headers = [(b"retry-after", b"0")] if status == 429 else []
            await self._send(send, status, {"error": "try again"}, headers=headers)
            return
        if self.stall_after is not None and len(self.answered) >= self.stall_after:
            await asyncio.Event().wait()  # never set: the client gives up or is cancelled
        if self.garbage:
            await self._send(send, 200, {"unexpected": True})
            return
        try:
            payload = json.loads(body)
            prompt = payload["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            await self._send(send, 400, {"error": "bad request"})
            return
        text = self._answer(str(prompt))
        self.answered.append(str(prompt))
        await self._send(
            send,
            200,
            {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion",
                "model": payload.get("model", "suspect"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    @staticmethod
    async def _send(
        send: Send,
        status: int,
        obj: Any,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        data = json.dumps(obj).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])],
            }
        )
        await send({"type": "http.response.body", "body": data})
