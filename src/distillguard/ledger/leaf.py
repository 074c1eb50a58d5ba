"""What a ledger leaf commits to: salted commitments to a record's metadata and content.

A record (``Exchange.to_dict()``, format v1) is split in two:

* ``meta``: every field except the content fields ``messages``, ``response`` and ``reasoning``;
* ``content``: ``{"messages": ..., "response": ..., "reasoning": ...}`` (absent fields omitted).

Each part is committed to with the record's random salt (32 bytes, stored with the record)::

    meta_hash    = SHA-256(b"distillguard/meta/v1\\x00"    || salt || JCS(meta))
    content_hash = SHA-256(b"distillguard/content/v1\\x00" || salt || JCS(content))
    leaf data    = JCS({"v": 1, "meta": hex(meta_hash), "content": hex(content_hash)})
    leaf hash    = SHA-256(0x00 || leaf data)                      (RFC 9162)

JCS is RFC 8785 (:mod:`distillguard.ledger.canonical`). Because of the salt, a leaf reveals
nothing about its record, and once the record and its salt are erased it proves nothing about
the erased data; because content and metadata are committed to separately, metadata stays
verifiable when content is dropped (minimisation) as long as the content hash is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

import orjson

from distillguard.errors import RecordError
from distillguard.ledger.canonical import MAX_SAFE_INTEGER, canonical_json, format_number
from distillguard.records.model import Exchange

__all__ = [
    "CONTENT_FIELDS",
    "CONTENT_PREFIX",
    "META_PREFIX",
    "LeafCommitment",
    "commit_exchange",
    "commit_exchanges",
    "commit_record",
    "content_hash",
    "leaf_data",
    "meta_hash",
    "split_record",
]

#: The fields of an exchange that hold user content (committed to separately).
CONTENT_FIELDS: Final = ("messages", "response", "reasoning")
#: Domain-separation prefix of the metadata commitment.
META_PREFIX: Final = b"distillguard/meta/v1\x00"
#: Domain-separation prefix of the content commitment.
CONTENT_PREFIX: Final = b"distillguard/content/v1\x00"

_sha256 = hashlib.sha256
_SORT = orjson.OPT_SORT_KEYS
_MIN_SALT = 16


@dataclass(frozen=True, slots=True)
class LeafCommitment:
    """The two commitments of one record, and the leaf they make."""

    meta_hash: bytes
    content_hash: bytes

    @property
    def leaf_data(self) -> bytes:
        """The leaf's data: ``JCS({"v": 1, "meta": ..., "content": ...})``."""
        return leaf_data(self.meta_hash, self.content_hash)

    @property
    def leaf_hash(self) -> bytes:
        """The RFC 9162 leaf hash ``SHA-256(0x00 || leaf data)``."""
        return _sha256(b"\x00" + self.leaf_data).digest()


def leaf_data(meta_hash: bytes, content_hash: bytes) -> bytes:
    """``JCS({"v": 1, "meta": hex(meta_hash), "content": hex(content_hash)})``.

    The keys sort as ``content``, ``meta``, ``v`` and hex digits need no escaping, so the
    canonical form is a fixed template.
    """
    return b'{"content":"%s","meta":"%s","v":1}' % (
        content_hash.hex().encode(),
        meta_hash.hex().encode(),
    )


def _check_salt(salt: bytes) -> None:
    if not isinstance(salt, bytes) or len(salt) < _MIN_SALT:
        raise RecordError(f"a record salt must be at least {_MIN_SALT} bytes", field="salt")


def split_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a format v1 record into its ``meta`` and ``content`` parts."""
    meta = {k: v for k, v in record.items() if k not in CONTENT_FIELDS}
    content = {k: record[k] for k in CONTENT_FIELDS if k in record}
    return meta, content


def meta_hash(meta: Mapping[str, Any], salt: bytes) -> bytes:
    """The salted commitment to a record's metadata."""
    _check_salt(salt)
    return _sha256(META_PREFIX + salt + canonical_json(dict(meta))).digest()


def content_hash(content: Mapping[str, Any], salt: bytes) -> bytes:
    """The salted commitment to a record's content."""
    _check_salt(salt)
    return _sha256(CONTENT_PREFIX + salt + canonical_json(dict(content))).digest()


