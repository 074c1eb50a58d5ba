"""The bulk path of exchange validation: one pass over a decoded JSONL record that proves it
valid and encodes it for the store and the ledger, without building the frozen record.

:func:`prepare_exchange` accepts only records it can prove valid with a handful of cheap
checks (the shape every well-formed log has: RFC 3339 UTC timestamps with ``Z``, IP addresses
``inet_pton`` reads, integers within 2**53, messages of exactly ``role`` and ``content``, no
fields outside format v1). For everything else it returns None and the caller validates the
record with :func:`~distillguard.records._validate.exchange_from_mapping`, which gives the verdict
and, for a broken record, the field and reason that go to the quarantine. So the two paths
never disagree on a verdict or a quarantine entry: this one only decides *that a record is
valid*, never why one is not. Tests hold it to that on Hypothesis records (valid and broken):
whatever it accepts, ``exchange_from_mapping`` accepts too, and it encodes the same row and the
same canonical parts as the record path.

What it encodes, from the same parsed values:

* the stored columns of the record in :data:`~distillguard.records._model.EXCHANGE_FIELDS`
  order, then ``extra`` (always None here): the timestamp as microseconds since the epoch,
  ``messages``, ``response``, ``reasoning`` and ``tools`` as JSON text, exactly as the store's
  row of the frozen record;
* the RFC 8785 (JCS) form of the record's metadata and of its content, the two byte strings the
  ledger's salted commitments hash (``distillguard.ledger._leaf``).
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from distillguard.records._model import EXCHANGE_FIELDS

__all__ = ["PreparedExchange", "prepare_exchange"]

#: Integers above this are not exact JSON numbers for RFC 8785 (the record path handles them).
_MAX_SAFE: Final = 2**53 - 1
_KNOWN: Final = frozenset(EXCHANGE_FIELDS)
#: The one timestamp shape taken here: ASCII digits, upper-case ``T`` and ``Z``, at most six
#: fraction digits (so nothing is truncated and the instant is already UTC).
_TS_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INF: Final = float("inf")
_NO_FRACTION: Final = ".000000Z"


class PreparedExchange:
    """An exchange proven valid and encoded: ``values`` (the stored columns in format order, then
    ``extra``), ``meta`` and ``content`` (the JCS bytes the ledger commits to)."""

    __slots__ = ("account_id", "content", "exchange_id", "meta", "values")

    def __init__(
        self,
        exchange_id: str,
        account_id: str,
        values: tuple[Any, ...],
        meta: bytes,
        content: bytes,
    ) -> None:
        self.exchange_id = exchange_id
        self.account_id = account_id
        self.values = values
        self.meta = meta
        self.content = content

    def __repr__(self) -> str:
        return f"PreparedExchange({self.exchange_id!r})"


def _float_json(value: float) -> bytes | None:
    """RFC 8785's form of a float where Python's ``repr`` has the same digits, else None.

    Where ``repr`` uses no exponent (``1e-4 <= |x| < 1e16``) it has the digits of ECMAScript's
    ``Number.prototype.toString`` and differs only by a trailing ``.0``.
    """
    text = repr(value)
    if "e" in text or "n" in text or value == 0:  # exponent, nan/inf, or (-)0.0
        return None
    if text.endswith(".0"):
        text = text[:-2]
    return text.encode()


def prepare_exchange(obj: dict[str, Any]) -> PreparedExchange | None:
    """The record encoded for the store and the ledger if it is provably valid, else None (the
    caller then validates it with ``exchange_from_mapping``, which accepts it or says why not).

    Straight-line code: it runs once per record on the ingest hot path.
    """
    if not obj.keys() <= _KNOWN:  # extra fields: the record path keeps them
        return None
    get = obj.get
    eid = get("exchange_id")
    acc = get("account_id")
    model = get("model")
    key = get("api_key_id")
    agent = get("agent_id")
    ua = get("user_agent")
    cfp = get("client_fingerprint")
    ep = get("endpoint")
    if (
        type(eid) is not str
        or type(acc) is not str
        or type(model) is not str
        or not eid
        or not acc
        or not model
        or "\x00" in eid
        or "\x00" in acc
        or "\x00" in model
    ):
        return None
    for value in (key, agent, ua, cfp, ep):
        if value is not None and (type(value) is not str or "\x00" in value):
            return None
    ts = get("ts")
    if type(ts) is not str or _TS_UTC.fullmatch(ts) is None:
        return None
    try:
        dt = datetime.fromisoformat(ts)  # ranges: month 13, hour 25, February 30 ...
    except ValueError:
        return None
    if dt.year < 1000:  # RFC 8785 writes such years like the record path; leave them to it
        return None
    ip = get("ip")
    if type(ip) is not str:
        return None
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except (OSError, ValueError):
        return None
    pt = get("prompt_tokens")
    ct = get("completion_tokens")
    status = get("status")
    if (
        type(pt) is not int
        or type(ct) is not int
        or type(status) is not int
        or not 0 <= pt <= _MAX_SAFE
        or not 0 <= ct <= _MAX_SAFE
        or not 100 <= status <= 599
    ):
        return None
    asn = get("asn")
    if asn is not None and (type(asn) is not int or not 0 <= asn <= _MAX_SAFE):
        return None
    latency = get("latency_ms")
    latency_json: bytes | None = None
    if latency is not None:
        if type(latency) is int:
            latency = float(latency)
        elif type(latency) is not float:
            return None
        if not latency >= 0.0 or latency == _INF:
            return None
        latency_json = _float_json(latency)
        if latency_json is None:
            return None
    tools = get("tools")
    if tools is not None:
        if type(tools) is not list:
            return None
        for tool in tools:
            if type(tool) is not str:
                return None
    response = get("response")
    reasoning = get("reasoning")
    if (response is not None and type(response) is not str) or (
        reasoning is not None and type(reasoning) is not str
    ):
        return None
    messages = get("messages")
    if type(messages) is not list:
        return None
    stored: list[dict[str, str]] = []
    canonical: list[dict[str, str]] = []
    for m in messages:
        if type(m) is not dict or len(m) != 2:
            return None
        role = m.get("role")
        text = m.get("content")
        if type(role) is not str or type(text) is not str:
            return None
        stored.append({"role": role, "content": text})
        canonical.append({"content": text, "role": role})

    # JCS of the metadata: keys inserted in RFC 8785 order (all ASCII), serialized as they are.
    meta: dict[str, Any] = {"account_id": acc}
    if agent is not None:
        meta["agent_id"] = agent
    if key is not None:
        meta["api_key_id"] = key
    if asn is not None:
        meta["asn"] = asn
    if cfp is not None:
        meta["client_fingerprint"] = cfp
    meta["completion_tokens"] = ct
    if ep is not None:
        meta["endpoint"] = ep
    meta["exchange_id"] = eid
    meta["ip"] = ip
    if latency_json is not None:
        meta["latency_ms"] = orjson.Fragment(latency_json)
    meta["model"] = model
    meta["prompt_tokens"] = pt
    meta["status"] = status
    if tools is not None:
        meta["tools"] = tools
    # The canonical form has six fraction digits; the text is UTC with at most six already.
    meta["ts"] = (
        ts[:19] + "." + ts[20:-1].ljust(6, "0") + "Z" if len(ts) > 20 else ts[:19] + _NO_FRACTION
    )
    if ua is not None:
        meta["user_agent"] = ua
    dumps = orjson.dumps
    try:
        meta_json = dumps(meta)
        # JCS of the content, {"messages": ..., "reasoning": ..., "response": ...} (keys in
        # order, absent ones omitted), joined from the parts the row stores too.
        content_json = b'{"messages":' + dumps(canonical)
        reasoning_json = response_json = None
        if reasoning is not None:
            reasoning_json = dumps(reasoning)
            content_json += b',"reasoning":' + reasoning_json
        if response is not None:
            response_json = dumps(response)
            content_json += b',"response":' + response_json
        content_json += b"}"
        messages_text = dumps(stored).decode()
        tools_text = None if tools is None else dumps(tools).decode()
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: the record path decides
        return None
    delta = dt - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    values = (
        eid,
        micros,
        acc,
        key,
        agent,
        ip,
        asn,
        ua,
        cfp,
        model,
        ep,
        messages_text,
        None if response_json is None else response_json.decode(),
        None if reasoning_json is None else reasoning_json.decode(),
        tools_text,
        pt,
        ct,
        status,
        latency,
        None,  # extra
    )
    return PreparedExchange(eid, acc, values, meta_json, content_json)
