"""Synthetic exchange logs for benchmarks: about 1 KB of text per exchange, format v1 JSONL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

WORDS = [
    "model",
    "data",
    "train",
    "reason",
    "step",
    "answer",
    "code",
    "python",
    "function",
    "list",
    "value",
    "error",
    "test",
    "result",
    "explain",
    "why",
    "how",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "this",
    "it",
    "as",
    "be",
    "are",
    "by",
]


def write_log(folder: Path, n_exchanges: int, *, n_accounts: int = 2000, seed: int = 7) -> Path:
    """Write accounts.jsonl and exchanges.jsonl with ``n_exchanges`` rows into ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 2, 1, tzinfo=UTC)
    with (folder / "accounts.jsonl").open("wb") as fh:
        for i in range(n_accounts):
            created = start - timedelta(days=rng.randint(1, 400))
            fh.write(
                orjson.dumps(
                    {
                        "account_id": f"acct-{i:06d}",
                        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                        "signup_channel": rng.choice(["self_serve", "education", "enterprise"]),
                        "country": rng.choice(["US", "FR", "DE", "IN", "BR"]),
                    }
                )
                + b"\n"
            )
    vocab = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(512)]
    with (folder / "exchanges.jsonl").open("wb") as fh:
        chunk: list[bytes] = []
        for i in range(n_exchanges):
            ts = start + timedelta(milliseconds=i * 37)
            prompt = " ".join(rng.choice(vocab) for _ in range(4))
            response = " ".join(rng.choice(vocab) for _ in range(10))
            chunk.append(
                orjson.dumps(
                    {
                        "exchange_id": f"ex-{i:09d}",
                        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                        "account_id": f"acct-{rng.randrange(n_accounts):06d}",
                        "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
                        "asn": rng.choice([7922, 16509, 3320, 4134]),
                        "user_agent": "OpenAI/Python 1.54.0",
                        "model": "provider-large-2026-01",
                        "endpoint": "/v1/chat/completions",
                        "messages": [
                            {"role": "system", "content": "You are a helpful assistant."},
                            {"role": "user", "content": prompt},
                        ],
                        "response": response,
                        "prompt_tokens": len(prompt) // 4,
                        "completion_tokens": len(response) // 4,
                        "status": 200,
                        "latency_ms": round(rng.uniform(100, 9000), 1),
                    }
                )
                + b"\n"
            )
            if len(chunk) >= 10_000:
                fh.write(b"".join(chunk))
                chunk = []
        fh.write(b"".join(chunk))
    return folder
