"""The served application: every component wired once, from the configuration.

:func:`create_application` opens what the gateway needs, each once: the keyring, the passport
verifier (and through it the passport registry), the rate limiter, the upstream, the online
scorer, the recorder (its own store connection, written from its own thread), the operations
service (one store connection shared by the admin API, the console and the readiness check),
the gateway's request-path helpers (alerts, payment lookups, the canary registry: one
connection each, closed with the application), the admin API, the image endpoints and the
console. :func:`create_gateway` is the same, returning only the ASGI app.
:func:`app_from_environment` is the uvicorn factory that ``distillguard serve --workers N``
starts in each worker.

Layering: this module sits above the gateway, the console and the admin API, and nothing but
the CLI and the entry points imports it.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from distillguard.app.admin import admin_router
from distillguard.app.operations import Operations
from distillguard.config import Settings
from distillguard.errors import ConfigurationError, KeyringError
from distillguard.gateway import ASGIApp, HeadLimitedHttpToolsProtocol, Receive, Scope, Send
from distillguard.gateway.alerts import Alerter
from distillguard.gateway.app import Gateway
from distillguard.gateway.core import (
    AccountDirectory,
    AggregateLimit,
    GatewayCore,
    LimitsConfig,
    PostHocWatermarker,
)
from distillguard.gateway.failover import FailoverNonceCache, GuardedRegistry
from distillguard.gateway.metrics import GatewayMetrics
from distillguard.gateway.policy import (
    ActionRow,
    NullScorer,
    OnlineScorer,
    Policy,
    PolicyThresholds,
    ensure_action_tables,
)
from distillguard.gateway.ratelimit import (
    FailoverRateLimiter,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from distillguard.gateway.recorder import ExchangeRecorder
from distillguard.gateway.upstream import (
    CircuitBreaker,
    LocalModelUpstream,
    OpenAIUpstream,
    StubUpstream,
    Upstream,
    routed_upstream,
)
from distillguard.passport import (
    KeyDirectory,
    MemoryNonceCache,
    PassportRegistry,
    RegistrationCache,
    RequestVerifier,
    RevocationCache,
)
from distillguard.store import Store, open_store

if TYPE_CHECKING:
    from distillguard.console import Console
    from distillguard.keyring import Keyring

__all__ = [
    "Application",
    "app_from_environment",
    "check_workers",
    "create_application",
    "create_gateway",
    "detected_workers",
    "tune_gc_for_serving",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class _ClusterView(Protocol):
    """An online scorer that also lists its clusters (the campaigns shown to analysts)."""

    def clusters(self) -> list[dict[str, Any]]:
        """Clusters with their risk."""
        ...


@dataclass
class _Closers:
    """What the application opened, closed in reverse order (each once, failures logged)."""

    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, name: str, close: Callable[[], None]) -> None:
        self.closers.append((name, close))

    def store(self, url: str, purpose: str) -> Store:
        """Open a store connection for ``purpose`` and register it to be closed."""
        store = open_store(url)
        self.add(f"store ({purpose})", store.close)
        return store

    def close(self) -> None:
        closers, self.closers = self.closers, []
        for name, close in reversed(closers):
            try:
                close()
            except Exception as exc:
                logger.warning("closing %s failed: %s", name, type(exc).__name__)


@dataclass
class Application:
    """The wired application: the gateway, the operations service and the console (None when
    ``[console] enabled`` is false). It is the ASGI app that is served: the gateway inside the
    tracing middleware (a request id and W3C trace context for every HTTP request,
    :mod:`distillguard.gateway.tracing`)."""

    settings: Settings
    gateway: Gateway
    operations: Operations
    console: Console | None
    asgi: ASGIApp = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from distillguard.gateway.tracing import TracingMiddleware

        self.asgi = TracingMiddleware(self.gateway)

    def __repr__(self) -> str:
        return f"Application(gateway={self.gateway!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (the traced gateway)."""
        await self.asgi(scope, receive, send)

    def close(self) -> None:
        """Stop the gateway and close everything it opened (blocking)."""
        self.gateway.close_sync()


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


def _upstream(settings: Settings, keyring: Keyring) -> Upstream:
    cfg = settings.gateway
    if cfg.routes:  # [[gateway.routes]] over [gateway.upstreams]: routed by model, with fallback
        return routed_upstream(cfg)
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


