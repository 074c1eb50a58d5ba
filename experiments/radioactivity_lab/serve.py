"""A minimal OpenAI-compatible ASGI app serving a local transformers model.

It stands in for a suspect's API in the lab and in tests (with ``httpx.ASGITransport``, no
network), so that closed mode is exercised end to end through HTTP. Not a production server: one
request is generated at a time, without authentication.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["model_app"]


def model_app(
    model: Any,
    tokenizer: Any,
    *,
    format_prompt: Callable[[str], str] = lambda p: p,
    name: str = "suspect",
    seed: int = 0,
    max_batch: int = 32,
    batch_wait_s: float = 0.01,
) -> Starlette:
    """An ASGI app with ``POST /v1/chat/completions`` and ``POST /v1/completions`` answering
    with ``model.generate`` (sampling at the requested temperature, ``max_tokens`` new tokens).

    ``format_prompt`` turns the user's message into the model's input text (e.g. the lab's
    ``"<instruction> <sep>"``). Requests that arrive together (within ``batch_wait_s``) are
    generated as one batch of up to ``max_batch``. Sampling is seeded per batch from ``seed`` and
    a counter.
    """
    from distillguard.watermark.hf import generate_watermarked

    lock = threading.Lock()
    counter = [0]
    state: dict[str, Any] = {}

    def generate(prompts: list[str], max_tokens: int, temperature: float) -> list[str]:
        with lock:
            counter[0] += 1
            out = generate_watermarked(
                model,
                tokenizer,
                [format_prompt(p) for p in prompts],
                scheme=None,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=max(temperature, 1e-3),
                seed=seed * 1_000_003 + counter[0],
            )
        return list(out.texts)

    async def worker(queue: asyncio.Queue[Any]) -> None:
        while True:
            first = await queue.get()
            batch = [first]
            await asyncio.sleep(batch_wait_s)
            while not queue.empty() and len(batch) < max_batch:
                batch.append(queue.get_nowait())
            groups: dict[tuple[int, float], list[Any]] = {}
            for item in batch:
                groups.setdefault((item[1], item[2]), []).append(item)
            for (max_tokens, temperature), items in groups.items():
                try:
                    texts = await asyncio.to_thread(
                        generate, [i[0] for i in items], max_tokens, temperature
                    )
                except Exception as exc:
                    for i in items:
                        i[3].set_exception(exc)
                    continue
                for i, text in zip(items, texts, strict=True):
                    i[3].set_result(text)

    async def submit(prompt: str, max_tokens: int, temperature: float) -> str:
        loop = asyncio.get_running_loop()
        if state.get("loop") is not loop:
            state["loop"] = loop
            state["queue"] = asyncio.Queue()
            state["task"] = loop.create_task(worker(state["queue"]))
        fut: asyncio.Future[str] = loop.create_future()
        await state["queue"].put((prompt, max_tokens, temperature, fut))
        return await fut

    async def answer(request: Request, *, chat: bool) -> JSONResponse:
        try:
            body = await request.json()
            if chat:
                messages = body["messages"]
                prompt = str(messages[-1]["content"])
            else:
                prompt = str(body["prompt"])
            max_tokens = int(body.get("max_tokens", 64))
            temperature = float(body.get("temperature", 1.0))
        except (KeyError, IndexError, TypeError, ValueError):
            return JSONResponse({"error": {"message": "bad request"}}, status_code=400)
        if not 1 <= max_tokens <= 1024:
            return JSONResponse({"error": {"message": "max_tokens out of range"}}, status_code=400)
        text = await submit(prompt, max_tokens, temperature)
        choice: dict[str, Any] = (
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
            if chat
            else {"index": 0, "text": text, "finish_reason": "length"}
        )
        return JSONResponse(
            {
                "id": f"cmpl-{counter[0]}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": name,
                "choices": [choice],
            }
        )

    async def chat_completions(request: Request) -> JSONResponse:
        return await answer(request, chat=True)

    async def completions(request: Request) -> JSONResponse:
        return await answer(request, chat=False)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ]
    )
