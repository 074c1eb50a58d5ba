"""The gateway: an OpenAI-compatible service that authenticates, limits, records, watermarks and
scores every exchange.

* :class:`Gateway`: the ASGI app; :func:`distillguard.app.create_gateway` (the application
  layer) builds it from the configuration and ``distillguard serve`` runs it on uvicorn.
* :mod:`~distillguard.gateway.core`: the request path of ``/v1/chat/completions``,
  ``/v1/completions`` and ``/v1/models``.
* :mod:`~distillguard.gateway.upstream`: the model behind one interface (stub, any
  OpenAI-compatible URL with timeouts, retries and a circuit breaker, a local transformers model).
* :mod:`~distillguard.gateway.ratelimit`: GCRA limits on requests and tokens, in process or in
  Redis.
* :mod:`~distillguard.gateway.recorder`: exchanges into the store and the ledger before the
  answer (``sync`` or ``batch`` durability).
* :mod:`~distillguard.gateway.policy`: online risk, policy actions and their records.
* :mod:`~distillguard.gateway.metrics`, :mod:`~distillguard.gateway.alerts`: Prometheus
  metrics, webhook alerts. The admin API is a door of the application layer
  (:mod:`distillguard.app.admin`).

See ``docs/gateway.md``.
"""

from __future__ import annotations

from distillguard.gateway._http import ASGIApp, Receive, Scope, Send
from distillguard.gateway._server import HeadLimitedHttpToolsProtocol, uvicorn_options
from distillguard.gateway.app import OPENAI_PATHS, Gateway
from distillguard.gateway.core import AggregateLimit, GatewayCore, LimitsConfig, PostHocWatermarker
from distillguard.gateway.policy import (
    Action,
    ActionDecision,
    NullScorer,
    OnlineScorer,
    Override,
    Policy,
    PolicyThresholds,
    RiskScore,
)
from distillguard.gateway.ratelimit import (
    Check,
    Decision,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from distillguard.gateway.recorder import ExchangeRecorder, RecordedExchange
from distillguard.gateway.upstream import (
    CircuitBreaker,
    CompletionRequest,
    CompletionResult,
    LocalModelUpstream,
    OpenAIUpstream,
    StubUpstream,
    Upstream,
    stub_app,
)

__all__ = [
    "OPENAI_PATHS",
    "ASGIApp",
    "Action",
    "ActionDecision",
    "AggregateLimit",
    "Check",
    "CircuitBreaker",
    "CompletionRequest",
    "CompletionResult",
    "Decision",
    "ExchangeRecorder",
    "Gateway",
    "GatewayCore",
    "HeadLimitedHttpToolsProtocol",
    "Limit",
    "LimitsConfig",
    "LocalModelUpstream",
    "MemoryRateLimiter",
    "NullScorer",
    "OnlineScorer",
    "OpenAIUpstream",
    "Override",
    "Policy",
    "PolicyThresholds",
    "PostHocWatermarker",
    "RateLimiter",
    "Receive",
    "RecordedExchange",
    "RedisRateLimiter",
    "RiskScore",
    "Scope",
    "Send",
    "StubUpstream",
    "Upstream",
    "stub_app",
    "uvicorn_options",
]
