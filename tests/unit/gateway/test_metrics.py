"""Gateway metrics: token counters per model and outcome, and prometheus_client's multiprocess
mode (several worker processes, one scrape sees them all)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from distillguard.gateway.metrics import (
    MAX_MODELS,
    MULTIPROC_ENV,
    GatewayMetrics,
    outcome_of,
    prepare_multiprocess,
)


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@given(st.integers(100, 599))
def test_outcome_of_covers_every_status(status: int) -> None:
    outcome = outcome_of(status)
    assert outcome in {"ok", "rate_limited", "refused", "client_error", "upstream_error"}
    assert (outcome == "upstream_error") == (status >= 500)
    assert (outcome == "ok") == (status < 400)


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_tokens_by_model_and_outcome() -> None:
    m = GatewayMetrics()
    assert not m.multiprocess
    m.count_tokens(model="m1", status=200, prompt_tokens=10, completion_tokens=32)
    m.count_tokens(model="m1", status=200, prompt_tokens=5, completion_tokens=8)
    m.count_tokens(model="m1", status=429, prompt_tokens=7, completion_tokens=0)
    m.count_tokens(model="m2", status=502, prompt_tokens=3, completion_tokens=1)
    got = samples(m.exposition())
    t = "distillguard_gateway_tokens_total"
    e = "distillguard_gateway_exchanges_total"
    assert got[(t, key(model="m1", kind="prompt", outcome="ok"))] == 15
    assert got[(t, key(model="m1", kind="completion", outcome="ok"))] == 40
    assert got[(t, key(model="m1", kind="prompt", outcome="rate_limited"))] == 7
    assert (t, key(model="m1", kind="completion", outcome="rate_limited")) not in got
    assert got[(t, key(model="m2", kind="completion", outcome="upstream_error"))] == 1
    assert got[(e, key(model="m1", outcome="ok"))] == 2
    assert got[(e, key(model="m2", outcome="upstream_error"))] == 1


def test_model_labels_are_bounded() -> None:
    m = GatewayMetrics()
    for i in range(MAX_MODELS + 10):
        m.count_tokens(model=f"model-{i}", status=200, prompt_tokens=1, completion_tokens=1)
    models = {
        dict(labels)["model"]
        for (name, labels) in samples(m.exposition())
        if name == "distillguard_gateway_exchanges_total"
    }
    assert len(models) == MAX_MODELS + 1 and "other" in models
    other = samples(m.exposition())[
        ("distillguard_gateway_exchanges_total", (("model", "other"), ("outcome", "ok")))
    ]
    assert other == 10


_WORKER = textwrap.dedent(
    """
    import sys
    from distillguard.gateway.metrics import GatewayMetrics
    m = GatewayMetrics()
    assert m.multiprocess
    n = int(sys.argv[1])
    for i in range(n):
        m.requests.labels("/v1/chat/completions", "200").inc()
        m.latency.labels("/v1/chat/completions").observe(0.003)
        m.count_tokens(model="stub-1", status=200, prompt_tokens=4, completion_tokens=10)
    """
)

_SCRAPE = textwrap.dedent(
    """
    import sys
    from distillguard.gateway.metrics import GatewayMetrics
    sys.stdout.write(GatewayMetrics().exposition().decode())
    """
)


def _python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_multiprocess_scrape_sums_every_worker(tmp_path: Path) -> None:
    """Three worker processes (one already exited before the scrape, as after a restart) count
    into the shared folder; a scrape from a fourth process sees the sum of all of them."""
    folder = tmp_path / "mp"
    folder.mkdir()
    (folder / "stale.db").write_bytes(b"")  # prepare_multiprocess empties a reused folder
    saved = os.environ.get(MULTIPROC_ENV)
    try:
        prepare_multiprocess(folder)
        env = dict(os.environ)
    finally:
        if saved is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved
    assert env[MULTIPROC_ENV] == str(folder) and not (folder / "stale.db").exists()
    for n in (3, 5, 7):
        _python(_WORKER, str(n), env=env)
    got = samples(_python(_SCRAPE, env=env).encode())
    assert (
        got[
            (
                "distillguard_gateway_requests_total",
                (("endpoint", "/v1/chat/completions"), ("status", "200")),
            )
        ]
        == 15
    )
    assert (
        got[("distillguard_gateway_request_seconds_count", (("endpoint", "/v1/chat/completions"),))]
        == 15
    )
    tokens = "distillguard_gateway_tokens_total"
    assert got[(tokens, (("kind", "completion"), ("model", "stub-1"), ("outcome", "ok")))] == 150
    assert got[(tokens, (("kind", "prompt"), ("model", "stub-1"), ("outcome", "ok")))] == 60


def test_without_the_folder_each_process_has_its_own_registry(tmp_path: Path) -> None:
    """The contrast: without multiprocess mode a scrape reads only the answering process."""
    env = {k: v for k, v in os.environ.items() if k.upper() != MULTIPROC_ENV}
    code = _WORKER.replace("assert m.multiprocess", "assert not m.multiprocess") + (
        "\nsys.stdout.write(m.exposition().decode())\n"
    )
    got = samples(_python(code, "4", env=env).encode())
    assert (
        got[
            (
                "distillguard_gateway_requests_total",
                (("endpoint", "/v1/chat/completions"), ("status", "200")),
            )
        ]
        == 4
    )


def test_prepare_multiprocess_default_is_a_new_folder() -> None:
    saved = os.environ.get(MULTIPROC_ENV)
    try:
        a = prepare_multiprocess()
        b = prepare_multiprocess()
        assert a != b and a.is_dir() and not any(a.iterdir())
        assert os.environ[MULTIPROC_ENV] == str(b)
    finally:
        if saved is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved
        for d in (a, b):
            d.rmdir()
