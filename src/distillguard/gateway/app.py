"""Assembling the gateway: :class:`Gateway` (the ASGI app) and :func:`create_gateway` (from
the configuration).

Routes:

* ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``: the
  OpenAI-compatible API, served by :class:`~distillguard.gateway.core.GatewayCore` (a plain ASGI
  app reached without the web framework's routing, for speed);
* ``GET /.well-known/http-message-signatures-directory``: the key directory of agent keys;
* ``/admin/...``: the admin API (:mod:`~distillguard.gateway.admin`), bearer token;
* ``GET /metrics`` (Prometheus), ``GET /healthz`` (the process answers), ``GET /readyz`` (store,
  recorder and upstream usable);
* ``GET /openapi.json``: the OpenAPI schema of all of the above;
* ``/console``: reserved for the operator console, mounted with :meth:`Gateway.mount`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from distillguard.config import Settings
from distillguard.gateway._http import ASGIApp, Receive, Scope, Send
from distillguard.gateway.admin import AdminContext, admin_router, load_overrides
from distillguard.gateway.alerts import Alerter
from distillguard.gateway.core import (
    AccountDirectory,
    AggregateLimit,
    GatewayCore,
    LimitsConfig,
    PostHocWatermarker,
)
from distillguard.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from distillguard.gateway.policy import (
    NullScorer,
    OnlineScorer,
    Policy,
    PolicyThresholds,
    ensure_action_tables,
)
from distillguard.gateway.ratelimit import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from distillguard.gateway.recorder import ExchangeRecorder
from distillguard.gateway.upstream import (
    CircuitBreaker,
    LocalModelUpstream,
    OpenAIUpstream,
    StubUpstream,
    Upstream,
)
from distillguard.passport import DIRECTORY_PATH, KeyDirectory, RequestVerifier
from distillguard.store import Store, open_store

__all__ = [
    "OPENAI_PATHS",
    "Gateway",
    "app_from_environment",
    "check_workers",
    "create_gateway",
    "detected_workers",
    "openai_paths_schema",
    "tune_gc_for_serving",
]

logger = logging.getLogger(__name__)

OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
"""The paths served by the OpenAI-compatible core."""


def openai_paths_schema() -> dict[str, Any]:
    """OpenAPI path items of the OpenAI-compatible endpoints (served outside FastAPI routing)."""
    problem = {
        "description": "Refused (RFC 9457 problem document)",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    signed = [
        {
            "name": "DistillGuard-Passport",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
        },
        {"name": "Signature-Input", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Signature", "in": "header", "required": True, "schema": {"type": "string"}},
    ]
    errors = {str(s): problem for s in (400, 401, 403, 404, 408, 413, 421, 429, 502, 503, 504)}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
    }
    chat_body = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "items": message, "minItems": 1},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "stream": {"type": "boolean"},
        },
    }
    completion_body = {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string"},
            "prompt": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "stream": {"type": "boolean"},
        },
    }

    def op(summary: str, body: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tags": ["openai"],
            "summary": summary,
            "parameters": signed,
            "responses": {
                "200": {
                    "description": "The answer (JSON, or text/event-stream when stream=true)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **errors,
            },
        }
        if body is not None:
            out["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        return out

    return {
        "/v1/chat/completions": {"post": op("Chat completion (OpenAI-compatible)", chat_body)},
        "/v1/completions": {"post": op("Text completion (OpenAI-compatible)", completion_body)},
        "/v1/models": {"get": op("Models served", None)},
    }


_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}


class _AdminOnly:
    """Lets a request through only with the admin bearer token (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import hmac

        from distillguard.gateway._http import header, send_problem

        auth = header(scope, b"authorization") or b""
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token, self._token):
            await send_problem(
                send,
                401,
                "admin_token_required",
                "Admin credential required",
                "send the admin bearer token",
                headers=[(b"www-authenticate", b'Bearer realm="distillguard-admin"')],
            )
            return
        await self.app(scope, receive, send)


