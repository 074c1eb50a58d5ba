"""Validation of one decoded record (a JSON object or a Parquet row) against format v1.

Each function takes a mapping and returns the record, or raises :class:`FieldError` naming the
field and the reason. They are written as straight-line code because they run once per record on
the ingest hot path.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from distillguard._internal.timeutil import parse_rfc3339, to_utc
from distillguard.records._model import ACCOUNT_FIELDS, EXCHANGE_FIELDS, Account, Exchange, Message

__all__ = ["FieldError", "account_from_mapping", "exchange_from_mapping"]

_NUL = "contains a NUL character (not allowed in identifiers and metadata; HTTP forbids it)"
_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_ACCOUNT_KNOWN = frozenset(ACCOUNT_FIELDS)
_EXCHANGE_KNOWN = frozenset(EXCHANGE_FIELDS)


class FieldError(ValueError):
    """A field of a record breaks the format."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _req_str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is str:
        if not value:
            raise FieldError(name, "must not be empty")
        if "\x00" in value:
            raise FieldError(name, _NUL)
        return value
    if value is None:
        raise FieldError(name, "required field is missing" if name not in obj else "is null")
    raise FieldError(name, f"must be a string, got {_type_name(value)}")


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return value
    if type(value) is str:
        if "\x00" in value:
            raise FieldError(name, _NUL)
        return value
    raise FieldError(name, f"must be a string, got {_type_name(value)}")


_INT64_MAX = 2**63 - 1
_EXACT_FLOAT_INT = 2**53


def _opt_text(obj: dict[str, Any], name: str) -> str | None:
    """Content text: any string, NUL characters included."""
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise FieldError(name, f"must be a string, got {_type_name(value)}")


def _int(value: object, name: str, *, minimum: int = 0) -> int:
    if type(value) is int:
        if value < minimum:
            raise FieldError(name, f"must be >= {minimum}, got {value}")
        if value > _INT64_MAX:
            raise FieldError(name, f"must fit in a signed 64-bit integer, got {value}")
        return value
    if type(value) is float and value.is_integer():  # 12.0 from some JSON writers
        if abs(value) >= _EXACT_FLOAT_INT:  # orjson turns integers past 64 bits into floats
            raise FieldError(name, f"integer out of range: {value:g}")
        return _int(int(value), name, minimum=minimum)
    if value is None:
        raise FieldError(name, "required field is missing")
    raise FieldError(name, f"must be an integer, got {_type_name(value)}")


def _timestamp(value: object, name: str) -> datetime:
    if type(value) is str:
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise FieldError(name, str(exc)) from None
    if isinstance(value, datetime):  # Parquet timestamp column
        if value.tzinfo is None or value.utcoffset() is None:
            raise FieldError(name, "timestamp has no time zone (Parquet needs timestamp[us, UTC])")
        try:
            return to_utc(value)
        except ValueError as exc:  # outside the datetime range once in UTC
            raise FieldError(name, str(exc)) from None
    if value is None:
        raise FieldError(name, "required field is missing")
    raise FieldError(name, f"must be an RFC 3339 timestamp string, got {_type_name(value)}")


def _storable(value: object, name: str) -> None:
    """Refuse a value the store cannot write as JSON.

    JSON read by the reader nests up to 1,024 levels, but JSON is written with at most 254;
    Parquet rows may hold bytes, decimals or strings that are not valid UTF-8. Such a value is
    a property of the record, so it is quarantined here rather than failing the store's batch.
    """
    try:
        orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise FieldError(name, f"cannot be stored as JSON ({exc})") from None


def _extra(obj: dict[str, Any], known: frozenset[str]) -> MappingProxyType[str, Any]:
    if obj.keys() <= known:
        return _EMPTY
    extra = {k: v for k, v in obj.items() if k not in known}
    packed = extra.pop("_extra", None)  # DistillGuard's Parquet export keeps extras as JSON
    if isinstance(packed, str) and packed:
        try:
            unpacked = orjson.loads(packed)
        except orjson.JSONDecodeError:
            raise FieldError("_extra", "is not valid JSON") from None
        if isinstance(unpacked, dict):
            extra.update(unpacked)
    if not extra:
        return _EMPTY
    try:
        orjson.dumps(extra)
    except TypeError:  # name the field that cannot be written
        for key, value in extra.items():
            _storable(value, key)
        raise FieldError("_extra", "cannot be stored as JSON") from None
    return MappingProxyType(extra)


