"""Hostile clients and a hostile upstream: never a 500, one bad exchange never fails another.

Issue 24, findings 4, 10 and 11 and the class fix "no 500 from input": property tests over the
request parsing (bodies, forwarded headers), the upstream's answers (whole and streamed) and the
recorder. Every outcome is a clear 4xx or a recorded 502; every stored exchange is a valid
format v1 record (it passes ``distillguard validate`` after ``export``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.errors import StorageError, UpstreamError
from distillguard.gateway import Gateway
from distillguard.gateway.agents import Agent, AgentFactory
from distillguard.gateway.recorder import ExchangeRecorder
from distillguard.gateway.testing import chat_body, client, make_settings
from distillguard.gateway.upstream import (
    CompletionRequest,
    CompletionResult,
    OpenAIUpstream,
    UpstreamCapabilities,
    check_result,
)
from distillguard.passport import Scopes, agent_jwk
from distillguard.records import Exchange, Message, exchange_from_mapping
from distillguard.store import open_store


def _stored(settings_: Settings) -> list[Exchange]:
    store = open_store(settings_.store_url)
    try:
        return [s.exchange for batch in store.iter_exchanges() for s in batch]
    finally:
        store.close()


def _valid_record(exchange: Exchange) -> None:
    """The exchange survives a JSON export and validation (format v1)."""
    exchange_from_mapping(orjson.loads(orjson.dumps(exchange.to_dict())))


def _gateway(tmp_path: Path, **gateway: Any) -> tuple[Settings, Gateway, Agent]:
    upstream = gateway.pop("upstream", None)
    s = make_settings(
        tmp_path,
        trust_forwarded_for=True,
        account_requests_per_minute=10_000_000,
        **gateway,
    )
    gw = create_gateway(s, upstream=upstream)
    agent = AgentFactory.from_settings(s, requests_per_minute=10_000_000).issue("acct-h")
    return s, gw, agent


# -- finding 4: one bad exchange fails its whole commit group -----------------------------------


@pytest.mark.parametrize("recorder", ["inline", "thread"])
def test_an_out_of_range_asn_fails_nobody(tmp_path: Path, recorder: str) -> None:
    """40 concurrent requests, one with X-Client-ASN 2**64: all 40 answered 200 and stored
    (the bad ASN is dropped); before, the group's insert overflowed and 38 innocents got 503."""
    s, gw, agent = _gateway(tmp_path, recorder=recorder, batch_max_delay_ms=20.0)

    async def go() -> list[httpx.Response]:
        async with client(gw, agent) as c:

            async def one(i: int) -> httpx.Response:
                headers = {"x-forwarded-for": f"203.0.113.{i}", "x-client-asn": "64500"}
                if i == 17:
                    headers["x-client-asn"] = str(2**64)
                return await c.post(
                    "/v1/chat/completions", json=chat_body(f"q {i}"), headers=headers
                )

            return list(await asyncio.gather(*(one(i) for i in range(40))))

    try:
        responses = asyncio.run(go())
    finally:
        gw.close_sync()
    assert [r.status_code for r in responses] == [200] * 40
    rows = {e.exchange_id: e for e in _stored(s)}
    assert len(rows) == 40
    bad = rows[responses[17].headers["x-distillguard-exchange-id"]]
    assert bad.asn is None and bad.ip == "203.0.113.17"
    assert sum(e.asn == 64500 for e in rows.values()) == 39
    for e in rows.values():
        _valid_record(e)


