"""Live collection from an OpenAI-compatible endpoint: retries, resumption, bad endpoints."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.cli.main import main
from distillguard.errors import InputError, UpstreamError
from distillguard.fingerprint import ProbeSet, read_outputs
from distillguard.fingerprint.collect import (
    RetryPolicy,
    collect_outputs,
    collect_outputs_async,
    completion_text,
    read_collected,
)
from distillguard.fingerprint.testing import SuspectApp

FAST = RetryPolicy(max_attempts=8, base_delay_s=0.0, max_delay_s=0.0, timeout_s=5.0)


def _probes(n: int = 30) -> ProbeSet:
    return ProbeSet(
        name="tiny",
        prompt_ids=tuple(range(n)),
        instructions=tuple(f"Question number {i}?" for i in range(n)),
    )


def _echo(prompt: str) -> str:
    return f"Answer to: {prompt}"


def test_collects_every_prompt_in_alpaca_layout(tmp_path: Path) -> None:
    app = SuspectApp(answer=_echo)
    out = tmp_path / "s.jsonl.gz"
    result = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(),
        out=out,
        api_key="sk-test",
        transport=httpx.ASGITransport(app=app),
        datasets={0: "helpful_base"},
    )
    assert result.complete and result.collected == 30 and result.skipped == 0
    outputs = read_outputs(out)
    assert outputs.prompt_ids == tuple(range(30))
    assert outputs.texts[5] == "Answer to: Question number 5?"
    with gzip.open(out, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    first = next(r for r in rows if r["prompt_id"] == 0)
    assert set(first) >= {"prompt_id", "dataset", "instruction", "output"}
    assert first["dataset"] == "helpful_base"
    assert next(r for r in rows if r["prompt_id"] == 1)["dataset"] == "tiny"


def test_flaky_endpoint_is_retried(tmp_path: Path) -> None:
    app = SuspectApp(answer=_echo, fail_rate=0.4, seed=3)
    result = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(),
        out=tmp_path / "s.jsonl.gz",
        transport=httpx.ASGITransport(app=app),
        retry=FAST,
        concurrency=5,
        seed=1,
    )
    assert result.complete and result.collected == 30
    assert result.retries > 0
    assert app.requests == 30 + result.retries
    assert len(read_outputs(tmp_path / "s.jsonl.gz")) == 30


def test_failures_after_retries_are_left_for_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl.gz"
    flaky = SuspectApp(answer=_echo, fail_rate=0.7, seed=5)
    first = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(),
        out=out,
        transport=httpx.ASGITransport(app=flaky),
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0),
    )
    assert first.failed and not first.complete
    assert first.collected + len(first.failed) == 30
    assert "HTTP" in next(iter(first.errors.values()))
    good = SuspectApp(answer=_echo)
    second = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(),
        out=out,
        transport=httpx.ASGITransport(app=good),
    )
    assert second.complete
    assert second.skipped == first.collected
    assert good.requests == len(first.failed)
    assert len(read_outputs(out)) == 30


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl.gz"
    stalling = SuspectApp(answer=_echo, stall_after=12)

    async def interrupted() -> None:
        await asyncio.wait_for(
            collect_outputs_async(
                endpoint="http://suspect/v1",
                model="m",
                probes=_probes(),
                out=out,
                transport=httpx.ASGITransport(app=stalling),
                concurrency=3,
            ),
            timeout=1.0,
        )

    with pytest.raises(TimeoutError):
        asyncio.run(interrupted())
    done, broken = read_collected(out)
    assert len(done) == 12 and broken == 0
    # The tail of the file cut off mid-write: complete lines are kept, the rest re-collected.
    raw = out.read_bytes()
    out.write_bytes(raw + gzip.compress(b'{"prompt_id": 99, "outp')[:-9])
    fresh = SuspectApp(answer=_echo)
    result = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(),
        out=out,
        transport=httpx.ASGITransport(app=fresh),
    )
    assert result.skipped == 12 and result.collected == 18 and result.complete
    assert fresh.requests == 18
    assert set(fresh.answered).isdisjoint(stalling.answered)
    assert read_outputs(out).prompt_ids == tuple(range(30))


def test_garbage_responses_fail_cleanly(tmp_path: Path) -> None:
    result = collect_outputs(
        endpoint="http://suspect/v1",
        model="m",
        probes=_probes(5),
        out=tmp_path / "s.jsonl.gz",
        transport=httpx.ASGITransport(app=SuspectApp(answer=_echo, garbage=True)),
    )
    assert result.failed == (0, 1, 2, 3, 4) and result.collected == 0
    assert "not a chat completion" in result.errors[0]


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": {"content": 3}}]}],
)
def test_completion_text_rejects_bad_bodies(body: object) -> None:
    with pytest.raises(UpstreamError):
        completion_text(body)


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_completion_text_returns_the_content(text: str) -> None:
    assert completion_text({"choices": [{"message": {"content": text}}]}) == text


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_read_collected_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.jsonl.gz"
        path.write_bytes(data)
        rows, broken = read_collected(path)
        assert broken >= 0 and all(isinstance(k, int) for k in rows)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_arguments_and_unreachable_endpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="http"):
        collect_outputs(
            endpoint="ftp://x", model="m", probes=_probes(2), out=tmp_path / "a.jsonl.gz"
        )
    with pytest.raises(InputError, match=r"\.jsonl\.gz"):
        collect_outputs(
            endpoint="http://x/v1", model="m", probes=_probes(2), out=tmp_path / "a.txt"
        )
    result = collect_outputs(
        endpoint=f"http://127.0.0.1:{_closed_port()}/v1",
        model="m",
        probes=_probes(2),
        out=tmp_path / "a.jsonl.gz",
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0, timeout_s=2.0),
    )
    assert result.failed == (0, 1)
    assert "cannot reach" in result.errors[0]


def test_cli_collect_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes = tmp_path / "p.jsonl"
    probes.write_text(json.dumps({"prompt_id": 1, "instruction": "hi"}) + "\n")
    base = [
        "fingerprint",
        "collect",
        "--endpoint",
        f"http://127.0.0.1:{_closed_port()}/v1",
        "--model",
        "m",
        "--probe-set",
        str(probes),
        "--out",
        str(tmp_path / "o.jsonl.gz"),
        "--retries",
        "1",
    ]
    assert main(base) == 7  # UpstreamError: unreachable
    monkeypatch.delenv("DG_TEST_NO_SUCH_KEY", raising=False)
    assert main([*base, "--api-key-env", "DG_TEST_NO_SUCH_KEY"]) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main([*base[:-6], "--probe-set", str(bad), "--out", str(tmp_path / "o.jsonl.gz")]) == 4