class Gateway:
    """The gateway ASGI application (see the module documentation).

    Build it with :func:`create_gateway`; or by hand from its parts for tests and embedding.
    Call :meth:`close` (or run the ASGI lifespan) to flush the recorder.
    """

    def __init__(
        self,
        *,
        core: GatewayCore,
        admin: AdminContext,
        directory: KeyDirectory | None,
        metrics: GatewayMetrics,
        override_refresh_s: float = 2.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self.admin = admin
        self.directory = directory
        self.metrics = metrics
        self.override_refresh_s = override_refresh_s
        self._on_close = on_close
        self._closed = False
        self._mounts: dict[str, ASGIApp] = {}
        self.api = self._build_api()

    def __repr__(self) -> str:
        return f"Gateway(core={self.core!r})"

    def mount(self, prefix: str, app: ASGIApp, *, admin_only: bool = True) -> None:
        """Serve ``app`` under ``prefix`` (the operator console goes at ``/console``).

        With ``admin_only`` every request needs the admin bearer token (401 otherwise); pass
        False when ``app`` authenticates by itself (e.g. a login page setting a session).
        """
        self._mounts[prefix.rstrip("/")] = _AdminOnly(app, self.admin.token) if admin_only else app

    def ready(self) -> tuple[bool, dict[str, bool]]:
        """Readiness and its parts."""
        checks = {
            "recorder": self.core.recorder.alive,
            "upstream": self.core.upstream.ready(),
        }
        try:
            with self.admin.lock, self.admin.store.transaction() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
            checks["store"] = True
        except Exception:
            checks["store"] = False
        return all(checks.values()), checks

    def _build_api(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            task = asyncio.create_task(self._refresh_overrides())
            try:
                yield
            finally:
                task.cancel()
                await self.aclose()
                import gc

                gc.unfreeze()  # let the start-up objects be freed at exit (see tune_gc_for_serving)

        api = FastAPI(
            title="DistillGuard gateway",
            version="1",
            description=(
                "OpenAI-compatible API with agent passports, rate limits, a ledger of every "
                "exchange, online scoring and policy actions; admin API (bearer token)."
            ),
            lifespan=lifespan,
        )
        api.include_router(admin_router(self.admin))

        @api.get("/healthz", tags=["ops"], summary="Liveness")
        def healthz() -> dict[str, str]:
            """The process answers."""
            return {"status": "ok"}

        @api.get("/readyz", tags=["ops"], summary="Readiness")
        def readyz() -> Response:
            """Ready when the store, the recorder and the upstream are usable (503 otherwise)."""
            ok, checks = self.ready()
            return JSONResponse(
                {"status": "ready" if ok else "not_ready", "checks": checks},
                status_code=200 if ok else 503,
            )

        @api.get("/metrics", tags=["ops"], summary="Prometheus metrics")
        def metrics() -> Response:
            """The Prometheus text exposition."""
            return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

        def custom_openapi() -> dict[str, Any]:
            if api.openapi_schema:
                return api.openapi_schema
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            schema.setdefault("paths", {}).update(openai_paths_schema())
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                _PROBLEM_SCHEMA
            )
            schema["components"].setdefault("securitySchemes", {})["admin"] = {
                "type": "http",
                "scheme": "bearer",
            }
            api.openapi_schema = schema
            return schema

        api.openapi = custom_openapi  # type: ignore[method-assign]
        return api

    async def _refresh_overrides(self) -> None:
        """Reload analysts' overrides periodically (other replicas may set them)."""
        while True:
            await asyncio.sleep(self.override_refresh_s)
            try:
                overrides = await asyncio.to_thread(self._load_overrides)
                self.core.policy.set_overrides(overrides)
            except Exception as exc:
                logger.warning("could not reload overrides: %s", type(exc).__name__)

    def _load_overrides(self) -> Any:
        with self.admin.lock:
            return load_overrides(self.admin.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch: OpenAI paths to the core, the key directory, mounts, then FastAPI."""
        if scope["type"] == "http":
            path = scope["path"]
            if path in OPENAI_PATHS:
                await self.core(scope, receive, send)
                return
            if path == DIRECTORY_PATH and self.directory is not None:
                await self.directory(scope, receive, send)
                return
            for prefix, app in self._mounts.items():
                if path == prefix or path.startswith(prefix + "/"):
                    inner = dict(scope)
                    inner["root_path"] = scope.get("root_path", "") + prefix
                    inner["path"] = path[len(prefix) :] or "/"
                    await app(inner, receive, send)
                    return
        await self.api(scope, receive, send)

    async def aclose(self) -> None:
        """Flush and stop everything (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.core.alerter is not None:
            await self.core.alerter.aclose()
        await self.core.upstream.aclose()
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Stop the scorer and the recorder and close the stores (blocking)."""
        self._closed = True
        if self.core.scoring is not None:
            self.core.scoring.close()
        self.core.recorder.close()
        with self.admin.lock:
            self.admin.store.close()
        if self._on_close is not None:
            self._on_close()


# -- construction from settings -------------------------------------------------------------------


def _admin_token(settings: Settings) -> str:
    cfg = settings.gateway
    if cfg.admin_token is not None and cfg.admin_token.get_secret_value():
        return cfg.admin_token.get_secret_value()
    path = Path(settings.home) / "admin.token"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only from the start
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    logger.warning("created an admin token in %s", path)
    return token


def _upstream(settings: Settings, keyring: Any) -> Upstream:
    from distillguard.errors import ConfigurationError

    cfg = settings.gateway
    if cfg.upstream == "stub":
        return StubUpstream(models=cfg.models)
    if cfg.upstream == "openai":
        if not cfg.upstream_url:
            raise ConfigurationError(
                "gateway.upstream = 'openai' needs gateway.upstream_url",
                hint="set the base URL of the model server, e.g. http://127.0.0.1:8000/v1",
            )
        return OpenAIUpstream(
            base_url=cfg.upstream_url,
            api_key=cfg.upstream_api_key.get_secret_value() if cfg.upstream_api_key else None,
            models=cfg.models,
            connect_timeout_s=cfg.upstream_connect_timeout_s,
            read_timeout_s=cfg.upstream_timeout_s,
            retries=cfg.upstream_retries,
            breaker=CircuitBreaker(failures=cfg.breaker_failures, reset_s=cfg.breaker_reset_s),
        )
    if cfg.upstream_model_path is None:
        raise ConfigurationError("gateway.upstream = 'local' needs gateway.upstream_model_path")
    from distillguard.gateway.watermarking import kgw_scheme_for

    return LocalModelUpstream(
        path=cfg.upstream_model_path,
        model_name=cfg.models[0] if cfg.models else None,
        scheme_for=kgw_scheme_for(keyring.watermark_key()),
    )


def _default_scorer(settings: Settings) -> OnlineScorer:
    """``distillguard.monitor.online`` when it is installed, else :class:`NullScorer`."""
    import importlib

    try:
        online = importlib.import_module("distillguard.monitor.online")
    except ImportError:
        logger.info("no online scorer (distillguard.monitor.online): risk comes from overrides")
        return NullScorer()
    factory = getattr(online, "gateway_scorer", None)
    if factory is None:
        logger.warning("distillguard.monitor.online has no gateway_scorer(settings); not used")
        return NullScorer()
    scorer: OnlineScorer = factory(settings)
    return scorer


def create_gateway(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    scorer: OnlineScorer | None = None,
    verifier: RequestVerifier | None = None,
    limiter: RateLimiter | None = None,
    watermarker: PostHocWatermarker | None = None,
    alert_transport: Any = None,
) -> Gateway:
    """The gateway configured by ``settings`` (``[gateway]``, ``[passport]``, store, keyring).

    Parts can be replaced (tests, embedding): the upstream, the online scorer, the verifier,
    the rate limiter, the post-hoc watermarker, the alerts' HTTP transport.

    Raises:
        ConfigurationError, KeyringError: a setting or the keyring is missing or wrong.
        StorageError: the store cannot be opened.
    """
    from distillguard.keyring import KeyPurpose, open_keyring
    from distillguard.passport import PassportIssuer
    from distillguard.passport.registry import open_registry

    cfg = settings.gateway
    keyring = open_keyring(settings)
    wm_key = keyring.watermark_key()
    store_url = settings.store_url
    origin = settings.ledger.origin
    metrics = GatewayMetrics()

    def prepare(store: Store) -> None:
        ensure_action_tables(store)

    recorder = ExchangeRecorder(
        store_url=store_url,
        durability=cfg.durability,
        max_batch=cfg.batch_max_size,
        max_delay_s=cfg.batch_max_delay_ms / 1000.0,
        ledger_origin=origin,
        prepare=prepare,
        fsync=cfg.durability == "sync" or cfg.batch_fsync,
        on_commit=metrics.batch.observe,
        inline=cfg.recorder == "inline"
        or (
            cfg.recorder == "auto"
            and store_url.startswith("sqlite:")
            and cfg.durability == "batch"
            and not cfg.batch_fsync
        ),
    )
    admin_store = open_store(store_url)
    ensure_action_tables(admin_store)
    the_upstream = upstream if upstream is not None else _upstream(settings, keyring)
    the_verifier = verifier or RequestVerifier.from_settings(settings, keyring)
    # the verifier's policy bounds its own buffering; ours is stricter
    if limiter is None:
        limiter = (
            RedisRateLimiter.from_url(cfg.redis_url, prefix=cfg.redis_prefix)
            if cfg.rate_limits == "redis"
            else MemoryRateLimiter()
        )
    policy = Policy(
        thresholds=PolicyThresholds(
            throttle=cfg.throttle_at,
            watermark=cfg.watermark_at,
            canary=cfg.canary_at,
            reverify=cfg.reverify_at,
            block=cfg.block_at,
        ),
        secret=wm_key.secret,
    )
    policy.set_overrides(load_overrides(admin_store))
    if scorer is not None:
        the_scorer: OnlineScorer = scorer
    elif cfg.online_scoring:
        the_scorer = _default_scorer(settings)
    else:
        the_scorer = NullScorer()
    if watermarker is None and the_upstream.name != "local":
        from distillguard.gateway.watermarking import CaterPostHoc

        watermarker = CaterPostHoc(key=wm_key)
    alerter = None
    if cfg.alerts.webhooks:
        alerter = Alerter(
            store=open_store(store_url),
            webhooks=cfg.alerts.webhooks,
            level=cfg.alerts.level,
            retries=cfg.alerts.retries,
            backoff_s=cfg.alerts.backoff_s,
            timeout_s=cfg.alerts.timeout_s,
            dead_letter=cfg.alerts.dead_letter or Path(settings.home) / "alerts.dead.jsonl",
            transport=alert_transport,
            on_outcome=lambda outcome: metrics.alerts.labels(outcome).inc(),
        )
    limits = LimitsConfig(
        account_requests=Limit(
            cfg.account_requests_per_minute, 60.0, max(1.0, cfg.account_requests_per_minute / 6)
        ),
        account_tokens=Limit(
            cfg.account_tokens_per_minute, 60.0, max(1.0, cfg.account_tokens_per_minute / 6)
        ),
        aggregates=tuple(
            AggregateLimit(
                key=a.key,
                requests=Limit(a.requests_per_minute, 60.0, float(a.burst)),
                tokens=Limit(a.tokens_per_minute, 60.0, max(1.0, a.tokens_per_minute / 6)),
            )
            for a in cfg.aggregate_limits
        ),
        throttle_factor=cfg.throttle_factor,
    )
    from distillguard.gateway.canaries import GatewayCanaries

    canaries = GatewayCanaries.open(store_url=store_url, key=wm_key)
    core = GatewayCore(
        verifier=the_verifier,
        upstream=the_upstream,
        recorder=recorder,
        limiter=limiter,
        limits=limits,
        policy=policy,
        scorer=the_scorer,
        metrics=metrics,
        accounts=AccountDirectory(open_store(store_url))
        if any(a.key == "payment" for a in cfg.aggregate_limits)
        else AccountDirectory(None),
        alerter=alerter,
        watermarker=watermarker,
        canaries=canaries,
        max_body_bytes=cfg.max_body_bytes,
        body_timeout_s=cfg.body_timeout_s,
        trust_forwarded=cfg.trust_forwarded_for,
    )
    try:
        issuer_key = keyring.signing_key(KeyPurpose.PASSPORT)
        issuer: Any = PassportIssuer(key=issuer_key, issuer=settings.passport.issuer)
    except Exception:
        issuer_key, issuer = None, None
    try:
        ledger_key = keyring.signing_key(KeyPurpose.LEDGER)
    except Exception:
        ledger_key = None
    revocations = getattr(the_verifier, "revocations", None)
    registry = getattr(revocations, "registry", None) or open_registry(settings)
    clusters = getattr(the_scorer, "clusters", None)
    admin = AdminContext(
        store=admin_store,
        lock=threading.Lock(),
        policy=policy,
        scorer=the_scorer,
        registry=registry,
        issuer=issuer,
        revocations=revocations,
        ledger_key=ledger_key,
        token=_admin_token(settings),
        ledger_origin=origin,
        clusters=clusters if callable(clusters) else None,
    )
    directory = KeyDirectory(registry=registry, signing_key=issuer_key)
    gateway = Gateway(
        core=core, admin=admin, directory=directory, metrics=metrics, on_close=canaries.close
    )
    from distillguard.gateway.images import mount_images

    mount_images(gateway, settings, keyring)
    if settings.console.enabled:
        from distillguard.console import console_from_settings

        gateway.mount(
            "/console",
            console_from_settings(settings, admin=admin, keyring=keyring, metrics=metrics),
            admin_only=False,  # the console's login exchanges the token for a session cookie
        )
    return gateway


def tune_gc_for_serving() -> None:
    """Garbage-collector settings for a serving process (called by ``distillguard serve``).

    Everything allocated at start-up (modules, the app, caches) is moved out of the collector's
    generations (``gc.freeze``), so full collections no longer rescan it, and the youngest
    generation is collected every 10,000 allocations instead of 700: fewer, still short, pauses
    on the request path (about a tenth of the CPU time per request in a profile).
    """
    import gc

    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(10_000, g1, g2)


def check_workers(settings: Settings, workers: int, *, detected_by: str = "--workers") -> None:
    """Refuse several worker processes whose replay cache or rate limits are in-process.

    Each worker would keep its own nonce cache and its own limits: a signed request replayed to
    another worker is accepted, and every limit is multiplied by the number of workers.

    Args:
        settings: the configuration.
        workers: how many worker processes serve the gateway.
        detected_by: where the count comes from (named in the error).

    Raises:
        ConfigurationError: ``workers > 1`` without ``[passport] replay_cache = "redis"`` (or
            ``"redis-async"``) and ``[gateway] rate_limits = "redis"``.
    """
    from distillguard.errors import ConfigurationError

    if workers <= 1:
        return
    local = []
    if settings.passport.replay_cache == "memory":
        local.append('[passport] replay_cache = "memory"')
    if settings.gateway.rate_limits == "memory":
        local.append('[gateway] rate_limits = "memory"')
    if local:
        raise ConfigurationError(
            f"{workers} workers ({detected_by}) cannot share in-process state "
            f"({', '.join(local)}): each worker would accept a request replayed to another and "
            "apply its own copy of every limit",
            hint='set [passport] replay_cache = "redis" and [gateway] rate_limits = "redis" '
            "(with their redis_url), or run one worker",
            details={"workers": workers, "detected_by": detected_by, "in_process": local},
        )


def _uvicorn_config() -> Any:
    """The ``uvicorn.Config`` loading this factory, found on the call stack, or None.

    uvicorn calls the factory from ``Config.load`` in each worker process (the parent's config,
    pickled into the worker, so ``workers`` is the number the server was started with).
    """
    import sys

    try:
        from uvicorn.config import Config
    except ImportError:  # pragma: no cover - uvicorn is a dependency of the gateway
        return None
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Config):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _option_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.partition("=")[2]
    return None


def detected_workers(config: Any = None) -> tuple[int, str]:
    """How many worker processes serve this app, as far as a worker can tell, and from where.

    In order: the uvicorn ``Config`` that loads the factory (``--workers N``, or
    ``$WEB_CONCURRENCY`` which uvicorn reads as its default), ``$WEB_CONCURRENCY`` (gunicorn's
    default for ``-w`` too), then ``--workers`` / ``-w`` on a ``uvicorn`` or ``gunicorn``
    command line (a spawned worker sees its parent's ``sys.argv``). A process manager that
    starts several independent single-worker servers on one port (``SO_REUSEPORT``, systemd
    templates, several containers) cannot be seen from inside one of them.
    """
    import sys

    config_workers = getattr(config, "workers", None)
    if isinstance(config_workers, int) and config_workers > 1:
        return config_workers, "uvicorn --workers"
    env = os.environ.get("WEB_CONCURRENCY", "").strip()
    if env.isdigit() and int(env) > 1:
        return int(env), "WEB_CONCURRENCY"
    argv = [str(a) for a in sys.argv]
    launcher = " ".join(argv[:3]).lower()
    if "uvicorn" in launcher or "gunicorn" in launcher:
        names = ("--workers", "-w") if "gunicorn" in launcher else ("--workers",)
        value = _option_value(argv, names)
        if value is not None and value.strip().isdigit() and int(value) > 1:
            return int(value), "--workers on the command line"
    return 1, "one worker"


def app_from_environment() -> Gateway:
    """The gateway of the configuration found from the environment (uvicorn ``--factory``).

    ``distillguard serve`` is the supported launcher (it enforces ``[gateway]
    max_header_bytes``). Launched directly (``uvicorn --factory
    distillguard.gateway.app:app_from_environment``), it refuses to start with several workers
    and in-process replay cache or rate limits (see :func:`detected_workers` for what can be
    detected), and logs a warning that the request header cap is not enforced.

    Raises:
        ConfigurationError: several workers with in-process state.
    """
    from distillguard.config import load_settings
    from distillguard.gateway._server import HeadLimitedHttpToolsProtocol
    from distillguard.gateway.logs import configure_json_logging

    configure_json_logging(os.environ.get("DISTILLGUARD_LOG_LEVEL", "INFO"))
    settings = load_settings()
    config = _uvicorn_config()
    workers, detected_by = detected_workers(config)
    check_workers(settings, workers, detected_by=detected_by)
    http = getattr(config, "http", None)
    if getattr(http, "func", http) is not HeadLimitedHttpToolsProtocol:
        logger.warning(
            "the gateway was not started by 'distillguard serve': the request header cap "
            "([gateway] max_header_bytes = %d) is not enforced; run 'distillguard serve'",
            settings.gateway.max_header_bytes,
        )
    gateway = create_gateway(settings)
    tune_gc_for_serving()
    return gateway
