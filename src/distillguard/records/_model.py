"""The records of exchange log format v1: accounts and exchanges.

The format is defined in ``shared/schema/exchange-log-v1.md``; this module is its Python and
Arrow form. Records are immutable value objects. Fields the format does not define are kept in
``extra`` and written back out unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import pyarrow as pa

from distillguard._internal.timeutil import format_ts

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_SCHEMA",
    "EXCHANGE_FIELDS",
    "EXCHANGE_SCHEMA",
    "Account",
    "Exchange",
    "Message",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a request's conversation (``{role, content}``)."""

    role: str
    content: str
    extra: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, extra fields included."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.extra:
            out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Account:
    """An account row of format v1."""

    account_id: str
    created_at: datetime
    org_id: str | None = None
    signup_channel: str | None = None
    email_domain: str | None = None
    payment_fingerprint: str | None = None
    country: str | None = None
    tier: str | None = None
    extra: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of format v1 (absent optional fields omitted, extra fields kept)."""
        out: dict[str, Any] = {
            "account_id": self.account_id,
            "created_at": format_ts(self.created_at),
        }
        for name in _ACCOUNT_OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange row of format v1: one API request and its response."""

    exchange_id: str
    ts: datetime
    account_id: str
    ip: str
    model: str
    messages: tuple[Message, ...]
    prompt_tokens: int
    completion_tokens: int
    status: int
    api_key_id: str | None = None
    agent_id: str | None = None
    asn: int | None = None
    user_agent: str | None = None
    client_fingerprint: str | None = None
    endpoint: str | None = None
    response: str | None = None
    reasoning: str | None = None
    tools: tuple[str, ...] | None = None
    latency_ms: float | None = None
    extra: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of format v1 (absent optional fields omitted, extra fields kept)."""
        out: dict[str, Any] = {
            "exchange_id": self.exchange_id,
            "ts": format_ts(self.ts),
            "account_id": self.account_id,
            "ip": self.ip,
            "model": self.model,
            "messages": [m.to_dict() for m in self.messages],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "status": self.status,
        }
        for name in _EXCHANGE_OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name == "tools" else value
        out.update(self.extra)
        return out

    @property
    def prompt_text(self) -> str:
        """The text of the last user message (empty if there is none)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


_ACCOUNT_OPTIONAL: Final = (
    "org_id",
    "signup_channel",
    "email_domain",
    "payment_fingerprint",
    "country",
    "tier",
)
_EXCHANGE_OPTIONAL: Final = (
    "api_key_id",
    "agent_id",
    "asn",
    "user_agent",
    "client_fingerprint",
    "endpoint",
    "response",
    "reasoning",
    "tools",
    "latency_ms",
)

#: Field names defined by format v1, in the order of the specification.
ACCOUNT_FIELDS: Final = ("account_id", "created_at", *_ACCOUNT_OPTIONAL)
EXCHANGE_FIELDS: Final = (
    "exchange_id",
    "ts",
    "account_id",
    "api_key_id",
    "agent_id",
    "ip",
    "asn",
    "user_agent",
    "client_fingerprint",
    "model",
    "endpoint",
    "messages",
    "response",
    "reasoning",
    "tools",
    "prompt_tokens",
    "completion_tokens",
    "status",
    "latency_ms",
)

_TS = pa.timestamp("us", tz="UTC")

#: Parquet/Arrow schema of ``accounts`` (format v1).
ACCOUNT_SCHEMA: Final = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("org_id", pa.string()),
        pa.field("created_at", _TS, nullable=False),
        pa.field("signup_channel", pa.string()),
        pa.field("email_domain", pa.string()),
        pa.field("payment_fingerprint", pa.string()),
        pa.field("country", pa.string()),
        pa.field("tier", pa.string()),
    ]
)

#: Parquet/Arrow schema of ``exchanges`` (format v1).
EXCHANGE_SCHEMA: Final = pa.schema(
    [
        pa.field("exchange_id", pa.string(), nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("api_key_id", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("ip", pa.string(), nullable=False),
        pa.field("asn", pa.int64()),
        pa.field("user_agent", pa.string()),
        pa.field("client_fingerprint", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("endpoint", pa.string()),
        pa.field(
            "messages",
            pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])),
            nullable=False,
        ),
        pa.field("response", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("tools", pa.list_(pa.string())),
        pa.field("prompt_tokens", pa.int64(), nullable=False),
        pa.field("completion_tokens", pa.int64(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64()),
    ]
)
