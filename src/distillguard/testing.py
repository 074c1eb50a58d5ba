"""Helpers for tests of DistillGuard and of code built on it: records, logs and stores.

>>> from distillguard.testing import make_account, make_exchange, write_log
>>> acc = make_account("acct-1")
>>> ex = make_exchange("ex-1", account_id="acct-1")
>>> ex.account_id
'acct-1'
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from distillguard.records import (
    ACCOUNT_FIELDS,
    EXCHANGE_FIELDS,
    Account,
    Exchange,
    LogFormat,
    LogWriter,
    Message,
)

__all__ = [
    "POSTGRES_URL",
    "make_account",
    "make_exchange",
    "postgres_store_url",
    "write_jsonl",
    "write_log",
]

#: The PostgreSQL server the test suite uses (trust auth on this machine and in CI).
POSTGRES_URL = "postgresql://root@127.0.0.1:5432/test"

_T0 = datetime(2026, 2, 23, 14, 5, 9, 123000, tzinfo=UTC)


def _split_extra(
    values: dict[str, Any], fields: dict[str, Any], known: tuple[str, ...]
) -> dict[str, Any]:
    """Merge overrides; fields the format does not define go to ``extra``."""
    extra = {k: v for k, v in fields.items() if k not in known and k != "extra"}
    values.update({k: v for k, v in fields.items() if k in known or k == "extra"})
    if extra:
        values["extra"] = MappingProxyType({**values.get("extra", {}), **extra})
    return values


def make_account(account_id: str = "acct-1", **fields: Any) -> Account:
    """An account with plausible defaults; keyword arguments override fields."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "created_at": _T0 - timedelta(days=30),
        "signup_channel": "self_serve",
        "country": "US",
    }
    return Account(**_split_extra(values, fields, ACCOUNT_FIELDS))


def make_exchange(
    exchange_id: str = "ex-1", *, account_id: str = "acct-1", offset_s: float = 0.0, **fields: Any
) -> Exchange:
    """An exchange with plausible defaults; keyword arguments override fields."""
    values: dict[str, Any] = {
        "exchange_id": exchange_id,
        "ts": _T0 + timedelta(seconds=offset_s),
        "account_id": account_id,
        "ip": "203.0.113.7",
        "model": "provider-large",
        "messages": (
            Message("system", "You are a helpful assistant."),
            Message("user", "Explain step by step why the sky is blue."),
        ),
        "response": "Because of Rayleigh scattering: shorter wavelengths scatter more.",
        "prompt_tokens": 21,
        "completion_tokens": 13,
        "status": 200,
        "endpoint": "/v1/chat/completions",
        "latency_ms": 812.5,
    }
    return Exchange(**_split_extra(values, fields, EXCHANGE_FIELDS))


def write_log(
    folder: Path,
    accounts: Iterable[Account],
    exchanges: Iterable[Exchange],
    *,
    fmt: LogFormat = "jsonl",
) -> Path:
    """Write a format v1 log folder and return it."""
    with LogWriter(folder, fmt=fmt) as writer:
        writer.accounts.write(accounts)
        writer.exchanges.write(exchanges)
    return folder


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | bytes | str]) -> Path:
    """Write raw JSONL lines (dicts are serialised, bytes/str written as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for row in rows:
            if isinstance(row, dict):  # stdlib json: any integer size, non-finite floats
                fh.write(json.dumps(row).encode() + b"\n")
            elif isinstance(row, str):
                fh.write(row.encode() + b"\n")
            else:
                fh.write(row + b"\n")
    return path


@contextmanager
def postgres_store_url(base: str = POSTGRES_URL) -> Iterator[str]:
    """A store URL with a fresh PostgreSQL schema, dropped afterwards (parallel-safe)."""
    from distillguard.store.postgres import PostgresStore

    schema = f"dgtest_{uuid.uuid4().hex[:12]}"
    url = f"{base}?schema={schema}"
    try:
        yield url
    finally:
        store = PostgresStore(url, check_schema=False)  # drop whatever state it is in
        store.drop_schema()
        store.close()
