"""What a ledger leaf commits to: salted commitments to a record's metadata and content.

A record (``Exchange.to_dict()``, format v1) is split in two:

* ``meta``: every field except the content fields ``messages``, ``response`` and ``reasoning``;
* ``content``: ``{"messages": ..., "response": ..., "reasoning": ...}`` (absent fields omitted).

Each part is committed to with the record's random salt (32 bytes, stored with the record)::

    meta_hash    = SHA-256(b"distillguard/meta/v1\\x00"    || salt || JCS(meta))
    content_hash = SHA-256(b"distillguard/content/v1\\x00" || salt || JCS(content))
    leaf data    = JCS({"v": 1, "meta": hex(meta_hash), "content": hex(content_hash)})
    leaf hash    = SHA-256(0x00 || leaf data)                      (RFC 9162)

JCS is RFC 8785 (:mod:`distillguard.ledger._canonical`). Because of the salt, a leaf reveals
nothing about its record, and once the record and its salt are erased it proves nothing about
the erased data; because content and metadata are committed to separately, metadata stays
verifiable when content is dropped (minimisation) as long as the content hash is kept.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

import orjson

from distillguard.errors import RecordError
from distillguard.ledger._canonical import MAX_SAFE_INTEGER, canonical_json, format_number
from distillguard.records import Exchange

__all__ = [
    "CONTENT_FIELDS",
    "CONTENT_PREFIX",
    "META_PREFIX",
    "LeafCommitment",
    "commit_exchange",
    "commit_exchanges",
    "commit_parts",
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
_dumps = orjson.dumps
_Fragment = orjson.Fragment
_hex = binascii.hexlify
_MAX_INT = MAX_SAFE_INTEGER
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


def _float_json(value: float) -> bytes | None:
    """``format_number(value)`` for the common case, or None.

    Where Python's shortest round-trip ``repr`` uses no exponent (``1e-4 <= |x| < 1e16``) it has
    the same digits as ECMAScript's ``Number.toString`` and the value lies in the range where
    ECMAScript writes no exponent either; the two differ only in Python's trailing ``.0``.
    """
    text = repr(value)
    if "e" in text or "n" in text or value == 0:  # exponent, nan/inf, or -0.0
        return None
    if text.endswith(".0"):
        text = text[:-2]
    return text.encode()


def _fast_parts(ex: Exchange) -> tuple[bytes, bytes] | None:
    """JCS(meta), JCS(content) built straight from the fields; None where not provably exact.

    The dicts are built with their keys already in RFC 8785 order (all keys are ASCII, so code
    point order is UTF-16 order) and serialized in one orjson call each, without re-sorting.
    """
    if ex.extra:
        return None
    ts = ex.ts
    if ts.tzinfo is not UTC or ts.year < 1000:
        return None
    prompt_tokens = ex.prompt_tokens
    completion_tokens = ex.completion_tokens
    status = ex.status
    if not (
        type(prompt_tokens) is int
        and type(completion_tokens) is int
        and type(status) is int
        and -_MAX_INT <= prompt_tokens <= _MAX_INT
        and -_MAX_INT <= completion_tokens <= _MAX_INT
        and -_MAX_INT <= status <= _MAX_INT
    ):
        return None
    # Keys in sorted order: account_id agent_id api_key_id asn client_fingerprint
    # completion_tokens endpoint exchange_id ip latency_ms model prompt_tokens status tools ts
    # user_agent.
    meta: dict[str, Any] = {"account_id": ex.account_id}
    if ex.agent_id is not None:
        meta["agent_id"] = ex.agent_id
    if ex.api_key_id is not None:
        meta["api_key_id"] = ex.api_key_id
    asn = ex.asn
    if asn is not None:
        if type(asn) is not int or not -_MAX_INT <= asn <= _MAX_INT:
            return None
        meta["asn"] = asn
    if ex.client_fingerprint is not None:
        meta["client_fingerprint"] = ex.client_fingerprint
    meta["completion_tokens"] = completion_tokens
    if ex.endpoint is not None:
        meta["endpoint"] = ex.endpoint
    meta["exchange_id"] = ex.exchange_id
    meta["ip"] = ex.ip
    latency = ex.latency_ms
    if latency is not None:
        if type(latency) is float:
            number = _float_json(latency)
            if number is None:
                try:
                    number = format_number(latency).encode()
                except ValueError:
                    return None
            meta["latency_ms"] = _Fragment(number)
        elif type(latency) is int and -_MAX_INT <= latency <= _MAX_INT:
            meta["latency_ms"] = latency
        else:
            return None
    meta["model"] = ex.model
    meta["prompt_tokens"] = prompt_tokens
    meta["status"] = status
    tools = ex.tools
    if tools is not None:
        if not all(type(t) is str for t in tools):
            return None
        meta["tools"] = list(tools)
    stamp = ts.isoformat()  # "...+00:00"; without a fraction when the microseconds are 0
    meta["ts"] = stamp[:-6] + "Z" if ts.microsecond else stamp[:-6] + ".000000Z"
    if ex.user_agent is not None:
        meta["user_agent"] = ex.user_agent
    messages: list[dict[str, str]] = []
    add = messages.append
    for m in ex.messages:
        if m.extra:
            return None
        add({"content": m.content, "role": m.role})
    content: dict[str, Any] = {"messages": messages}
    if ex.reasoning is not None:
        content["reasoning"] = ex.reasoning
    if ex.response is not None:
        content["response"] = ex.response
    try:
        return _dumps(meta), _dumps(content)
    except (orjson.JSONEncodeError, ValueError):
        return None


def commit_parts(meta_json: bytes, content_json: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """``(leaf hash, content hash)`` of a record given as its two canonical parts,
    ``JCS(meta)`` and ``JCS(content)`` (the bulk ingest path encodes them with the row; see
    :mod:`distillguard.records._bulk`); equal to ``commit_record``'s for the same record."""
    if type(salt) is not bytes or len(salt) < _MIN_SALT:
        _check_salt(salt)
    mh = _sha256(META_PREFIX + salt + meta_json).digest()
    ch = _sha256(CONTENT_PREFIX + salt + content_json).digest()
    return _sha256(b'\x00{"content":"%s","meta":"%s","v":1}' % (_hex(ch), _hex(mh))).digest(), ch


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
    fast = _fast_parts
    meta_prefix = META_PREFIX
    content_prefix = CONTENT_PREFIX
    for exchange, salt in batch:
        if type(salt) is not bytes or len(salt) < _MIN_SALT:
            _check_salt(salt)
        parts = fast(exchange)
        if parts is None:
            c = commit_record(exchange.to_dict(), salt)
            mh, ch = c.meta_hash, c.content_hash
        else:
            mh = sha(meta_prefix + salt + parts[0]).digest()
            ch = sha(content_prefix + salt + parts[1]).digest()
        add((sha(b'\x00{"content":"%s","meta":"%s","v":1}' % (_hex(ch), _hex(mh))).digest(), ch))
    return out