@pytest.mark.parametrize("inline", [True, False])
def test_a_group_whose_insert_fails_is_retried_one_by_one(tmp_path: Path, inline: bool) -> None:
    """The recorder itself: one exchange the database refuses (an ASN past 64 bits, built
    without the gateway's checks) fails alone; its group's other exchanges are committed."""
    rec = ExchangeRecorder(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        durability="batch",
        max_delay_s=0.02,
        inline=inline,
        fsync=False,
    )

    def exchange(i: int, asn: int) -> Exchange:
        return Exchange(
            exchange_id=f"gx_{i}",
            ts=datetime.now(UTC),
            account_id="acct-r",
            ip="198.51.100.1",
            model="stub-1",
            messages=(Message(role="user", content=f"m{i}"),),
            prompt_tokens=1,
            completion_tokens=1,
            status=200,
            asn=asn,
        )

    async def go() -> list[Any]:
        return list(
            await asyncio.gather(
                *(rec.record(exchange(i, 2**70 if i == 3 else 64500)) for i in range(8)),
                return_exceptions=True,
            )
        )

    try:
        outcomes = asyncio.run(go())
    finally:
        rec.close()
    assert isinstance(outcomes[3], StorageError)
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 3)
    assert rec.stats.failures == 2  # the group of eight, then the bad one alone
    assert rec.stats.transactions == 7
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert store.count("exchanges") == 7
        from distillguard.ledger import Ledger

        ledger = Ledger.open(store)
        assert ledger.size == 7  # the failed transactions left no leaf behind
        assert all(ledger.leaf_for(f"gx_{i}") is not None for i in range(8) if i != 3)
    finally:
        store.close()


# -- forwarded headers: what is refused, dropped or normalised ----------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "ip", "asn"),
    [
        ({"x-forwarded-for": "not-an-ip"}, 400, None, None),
        ({"x-forwarded-for": "1.2.3.4.5, 10.0.0.1"}, 400, None, None),
        ({"x-forwarded-for": "fe80::1%eth0"}, 400, None, None),
        ({"x-forwarded-for": " 2001:DB8::1 , 10.0.0.1"}, 200, "2001:db8::1", None),
        ({"x-client-asn": "-5"}, 200, "127.0.0.1", None),
        ({"x-client-asn": "9" * 5000}, 200, "127.0.0.1", None),
        ({"x-client-asn": "4294967296"}, 200, "127.0.0.1", None),
        ({"x-client-asn": "AS13335"}, 200, "127.0.0.1", 13335),
        ({"x-client-asn": "4294967295"}, 200, "127.0.0.1", 4294967295),
    ],
)
def test_forwarded_headers_are_refused_dropped_or_normalised(
    tmp_path: Path, headers: dict[str, str], status: int, ip: str | None, asn: int | None
) -> None:
    s, gw, agent = _gateway(tmp_path)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x"), headers=headers)

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == status, r.text
    rows = _stored(s)
    if status != 200:
        assert r.json()["error"]["code"] == "invalid_forwarded_for" and rows == []
        return
    assert len(rows) == 1 and rows[0].ip == ip and rows[0].asn == asn
    _valid_record(rows[0])


def test_control_characters_in_client_headers_are_not_stored(tmp_path: Path) -> None:
    s, gw, agent = _gateway(tmp_path)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post(
                "/v1/chat/completions",
                json=chat_body("x"),
                headers={b"user-agent": b"bot\x00/1\x7f", b"x-client-fingerprint": b"\x00\x01"},
            )

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == 200
    (row,) = _stored(s)
    assert row.user_agent == "bot/1"
    assert row.client_fingerprint is not None and row.client_fingerprint.startswith("h:")
    _valid_record(row)


# -- finding 11: deep nesting with a model-scoped passport ---------------------------------------


def test_deeply_nested_body_with_a_model_scope_is_a_400(tmp_path: Path) -> None:
    s, gw, _ = _gateway(tmp_path)
    factory = AgentFactory.from_settings(s)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    passport = factory.issuer.issue(
        account_id="acct-scoped",
        org_id="org-scoped",
        agent_public_jwk=agent_jwk(key.public_key()),
        scopes=Scopes(models=("stub-1",), endpoints=("/v1/*",)),
        rate=factory.rate,
        ttl_s=3600,
    )
    factory.registry.record_issued(passport)
    agent = Agent("acct-scoped", passport.passport_id, passport.token, key)
    nested = b'{"model": "stub-1", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}"

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(gw, agent) as c:
            headers = {"content-type": "application/json"}
            deep = await c.post("/v1/chat/completions", content=nested, headers=headers)
            other = await c.post(
                "/v1/chat/completions", json={**chat_body("x"), "model": "other-model"}
            )
            fine = await c.post("/v1/chat/completions", json=chat_body("x"))
            return deep, other, fine

    try:
        deep, other, fine = asyncio.run(go())
    finally:
        gw.close_sync()
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_request"
    assert other.status_code == 403  # the scope still holds
    assert fine.status_code == 200