def commit_record(record: Mapping[str, Any], salt: bytes) -> LeafCommitment:
    """The leaf commitment of a record given as its format v1 JSON form (reference path)."""
    meta, content = split_record(record)
    return LeafCommitment(meta_hash=meta_hash(meta, salt), content_hash=content_hash(content, salt))


def _safe_int(value: object) -> bool:
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _fast_parts(ex: Exchange) -> tuple[bytes, bytes] | None:
    """JCS(meta), JCS(content) built straight from the fields; None where not provably exact."""
    if ex.extra:
        return None
    ts = ex.ts
    if ts.tzinfo is not UTC or ts.year < 1000:
        return None
    if not (
        _safe_int(ex.prompt_tokens) and _safe_int(ex.completion_tokens) and _safe_int(ex.status)
    ):
        return None
    meta: dict[str, Any] = {
        "exchange_id": ex.exchange_id,
        "ts": ts.isoformat(timespec="microseconds")[:-6] + "Z",
        "account_id": ex.account_id,
        "ip": ex.ip,
        "model": ex.model,
        "prompt_tokens": ex.prompt_tokens,
        "completion_tokens": ex.completion_tokens,
        "status": ex.status,
    }
    if ex.api_key_id is not None:
        meta["api_key_id"] = ex.api_key_id
    if ex.agent_id is not None:
        meta["agent_id"] = ex.agent_id
    if ex.asn is not None:
        if not _safe_int(ex.asn):
            return None
        meta["asn"] = ex.asn
    if ex.user_agent is not None:
        meta["user_agent"] = ex.user_agent
    if ex.client_fingerprint is not None:
        meta["client_fingerprint"] = ex.client_fingerprint
    if ex.endpoint is not None:
        meta["endpoint"] = ex.endpoint
    if ex.tools is not None:
        meta["tools"] = list(ex.tools)
    if ex.latency_ms is not None:
        if type(ex.latency_ms) is float:
            meta["latency_ms"] = orjson.Fragment(format_number(ex.latency_ms).encode())
        elif _safe_int(ex.latency_ms):
            meta["latency_ms"] = ex.latency_ms
        else:
            return None
    messages = []
    for m in ex.messages:
        if m.extra:
            return None
        messages.append({"role": m.role, "content": m.content})
    content: dict[str, Any] = {"messages": messages}
    if ex.response is not None:
        content["response"] = ex.response
    if ex.reasoning is not None:
        content["reasoning"] = ex.reasoning
    try:
        return orjson.dumps(meta, option=_SORT), orjson.dumps(content, option=_SORT)
    except (orjson.JSONEncodeError, ValueError):
        return None


def commit_exchange(exchange: Exchange, salt: bytes) -> LeafCommitment:
    """The leaf commitment of an exchange (equal to ``commit_record(exchange.to_dict(), salt)``)."""
    _check_salt(salt)
    parts = _fast_parts(exchange)
    if parts is None:
        return commit_record(exchange.to_dict(), salt)
    meta_json, content_json = parts
    return LeafCommitment(
        meta_hash=_sha256(META_PREFIX + salt + meta_json).digest(),
        content_hash=_sha256(CONTENT_PREFIX + salt + content_json).digest(),
    )


def commit_exchanges(
    batch: Sequence[tuple[Exchange, bytes]],
) -> list[tuple[bytes, bytes]]:
    """``(leaf_hash, content_hash)`` of each ``(exchange, salt)``, in order (the hot path)."""
    out: list[tuple[bytes, bytes]] = []
    add = out.append
    sha = _sha256
    for exchange, salt in batch:
        _check_salt(salt)
        parts = _fast_parts(exchange)
        if parts is None:
            c = commit_record(exchange.to_dict(), salt)
            mh, ch = c.meta_hash, c.content_hash
        else:
            mh = sha(META_PREFIX + salt + parts[0]).digest()
            ch = sha(CONTENT_PREFIX + salt + parts[1]).digest()
        data = b'{"content":"%s","meta":"%s","v":1}' % (ch.hex().encode(), mh.hex().encode())
        add((sha(b"\x00" + data).digest(), ch))
    return out