def account_from_mapping(obj: dict[str, Any]) -> Account:
    """Validate one account record.

    Raises:
        FieldError: a required field is missing or a field has the wrong type or value.
    """
    return Account(
        account_id=_req_str(obj, "account_id"),
        created_at=_timestamp(obj.get("created_at"), "created_at"),
        org_id=_opt_str(obj, "org_id"),
        signup_channel=_opt_str(obj, "signup_channel"),
        email_domain=_opt_str(obj, "email_domain"),
        payment_fingerprint=_opt_str(obj, "payment_fingerprint"),
        country=_opt_str(obj, "country"),
        tier=_opt_str(obj, "tier"),
        extra=_extra(obj, _ACCOUNT_KNOWN),
    )


def _messages(value: object) -> tuple[Message, ...]:
    if type(value) is not list:
        if value is None:
            raise FieldError("messages", "required field is missing")
        raise FieldError("messages", f"must be a list, got {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        if type(item) is not dict:
            raise FieldError(f"messages[{i}]", f"must be an object, got {_type_name(item)}")
        role = item.get("role")
        content = item.get("content")
        if type(role) is not str:
            raise FieldError(f"messages[{i}].role", f"must be a string, got {_type_name(role)}")
        if type(content) is not str:
            raise FieldError(
                f"messages[{i}].content", f"must be a string, got {_type_name(content)}"
            )
        if len(item) == 2:
            out.append(Message(role, content, _EMPTY))
        else:
            rest = {k: v for k, v in item.items() if k != "role" and k != "content"}
            _storable(rest, f"messages[{i}]")
            out.append(Message(role, content, MappingProxyType(rest)))
    return tuple(out)


def _tools(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise FieldError("tools", f"must be a list of strings, got {_type_name(value)}")
    for i, item in enumerate(value):
        if type(item) is not str:
            raise FieldError(f"tools[{i}]", f"must be a string, got {_type_name(item)}")
    return tuple(value)


def _ip(value: object) -> str:
    if type(value) is not str:
        if value is None:
            raise FieldError("ip", "required field is missing")
        raise FieldError("ip", f"must be a string, got {_type_name(value)}")
    try:  # inet_pton is strict and ten times faster than ipaddress
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):
        try:  # accept what ipaddress accepts too (e.g. scoped IPv6 "fe80::1%eth0")
            ipaddress.ip_address(value)
        except ValueError:
            raise FieldError("ip", f"{value[:64]!r} is not an IPv4 or IPv6 address") from None
    return value


_EXCHANGE_OPTIONAL_META: tuple[str, ...] = (
    "api_key_id",
    "agent_id",
    "user_agent",
    "client_fingerprint",
    "endpoint",
)


def exchange_from_mapping(obj: dict[str, Any]) -> Exchange:
    """Validate one exchange record.

    Raises:
        FieldError: a required field is missing or a field has the wrong type or value.
    """
    get = obj.get
    for name in _EXCHANGE_OPTIONAL_META:  # the common case, valid or absent, without a call
        value = get(name)
        if value is not None and (type(value) is not str or "\x00" in value):
            _opt_str(obj, name)  # raises with the precise reason
    asn = get("asn")
    latency = get("latency_ms")
    if latency is not None:
        if type(latency) is int:
            latency = float(latency)
        elif type(latency) is not float:
            raise FieldError("latency_ms", f"must be a number, got {_type_name(latency)}")
        if not latency >= 0.0 or latency == float("inf"):
            raise FieldError("latency_ms", f"must be a finite number >= 0, got {latency}")
    status = _int(get("status"), "status")
    if not 100 <= status <= 599:
        raise FieldError("status", f"must be an HTTP status code (100-599), got {status}")
    # Positional, in the field order of Exchange (keyword passing costs more on the hot path).
    return Exchange(
        _req_str(obj, "exchange_id"),
        _timestamp(get("ts"), "ts"),
        _req_str(obj, "account_id"),
        _ip(get("ip")),
        _req_str(obj, "model"),
        _messages(get("messages")),
        _int(get("prompt_tokens"), "prompt_tokens"),
        _int(get("completion_tokens"), "completion_tokens"),
        status,
        get("api_key_id"),
        get("agent_id"),
        None if asn is None else _int(asn, "asn"),
        get("user_agent"),
        get("client_fingerprint"),
        get("endpoint"),
        _opt_text(obj, "response"),
        _opt_text(obj, "reasoning"),
        _tools(get("tools")),
        latency,
        _extra(obj, _EXCHANGE_KNOWN),
    )
