"""JCS canonicalization against the reference, leaf commitments, checkpoint notes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import ProofError, RecordError, SignatureError
from distillguard.ledger import (
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from distillguard.ledger._canonical import canonical_json, format_number
from distillguard.ledger._checkpoint import note_key_hash
from distillguard.ledger._leaf import (
    CONTENT_PREFIX,
    META_PREFIX,
    _float_json,
    commit_exchange,
    commit_exchanges,
    commit_record,
    leaf_data,
)
from distillguard.records import Exchange, Message

from .conftest import make_exchange, signing_key

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)


def _reference(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        return None


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(RecordError):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_equals_rfc8785(x: float) -> None:
    assert format_number(x).encode() == rfc8785.dumps(x)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (1e21, "1e+21"), (1e-7, "1e-7"), (123e-20, "1.23e-18"), (-0.0, "0"), (0.5, "0.5")],
)
def test_format_number_known_values(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, 2**53, {1: "int key"}, "\ud800", {"x": object()}, b"bytes"]
)
def test_values_without_a_canonical_form_are_refused(bad: Any) -> None:
    with pytest.raises(RecordError):
        canonical_json(bad)


def test_non_bmp_keys_sort_by_utf16() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2, "a": 3}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\ufb01".encode()
    )


def test_leaf_matches_the_agreed_construction() -> None:
    ex = make_exchange(3)
    salt = bytes(range(32))
    record = ex.to_dict()
    meta = {k: v for k, v in record.items() if k not in ("messages", "response", "reasoning")}
    content: dict[str, Any] = {
        k: record[k] for k in ("messages", "response", "reasoning") if k in record
    }
    mh = hashlib.sha256(META_PREFIX + salt + rfc8785.dumps(meta)).digest()
    ch = hashlib.sha256(CONTENT_PREFIX + salt + rfc8785.dumps(content)).digest()
    data = rfc8785.dumps({"v": 1, "meta": mh.hex(), "content": ch.hex()})
    assert leaf_data(mh, ch) == data
    c = commit_exchange(ex, salt)
    assert (c.meta_hash, c.content_hash) == (mh, ch)
    assert c.leaf_hash == hashlib.sha256(b"\x00" + data).digest()


safe_text = st.text(max_size=30)
exchanges = st.builds(
    Exchange,
    exchange_id=safe_text,
    ts=st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    account_id=safe_text,
    ip=safe_text,
    model=safe_text,
    messages=st.lists(st.builds(Message, role=safe_text, content=safe_text), max_size=3).map(tuple),
    prompt_tokens=st.integers(-(2**60), 2**60),
    completion_tokens=st.integers(0, 10**6),
    status=st.integers(100, 599),
    asn=st.none() | st.integers(0, 2**32),
    endpoint=st.none() | safe_text,
    response=st.none() | safe_text,
    reasoning=st.none() | safe_text,
    tools=st.none() | st.lists(safe_text, max_size=3).map(tuple),
    latency_ms=st.none()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**60), 2**60)
    | st.sampled_from([0.0, -0.0, 1e16, 1e15, 1e-4, 9.9e-5, 123456789012345.6, 5e-324]),
    api_key_id=st.none() | safe_text,
    agent_id=st.none() | safe_text,
    user_agent=st.none() | safe_text,
    client_fingerprint=st.none() | safe_text,
)


@settings(max_examples=200, deadline=None)
@given(exchanges, st.binary(min_size=32, max_size=32))
def test_fast_leaf_path_equals_reference(ex: Exchange, salt: bytes) -> None:
    try:
        expected = commit_record(ex.to_dict(), salt)
    except RecordError:
        with pytest.raises(RecordError):
            commit_exchange(ex, salt)
        return
    assert commit_exchange(ex, salt) == expected
    assert commit_exchanges([(ex, salt)]) == [(expected.leaf_hash, expected.content_hash)]
    # And straight against the reference canonicalizer, not only our own canonical_json.
    record = ex.to_dict()
    meta = {k: v for k, v in record.items() if k not in ("messages", "response", "reasoning")}
    content: dict[str, Any] = {
        k: record[k] for k in ("messages", "response", "reasoning") if k in record
    }
    mh = hashlib.sha256(META_PREFIX + salt + rfc8785.dumps(meta)).digest()
    ch = hashlib.sha256(CONTENT_PREFIX + salt + rfc8785.dumps(content)).digest()
    assert (expected.meta_hash, expected.content_hash) == (mh, ch)


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_shortcut_equals_format_number(x: float) -> None:
    fast = _float_json(x)
    if fast is not None:  # where it answers, it is exactly the ECMAScript form
        assert fast == format_number(x).encode() == rfc8785.dumps(x)


@pytest.mark.parametrize(
    "x", [800.0, 812.5, 0.1, 1e-4, 123.456, 1e15, 999999999999999.9, -3.25, 2.0**52]
)
def test_float_shortcut_covers_the_usual_latencies(x: float) -> None:
    assert _float_json(x) == rfc8785.dumps(x)


def test_whole_second_timestamps_keep_six_fraction_digits() -> None:
    ex = dataclasses.replace(make_exchange(2), ts=datetime(2026, 2, 23, 14, 5, 9, tzinfo=UTC))
    salt = bytes(range(32))
    assert commit_exchange(ex, salt) == commit_record(ex.to_dict(), salt)
    assert ex.to_dict()["ts"] == "2026-02-23T14:05:09.000000Z"


def test_other_time_zones_take_the_reference_path() -> None:
    ex = make_exchange(1)
    local = ex.ts.astimezone(timezone(timedelta(hours=1)))
    moved = dataclasses.replace(ex, ts=local)
    salt = bytes(32)
    assert commit_exchange(moved, salt) == commit_record(moved.to_dict(), salt)


def test_short_salt_is_refused() -> None:
    with pytest.raises(RecordError, match="salt"):
        commit_exchange(make_exchange(1), b"short")


def test_checkpoint_note_round_trip_and_format() -> None:
    key = signing_key()
    root = hashlib.sha256(b"root").digest()
    when = datetime(2026, 2, 23, 14, 5, 9, tzinfo=UTC)
    cp = sign_checkpoint(origin="example.org/log", size=42, root_hash=root, key=key, timestamp=when)
    lines = cp.note.split("\n")
    assert lines[:5] == [
        "example.org/log",
        "42",
        base64.b64encode(root).decode(),
        "time 2026-02-23T14:05:09.000000Z",
        "",
    ]
    assert lines[5].startswith("\u2014 example.org/log ")
    blob = base64.b64decode(lines[5].split(" ")[2])
    assert blob[:4] == note_key_hash("example.org/log", key.public_key())
    key.public_key().verify(blob[4:], cp.body.encode())
    parsed = parse_checkpoint(cp.note)
    assert (parsed.size, parsed.root_hash, parsed.timestamp) == (42, root, when)
    assert verify_checkpoint(cp.note, public_keys=[key.public_key()]).kid == key.kid


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n.replace("\n42\n", "\n43\n"),
        lambda n: n.replace("\n42\n", "\n042\n"),
        lambda n: n.replace("time 2026", "time 2027"),
        lambda n: n.replace("example.org/log\n", "example.org/other\n", 1),
    ],
)
def test_altered_checkpoints_fail(mutate: Any) -> None:
    key = signing_key()
    cp = sign_checkpoint(
        origin="example.org/log", size=42, root_hash=bytes(32), key=key, timestamp=None
    )
    with pytest.raises((ProofError, SignatureError)):
        verify_checkpoint(mutate(cp.note), public_keys=[key.public_key()])


@pytest.mark.parametrize(
    "note",
    [
        "",
        "origin\n1\n",
        "origin\n1\nAAAA\n\n\u2014 origin AAAAAAAA\n",
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 origin AAAAAAAA\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n- origin AAAAAAAA\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 origin !!\n",
    ],
)
def test_malformed_checkpoints_are_refused(note: str) -> None:
    with pytest.raises(ProofError, match="malformed"):
        parse_checkpoint(note)