def _scorer(settings: Settings) -> OnlineScorer:
    """The online scorer of ``[gateway] online_scoring`` (the monitor's, in process)."""
    if not settings.gateway.online_scoring:
        return NullScorer()
    from distillguard.monitor.online import gateway_scorer

    return gateway_scorer(settings)


def _limits(settings: Settings) -> LimitsConfig:
    cfg = settings.gateway
    return LimitsConfig(
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


def _recorder(settings: Settings, metrics: GatewayMetrics) -> ExchangeRecorder:
    cfg = settings.gateway
    store_url = settings.store_url
    spool = None
    if cfg.failure_mode == "open":
        from distillguard.gateway.spool import claim_spool

        spool = claim_spool(
            cfg.spool_dir or Path(settings.home) / "spool", max_bytes=cfg.spool_max_bytes
        )
        metrics.spool_max_bytes.set(cfg.spool_max_bytes)
        metrics.spool_bytes.set(spool.pending_bytes)
        metrics.spool_records.set(spool.pending_records)
        metrics.degraded.labels("store").set(0 if spool.empty else 1)

        def on_spool(n: int) -> None:
            assert spool is not None
            (metrics.spooled if n > 0 else metrics.replayed).inc(abs(n))
            metrics.spool_bytes.set(spool.pending_bytes)
            metrics.spool_records.set(spool.pending_records)
            metrics.degraded.labels("store").set(0 if spool.empty else 1)

    return ExchangeRecorder(
        store_url=store_url,
        durability=cfg.durability,
        max_batch=cfg.batch_max_size,
        max_delay_s=cfg.batch_max_delay_ms / 1000.0,
        ledger_origin=settings.ledger.origin,
        prepare=ensure_action_tables,
        fsync=cfg.durability == "sync" or cfg.batch_fsync,
        on_commit=metrics.batch.observe,
        spool=spool,
        row_decoders={ActionRow.KIND: ActionRow.decode},
        replay_interval_s=cfg.spool_retry_s,
        on_spool=on_spool if spool is not None else None,
        inline=(
            spool is None  # spooling fsyncs: never in the event loop
            and cfg.recorder == "inline"
        )
        or (
            spool is None
            and cfg.recorder == "auto"
            and store_url.startswith("sqlite:")
            and cfg.durability == "batch"
            and not cfg.batch_fsync
        ),
    )


def _console(
    settings: Settings,
    *,
    operations: Operations,
    admin_token: str,
    keyring: Keyring,
    metrics: GatewayMetrics,
) -> Console:
    """The console configured by ``[console]``, over the operations service."""
    from distillguard.console import ConsoleOptions, create_console, derive_session_key

    cfg = settings.console
    options = ConsoleOptions(
        scan_results=cfg.scan_results,
        result_files=tuple(cfg.result_files),
        upload_dir=cfg.upload_dir or Path(settings.home) / "console-results",
        session_ttl_s=cfg.session_ttl_s,
        page_size=cfg.page_size,
        secure_cookie=cfg.secure_cookie,
    )
    key = derive_session_key(secret=keyring.watermark_key().secret, admin_token=admin_token)
    return create_console(
        operations=operations,
        admin_token=admin_token,
        session_key=key,
        options=options,
        metrics=metrics,
    )


def create_application(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    scorer: OnlineScorer | None = None,
    verifier: RequestVerifier | None = None,
    limiter: RateLimiter | None = None,
    watermarker: PostHocWatermarker | None = None,
    alert_transport: Any = None,
) -> Application:
    """The application configured by ``settings`` (``[gateway]``, ``[passport]``, ``[console]``,
    the store, the keyring), every component built once.

    Parts can be replaced (tests, embedding): the upstream, the online scorer, the verifier,
    the rate limiter, the post-hoc watermarker, the alerts' HTTP transport. On a failure half
    way, what was already opened is closed again.

    Raises:
        ConfigurationError, KeyringError: a setting or the keyring is missing or wrong.
        StorageError: the store cannot be opened.
    """
    closers = _Closers()
    try:
        return _assemble(
            settings,
            closers,
            upstream=upstream,
            scorer=scorer,
            verifier=verifier,
            limiter=limiter,
            watermarker=watermarker,
            alert_transport=alert_transport,
        )
    except BaseException:
        closers.close()
        raise


def _assemble(
    settings: Settings,
    closers: _Closers,
    *,
    upstream: Upstream | None,
    scorer: OnlineScorer | None,
    verifier: RequestVerifier | None,
    limiter: RateLimiter | None,
    watermarker: PostHocWatermarker | None,
    alert_transport: Any,
) -> Application:
    from distillguard.gateway.canaries import GatewayCanaries
    from distillguard.gateway.images import mount_images
    from distillguard.keyring import KeyPurpose, open_keyring
    from distillguard.passport import PassportIssuer, open_registry

    cfg = settings.gateway
    store_url = settings.store_url
    keyring = open_keyring(settings)
    wm_key = keyring.watermark_key()
    metrics = GatewayMetrics()
    admin_token = _admin_token(settings)

    # the verifier, and through its revocation cache the passport registry
    open_mode = cfg.failure_mode == "open"

    def nonces_state(down: bool) -> None:
        metrics.degraded.labels("nonces").set(int(down))

    def wrap_nonces(primary: Any) -> Any:
        if not open_mode or isinstance(primary, MemoryNonceCache):
            return primary
        return FailoverNonceCache(
            primary, MemoryNonceCache(), retry_s=cfg.spool_retry_s, on_state=nonces_state
        )

    the_verifier = verifier or RequestVerifier.from_settings(
        settings, keyring, wrap_nonce_cache=wrap_nonces
    )
    revocations = the_verifier.revocations
    cache = revocations if isinstance(revocations, RevocationCache) else None
    if cache is not None:
        # reloaded in a thread: a request never waits for a registry that does not answer
        cache.start_background_refresh()
        closers.add("revocation refresh", cache.stop_background_refresh)
    registry: PassportRegistry
    if cache is not None:
        registry = cache.registry
    else:
        registry = open_registry(settings)
        closers.add("passport registry", registry.close)

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
    the_scorer = scorer if scorer is not None else _scorer(settings)
    try:
        issuer_key = keyring.signing_key(KeyPurpose.PASSPORT)
        issuer: PassportIssuer | None = PassportIssuer(
            key=issuer_key, issuer=settings.passport.issuer
        )
    except KeyringError:
        issuer_key, issuer = None, None
    try:
        ledger_key = keyring.signing_key(KeyPurpose.LEDGER)
    except KeyringError:
        ledger_key = None
    try:
        ledger_public_keys = list(keyring.verify_keys(KeyPurpose.LEDGER))  # time-bound
    except KeyringError:
        ledger_public_keys = []
    operations = Operations(
        store=closers.store(store_url, "operations: admin API, console, readiness"),
        policy=policy,
        scorer=the_scorer,
        registry=registry,
        revocations=cache,
        issuer=issuer,
        ledger_key=ledger_key,
        ledger_origin=settings.ledger.origin,
        ledger_public_keys=ledger_public_keys,
        clusters=the_scorer.clusters if isinstance(the_scorer, _ClusterView) else None,
    )
    policy.set_overrides(operations.load_overrides())

    the_upstream = upstream if upstream is not None else _upstream(settings, keyring)
    if limiter is None:
        limiter = (
            RedisRateLimiter.from_url(cfg.redis_url, prefix=cfg.redis_prefix)
            if cfg.rate_limits == "redis"
            else MemoryRateLimiter()
        )
        if open_mode and cfg.rate_limits == "redis":
            limiter = FailoverRateLimiter(
                limiter,
                retry_s=cfg.spool_retry_s,
                on_state=lambda down: metrics.degraded.labels("rate_limits").set(int(down)),
            )
    if watermarker is None and not the_upstream.capabilities.generation_watermark:
        from distillguard.gateway.watermarking import CaterPostHoc

        watermarker = CaterPostHoc(key=wm_key)
    alerter = None
    if cfg.alerts.webhooks:
        alerter = Alerter(
            store=closers.store(store_url, "alert deduplication"),
            webhooks=cfg.alerts.webhooks,
            level=cfg.alerts.level,
            retries=cfg.alerts.retries,
            backoff_s=cfg.alerts.backoff_s,
            timeout_s=cfg.alerts.timeout_s,
            dead_letter=cfg.alerts.dead_letter or Path(settings.home) / "alerts.dead.jsonl",
            transport=alert_transport,
            on_outcome=lambda outcome: metrics.alerts.labels(outcome).inc(),
        )
    payment_limits = any(a.key == "payment" for a in cfg.aggregate_limits)
    accounts = AccountDirectory(
        closers.store(store_url, "payment lookups") if payment_limits else None
    )
    canaries = GatewayCanaries.open(store_url=store_url, key=wm_key)
    closers.add("canary registry", canaries.close)
    recorder = _recorder(settings, metrics)
    registrations = getattr(the_verifier, "registrations", None)
    if settings.passport.registry == "store" and isinstance(registrations, RegistrationCache):
        # a passport first seen while the store is down is refused at once, not after the
        # pool's timeout with the event loop stalled
        registrations.registry = GuardedRegistry(
            registrations.registry, down=lambda: recorder.store_down
        )
    core = GatewayCore(
        verifier=the_verifier,
        upstream=the_upstream,
        recorder=recorder,
        limiter=limiter,
        limits=_limits(settings),
        policy=policy,
        scorer=the_scorer,
        metrics=metrics,
        accounts=accounts,
        alerter=alerter,
        watermarker=watermarker,
        canaries=canaries,
        max_body_bytes=cfg.max_body_bytes,
        body_timeout_s=cfg.body_timeout_s,
        trust_forwarded=cfg.trust_forwarded_for,
        unavailable_retry_after_s=cfg.unavailable_retry_after_s,
    )
    gateway = Gateway(
        core=core,
        directory=KeyDirectory(registry=registry, signing_key=issuer_key),
        metrics=metrics,
        admin_token=admin_token,
        routers=[admin_router(operations, token=admin_token)],
        load_overrides=operations.load_overrides,
        store_ready=operations.ping,
        on_close=closers.close,
    )
    closers.add("operations", operations.close)
    mount_images(gateway, settings, keyring)
    console = None
    if settings.console.enabled:
        console = _console(
            settings,
            operations=operations,
            admin_token=admin_token,
            keyring=keyring,
            metrics=metrics,
        )
        # the console's login exchanges the admin token for a session cookie
        gateway.mount("/console", console, admin_only=False)
    return Application(settings=settings, gateway=gateway, operations=operations, console=console)


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
    """The gateway (ASGI app) of :func:`create_application` with the same arguments.

    Raises:
        ConfigurationError, KeyringError: a setting or the keyring is missing or wrong.
        StorageError: the store cannot be opened.
    """
    return create_application(
        settings,
        upstream=upstream,
        scorer=scorer,
        verifier=verifier,
        limiter=limiter,
        watermarker=watermarker,
        alert_transport=alert_transport,
    ).gateway


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
    """Refuse several serving processes whose replay cache or rate limits are in-process.

    The processes are ``workers`` on this machine times ``[gateway] replicas`` (the replicas
    the deployment declares). Each would keep its own nonce cache and its own limits: a signed
    request replayed to another is accepted, and every limit is multiplied by their number.
    Replicas the deployment runs but does not declare cannot be seen.

    Args:
        settings: the configuration.
        workers: how many worker processes serve the gateway here.
        detected_by: where the count comes from (named in the error).

    Raises:
        ConfigurationError: more than one process in all without ``[passport] replay_cache =
            "redis"`` (or ``"redis-async"``) and ``[gateway] rate_limits = "redis"``.
    """
    replicas = settings.gateway.replicas
    if replicas > 1:
        detected_by = f"{detected_by} x {replicas} replicas ([gateway] replicas)"
    workers *= replicas
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
            "(with their redis_url), or run one worker and one replica",
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


def app_from_environment() -> Application:
    """The application of the configuration found from the environment (uvicorn
    ``--factory``); OTLP trace export is set up from ``OTEL_*`` when asked for.

    ``distillguard serve`` is the supported launcher (it enforces ``[gateway]
    max_header_bytes``). Launched directly (``uvicorn --factory
    distillguard.app:app_from_environment``), it refuses to start with several workers
    and in-process replay cache or rate limits (see :func:`detected_workers` for what can be
    detected), and logs a warning that the request header cap is not enforced.

    Raises:
        ConfigurationError: several workers with in-process state.
    """
    from distillguard.config import load_settings
    from distillguard.gateway.logs import configure_json_logging
    from distillguard.gateway.tracing import configure_otlp_from_environment

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
    configure_otlp_from_environment()
    application = create_application(settings)
    tune_gc_for_serving()
    return application