# -- finding 10: a hostile upstream --------------------------------------------------------------


def _openai_upstream(handler: Callable[[httpx.Request], httpx.Response]) -> OpenAIUpstream:
    return OpenAIUpstream(
        base_url="http://model.test/v1",
        models=["stub-1"],
        retries=0,
        transport=httpx.MockTransport(handler),
    )


def _answer(usage: Any, content: Any = "fine words") -> bytes:
    body = {
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    return json.dumps(body).encode()  # json, not orjson: Infinity and lone surrogates pass


def _sse(usage: Any, deltas: tuple[str, ...] = ("one", " two")) -> bytes:
    events = [{"choices": [{"delta": {"content": d}, "finish_reason": None}]} for d in deltas] + [
        {"choices": [], "usage": usage}
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


_GARBAGE_USAGE: list[Any] = [
    {"prompt_tokens": float("inf"), "completion_tokens": 1},
    {"prompt_tokens": 1, "completion_tokens": float("nan")},
    {"prompt_tokens": 2**70, "completion_tokens": 1},
    {"prompt_tokens": -3, "completion_tokens": 1},
    {"prompt_tokens": "12", "completion_tokens": 1},
    [1, 2],
    "usage",
]


@pytest.mark.parametrize("usage", _GARBAGE_USAGE)
def test_garbage_usage_is_a_recorded_502(tmp_path: Path, usage: Any) -> None:
    upstream = _openai_upstream(lambda req: httpx.Response(200, content=_answer(usage)))
    s, gw, agent = _gateway(tmp_path, upstream=upstream)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x"))

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    (row,) = _stored(s)
    assert row.status == 502 and "usage" in row.extra["dg_error"]
    _valid_record(row)


def test_lone_surrogate_in_the_answer_is_a_recorded_502(tmp_path: Path) -> None:
    upstream = _openai_upstream(
        lambda req: httpx.Response(200, content=_answer(None, content="bad \ud800 text"))
    )
    s, gw, agent = _gateway(tmp_path, upstream=upstream)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x"))

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == 502
    (row,) = _stored(s)
    assert row.status == 502 and "surrogate" in row.extra["dg_error"]


@pytest.mark.parametrize("usage", _GARBAGE_USAGE)
def test_stream_with_garbage_usage_is_recorded_after_its_deltas(tmp_path: Path, usage: Any) -> None:
    """The deltas went out already; the final usage is garbage: the stream ends with an error
    event (no [DONE]) and the exchange is recorded as a 502 with the text that was sent."""
    upstream = _openai_upstream(
        lambda req: httpx.Response(
            200, content=_sse(usage), headers={"content-type": "text/event-stream"}
        )
    )
    s, gw, agent = _gateway(tmp_path, upstream=upstream)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x", stream=True))

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert r.status_code == 200  # the stream had started
    assert '"content":"one"' in r.text and "upstream_error" in r.text
    assert "[DONE]" not in r.text
    (row,) = _stored(s)
    assert row.status == 502 and row.response == "one two"
    _valid_record(row)


def test_stream_delta_with_a_lone_surrogate_is_a_recorded_502(tmp_path: Path) -> None:
    upstream = _openai_upstream(
        lambda req: httpx.Response(
            200,
            content=_sse(None, deltas=("fine", "bad \udc00")),
            headers={"content-type": "text/event-stream"},
        )
    )
    s, gw, agent = _gateway(tmp_path, upstream=upstream)

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x", stream=True))

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    assert "upstream_error" in r.text and "[DONE]" not in r.text
    (row,) = _stored(s)
    assert row.status == 502 and row.response == "fine"


class _BrokenUpstream:
    """An upstream (any implementation of the protocol) that misbehaves in odd ways."""

    name = "broken"
    capabilities = UpstreamCapabilities()

    def __init__(self, result: Any, *, fail: BaseException | None = None) -> None:
        self.result = result
        self.fail = fail

    def models(self) -> list[str]:
        return ["stub-1"]

    async def complete(self, request: CompletionRequest) -> Any:
        if self.fail is not None:
            raise self.fail
        return self.result

    async def stream(self, request: CompletionRequest) -> Any:
        yield "partial"
        if self.fail is not None:
            raise self.fail
        yield self.result

    def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("result", "fail"),
    [
        (None, OverflowError("cannot convert float infinity to integer")),
        (None, KeyError("usage")),
        (CompletionResult(text="x", prompt_tokens=-1, completion_tokens=1), None),
        (CompletionResult(text="x", prompt_tokens=1, completion_tokens=2**80), None),
        (CompletionResult(text="x\udfff", prompt_tokens=1, completion_tokens=1), None),
        (CompletionResult(text="x", prompt_tokens=1, completion_tokens=1, finish_reason=[]), None),  # type: ignore[arg-type]
        ({"text": "not a result"}, None),
    ],
)
def test_any_upstream_failure_is_a_recorded_502(
    tmp_path: Path, stream: bool, result: Any, fail: BaseException | None
) -> None:
    s, gw, agent = _gateway(tmp_path, upstream=_BrokenUpstream(result, fail=fail))

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post("/v1/chat/completions", json=chat_body("x", stream=stream))

    try:
        r = asyncio.run(go())
    finally:
        gw.close_sync()
    if stream:
        assert r.status_code == 200 and "upstream_error" in r.text and "[DONE]" not in r.text
    else:
        assert r.status_code == 502
    (row,) = _stored(s)
    assert row.status == 502
    assert row.response == ("partial" if stream else None)
    _valid_record(row)


# -- the class fix: property tests ---------------------------------------------------------------

_CHARS = st.characters() | st.characters(categories=["Cs"])  # lone surrogates included
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=_CHARS, max_size=20)
    | st.sampled_from(["stub-1", "user", "assistant", "system", "", "\ud800", "a\udfffb"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """Request bodies: mostly near-valid chat requests with hostile fields, some anything."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(_JSON)).encode()
    if kind == 2:
        depth = draw(st.sampled_from([1, 100, 1023, 1025, 2000, 5000]))
        return b'{"model": "stub-1", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    body: dict[str, Any] = {
        "model": "stub-1",
        "messages": [{"role": "user", "content": "hi"}],
    }
    for name in draw(
        st.sets(
            st.sampled_from(
                [
                    "model",
                    "messages",
                    "max_tokens",
                    "max_completion_tokens",
                    "temperature",
                    "stream",
                    "stream_options",
                    "role",
                    "content",
                ]
            ),
            max_size=3,
        )
    ):
        value = draw(_JSON)
        if name in ("role", "content"):
            body["messages"] = [{"role": "user", "content": "hi", name: value}]
        else:
            body[name] = value
    return json.dumps(body).encode()  # NaN, Infinity and lone surrogates as JSON text


_HEADER_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_FORWARDED = st.one_of(
    st.none(),
    _HEADER_BYTES,
    st.ip_addresses().map(lambda a: str(a).encode()),
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=_bodies(),
    fwd=_FORWARDED,
    asn=_FORWARDED,
    fingerprint=_FORWARDED,
    user_agent=_FORWARDED,
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
)
def test_no_request_gets_a_500_and_every_record_is_valid(
    tmp_path_factory: pytest.TempPathFactory,
    body: bytes,
    fwd: bytes | None,
    asn: bytes | None,
    fingerprint: bytes | None,
    user_agent: bytes | None,
    path: str,
) -> None:
    gw, s, agent, lp = _shared(tmp_path_factory)
    headers = {b"content-type": b"application/json"}
    for name, value in (
        (b"x-forwarded-for", fwd),
        (b"x-client-asn", asn),
        (b"x-client-fingerprint", fingerprint),
        (b"user-agent", user_agent),
    ):
        if value is not None:
            headers[name] = value

    async def go() -> httpx.Response:
        async with client(gw, agent) as c:
            return await c.post(path, content=body, headers=headers)

    r = lp.run_until_complete(go())
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code == 200:
        exchange_id = r.headers.get("x-distillguard-exchange-id")
        if exchange_id:
            store = open_store(s.store_url)
            try:
                stored = store.get_exchange(exchange_id)
            finally:
                store.close()
            assert stored is not None
            _valid_record(stored.exchange)


_SHARED: dict[str, Any] = {}


def _shared(
    factory: pytest.TempPathFactory,
) -> tuple[Gateway, Settings, Agent, asyncio.AbstractEventLoop]:
    """One gateway for all the examples of the property test (closed at the end of the module)."""
    if "gw" not in _SHARED:
        s, gw, agent = _gateway(factory.mktemp("prop"))
        _SHARED.update(gw=gw, settings=s, agent=agent, loop=asyncio.new_event_loop())
    return _SHARED["gw"], _SHARED["settings"], _SHARED["agent"], _SHARED["loop"]


@pytest.fixture(scope="module", autouse=True)
def _close_shared() -> Iterator[None]:
    yield
    if "gw" in _SHARED:
        _SHARED["gw"].close_sync()
        _SHARED["loop"].close()
        _SHARED.clear()


_USAGE_VALUES = st.one_of(
    st.none(),
    _JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": _SCALARS,
            "completion_tokens": _SCALARS,
        },
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    usage=_USAGE_VALUES,
    content=_SCALARS,
    finish=_SCALARS,
    deltas=st.lists(st.text(alphabet=_CHARS, max_size=6), max_size=4),
)
def test_upstream_parsing_is_a_valid_result_or_an_upstream_error(
    usage: Any, content: Any, finish: Any, deltas: list[str]
) -> None:
    """Whatever JSON an upstream sends (whole or streamed), the parser gives a result the
    gateway can store and send, or an UpstreamError; nothing else."""
    answer = {
        "choices": [{"message": {"content": content}, "finish_reason": finish}],
        "usage": usage,
    }
    events = [{"choices": [{"delta": {"content": d}, "finish_reason": finish}]} for d in deltas]
    events.append({"choices": [], "usage": usage})
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    stream += b"data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        if b'"stream": true' in request.content or b'"stream":true' in request.content:
            return httpx.Response(200, content=stream)
        return httpx.Response(200, content=json.dumps(answer).encode())

    up = _openai_upstream(handler)
    req = CompletionRequest(kind="chat", model="stub-1", messages=(("user", "hi there"),))

    async def go() -> None:
        try:
            for outcome in [await up.complete(req)]:
                check_result(outcome)
                orjson.dumps(outcome.text)
        except UpstreamError:
            pass
        try:
            async for event in up.stream(req):
                if isinstance(event, CompletionResult):
                    check_result(event)
                else:
                    orjson.dumps(event)  # every delta can be sent
        except UpstreamError:
            pass
        await up.aclose()

    asyncio.run(go())


def _fuzz_target() -> Callable[[bytes], None]:
    import importlib.util

    path = Path(__file__).parents[3] / "fuzz" / "fuzz_gateway_request.py"
    spec = importlib.util.spec_from_file_location("fuzz_gateway_request", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Callable[[bytes], None] = module.test_one_input
    return target


_FUZZ = _fuzz_target()


@settings(max_examples=300, deadline=None)
@given(
    body=_bodies() | st.binary(max_size=200),
    fwd=_HEADER_BYTES,
    asn=_HEADER_BYTES | st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    fingerprint=_HEADER_BYTES,
)
def test_the_fuzz_target_holds(body: bytes, fwd: bytes, asn: bytes, fingerprint: bytes) -> None:
    """The request parser's fuzz target (fuzz/fuzz_gateway_request.py) on Hypothesis input."""
    _FUZZ(body.replace(b"\n\n", b"\n") + b"\n\n" + fwd + b"\n" + asn + b"\n" + fingerprint)


_BAD: dict[str, dict[str, Any]] = {
    "asn": {"asn": 2**64},
    "tokens": {"prompt_tokens": 2**63},
    "surrogate": {"response": "x\ud800"},
}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kinds=st.lists(st.sampled_from([None, *_BAD]), min_size=2, max_size=12),
    inline=st.booleans(),
)
def test_the_recorder_fails_only_the_bad_exchanges(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[str | None], inline: bool
) -> None:
    """Any mix of good and unstorable exchanges recorded together: exactly the unstorable
    ones fail, every good one is committed with its ledger leaf."""
    folder = tmp_path_factory.mktemp("rec")
    url = f"sqlite:///{folder / 'store.db'}"
    rec = ExchangeRecorder(
        store_url=url, durability="batch", max_delay_s=0.02, inline=inline, fsync=False
    )

    def exchange(i: int, kind: str | None) -> Exchange:
        fields: dict[str, Any] = {
            "exchange_id": f"gx_{i}",
            "ts": datetime.now(UTC),
            "account_id": "acct-r",
            "ip": "198.51.100.1",
            "model": "stub-1",
            "messages": (Message(role="user", content=f"m{i}"),),
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "status": 200,
        }
        fields.update(_BAD[kind] if kind else {})
        return Exchange(**fields)

    async def go() -> list[Any]:
        return list(
            await asyncio.gather(
                *(rec.record(exchange(i, k)) for i, k in enumerate(kinds)),
                return_exceptions=True,
            )
        )

    try:
        outcomes = asyncio.run(go())
    finally:
        rec.close()
    failed = [isinstance(o, StorageError) for o in outcomes]
    assert failed == [k is not None for k in kinds]
    store = open_store(url)
    try:
        from distillguard.ledger import Ledger

        assert store.count("exchanges") == Ledger.open(store).size == kinds.count(None)
    finally:
        store.close()


def test_hostile_exchanges_pass_validate_after_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``distillguard export`` then ``distillguard validate``: nothing quarantined, for the
    exchanges of hostile headers and of a hostile upstream (a streamed 502)."""
    from distillguard.cli.main import main

    upstream = _openai_upstream(
        lambda req: (
            httpx.Response(
                200,
                content=_sse({"prompt_tokens": -1}),
                headers={"content-type": "text/event-stream"},
            )
            if b'"stream"' in req.content
            else httpx.Response(200, content=_answer({"prompt_tokens": 3, "completion_tokens": 2}))
        )
    )
    s, gw, agent = _gateway(tmp_path, upstream=upstream)

    async def go() -> list[int]:
        async with client(gw, agent) as c:
            out = []
            for headers, stream in (
                ({b"x-client-asn": b"-1", b"user-agent": b"a\x00b"}, False),
                ({b"x-forwarded-for": b"::FFFF:10.0.0.1", b"x-client-asn": b"9" * 30}, False),
                ({b"x-client-fingerprint": b"\x01\x02"}, True),
            ):
                r = await c.post(
                    "/v1/chat/completions", json=chat_body("x", stream=stream), headers=headers
                )
                out.append(r.status_code)
            return out

    try:
        assert asyncio.run(go()) == [200, 200, 200]
    finally:
        gw.close_sync()
    assert sorted(e.status for e in _stored(s)) == [200, 200, 502]
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    out = tmp_path / "export"
    assert (
        main(["--quiet", "export", "--store", s.store_url, "--out", str(out), "--format", "jsonl"])
        == 0
    )
    capsys.readouterr()
    assert main(["--json", "validate", str(out), "--quarantine", str(tmp_path / "q.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["exchanges"]["accepted"] == 3 and report["exchanges"]["quarantined"] == 0
