"""Prometheus metrics of the gateway (one registry per gateway, so several can live in a process).

Names (all prefixed ``distillguard_gateway_``):

* ``requests_total{endpoint,status}``: answered requests;
* ``request_seconds{endpoint}``: latency histogram, from the first byte in to the last byte out;
* ``rejections_total{reason}``: refused requests by reason (passport reasons, ``rate_limited``,
  ``blocked``, ``reverify``, ``body_too_large``, ``upstream_error``, ``upstream_timeout``...);
* ``actions_total{action,source}``: policy actions taken;
* ``upstream_seconds``: time spent in the model;
* ``record_batch_size``: exchanges per store transaction;
* ``alerts_total{outcome}``: webhook alerts delivered or dead-lettered;
* ``exchanges_total{model,outcome}``: recorded exchanges;
* ``tokens_total{model,kind,outcome}``: tokens of recorded exchanges, ``kind`` ``prompt`` or
  ``completion``. ``outcome`` (:func:`outcome_of`): ``ok``, ``rate_limited``, ``refused``
  (blocked, re-verification), ``client_error`` (another 4xx, an upstream's 400 passed on),
  ``upstream_error`` (5xx). ``model`` is the requested model; after :data:`MAX_MODELS`
  distinct names the rest count as ``other`` (a client cannot grow the label set without end);
* ``spool_bytes``, ``spool_records``: exchanges in the local spool not yet replayed into the
  store (failure mode open), ``spool_max_bytes`` its bound; ``spooled_total`` and
  ``replayed_total``: exchanges written to it and replayed from it;
* ``degraded{dependency}``: 1 while ``store``, ``rate_limits`` or ``nonces`` is unreachable and
  this process serves on its fallback (spool, its own limits, its own nonce cache).

Several worker processes (``distillguard serve --workers N``): each process writes its values to
memory-mapped files in ``$PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode,
chosen when that variable is set before ``prometheus_client`` is first imported), and
:meth:`GatewayMetrics.exposition` of whichever worker answers the scrape sums every worker's
files: counters and histograms add up over workers, including workers that have exited.
:func:`prepare_multiprocess` makes a fresh folder and sets the variable; ``serve`` calls it before
it starts the workers. Several replicas (containers, pods) are scraped one by one, each its own
target; a ``sum by (...)`` over ``instance`` aggregates them (see ``deploy/prometheus.yml``).

Misfires: in multiprocess mode two :class:`GatewayMetrics` in one process write the same files
and each overwrites the other's counts: one gateway per worker process. A folder reused across
server starts adds the old counts to the new ones: :func:`prepare_multiprocess` empties it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from distillguard.records import Exchange

__all__ = [
    "CONTENT_TYPE",
    "MAX_MODELS",
    "MULTIPROC_ENV",
    "GatewayMetrics",
    "multiprocess_dir",
    "outcome_of",
    "prepare_multiprocess",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Media type of the ``/metrics`` exposition."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches prometheus_client to multiprocess mode."""

MAX_MODELS = 64
"""Distinct ``model`` label values kept; later names count as ``other``."""

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def multiprocess_dir() -> Path | None:
    """The multiprocess folder this process writes to, or None (one registry per process)."""
    value = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    return Path(value) if value else None


def prepare_multiprocess(directory: Path | None = None) -> Path:
    """Make an empty multiprocess folder and export it in ``$PROMETHEUS_MULTIPROC_DIR``.

    Call it in the parent process before it starts the workers (they inherit the variable and
    import prometheus_client after it is set). The parent's own metrics objects, if it made any,
    stay in-process: only processes started afterwards share the folder.

    Args:
        directory: the folder (emptied first; a folder per server, never one shared by two
            servers). Default: a new temporary folder.

    Returns:
        The folder.
    """
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="distillguard-metrics-"))
    else:
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def outcome_of(status: int) -> str:
    """The ``outcome`` label of a recorded exchange with HTTP ``status``."""
    if status < 400:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "refused"
    if status < 500:
        return "client_error"
    return "upstream_error"


class GatewayMetrics:
    """The gateway's metrics in their own :class:`CollectorRegistry`.

    In multiprocess mode (see the module) the values live in the shared folder and
    :meth:`exposition` reads every worker's.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = multiprocess_dir()
        p = "distillguard_gateway_"
        self.requests = Counter(
            p + "requests", "Answered requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            p + "request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            p + "rejections", "Refused requests by reason", ["reason"], registry=self.registry
        )
        self.actions = Counter(
            p + "actions", "Policy actions taken", ["action", "source"], registry=self.registry
        )
        self.upstream = Histogram(
            p + "upstream_seconds",
            "Time in the upstream model",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            p + "record_batch_size",
            "Exchanges per store transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.alerts = Counter(
            p + "alerts", "Webhook alerts by outcome", ["outcome"], registry=self.registry
        )
        self.exchanges = Counter(
            p + "exchanges",
            "Recorded exchanges by model and outcome",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            p + "tokens",
            "Tokens of recorded exchanges by model, kind (prompt, completion) and outcome",
            ["model", "kind", "outcome"],
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            p + "spool_bytes",
            "Bytes of spooled exchanges not yet replayed into the store",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.spool_records = Gauge(
            p + "spool_records",
            "Spooled exchanges not yet replayed into the store",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.spool_max_bytes = Gauge(
            p + "spool_max_bytes",
            "The spool's bound (failure mode open; 0: no spool)",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.spooled = Counter(
            p + "spooled", "Exchanges written to the spool", registry=self.registry
        )
        self.replayed = Counter(
            p + "replayed", "Exchanges replayed from the spool", registry=self.registry
        )
        self.degraded = Gauge(
            p + "degraded",
            "1 while a dependency is unreachable and this process serves on its fallback",
            ["dependency"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        for dependency in ("store", "rate_limits", "nonces"):
            self.degraded.labels(dependency).set(0)
        self._models: set[str] = set()
        self._models_lock = threading.Lock()

    def __repr__(self) -> str:
        mode = f"multiprocess={str(self._multiprocess)!r}" if self._multiprocess else "in-process"
        return f"GatewayMetrics({mode})"

    @property
    def multiprocess(self) -> bool:
        """Whether the values are shared with the other workers through the folder."""
        return self._multiprocess is not None

    def _model_label(self, model: str) -> str:
        if model in self._models:
            return model
        with self._models_lock:
            if len(self._models) >= MAX_MODELS:
                return "other"
            self._models.add(model)
        return model

    def observe_exchange(self, exchange: Exchange) -> None:
        """Count one recorded exchange and its tokens (by model and :func:`outcome_of`)."""
        self.count_tokens(
            model=exchange.model,
            status=exchange.status,
            prompt_tokens=exchange.prompt_tokens,
            completion_tokens=exchange.completion_tokens,
        )

    def count_tokens(
        self, *, model: str, status: int, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Count one exchange of ``model`` answered with ``status`` and its tokens."""
        label = self._model_label(model)
        outcome = outcome_of(status)
        self.exchanges.labels(label, outcome).inc()
        if prompt_tokens > 0:
            self.tokens.labels(label, "prompt", outcome).inc(prompt_tokens)
        if completion_tokens > 0:
            self.tokens.labels(label, "completion", outcome).inc(completion_tokens)

    def exposition(self) -> bytes:
        """The text exposition format: this registry, or in multiprocess mode every worker's."""
        if self._multiprocess is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self._multiprocess))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
