"""``distillguard serve``: run the gateway (OpenAI-compatible API, admin API, metrics)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from distillguard.cli._common import emit_json, settings_of, state_of
from distillguard.config import Settings

__all__ = ["check_workers", "register"]


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse several worker processes whose replay cache or rate limits are in-process.

    Each worker would keep its own nonce cache and its own limits: a signed request replayed to
    another worker is accepted, and every limit is multiplied by the number of workers.

    Raises:
        ConfigurationError: ``workers > 1`` without ``[passport] replay_cache = "redis"`` (or
            ``"redis-async"``) and ``[gateway] rate_limits = "redis"``.
    """
    from distillguard.app import check_workers as check

    check(settings, workers)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address (default gateway.host).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default gateway.port).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, max=64, help="Worker processes (default gateway.workers)."
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run the gateway in front of the configured upstream model.

    Every request is verified (passport and signature), rate limited, answered by the upstream,
    watermarked when the policy says so, and recorded in the store and the ledger before the
    answer. Logs are JSON lines on standard error. Example:

        distillguard --config distillguard.toml serve --host 0.0.0.0 --port 8080 --workers 2
    """
    import uvicorn

    from distillguard.gateway.logs import configure_json_logging

    state = state_of(ctx)
    settings = settings_of(ctx)
    cfg = settings.gateway
    h = host or cfg.host
    p = port if port is not None else cfg.port
    n = workers or cfg.workers
    check_workers(settings, n)
    from distillguard.gateway import uvicorn_options

    server_options = uvicorn_options(max_header_bytes=cfg.max_header_bytes)
    configure_json_logging(log_level.upper())
    if state.json_output:
        emit_json({"ok": True, "url": f"http://{h}:{p}", "workers": n, "store": "configured"})
    if n > 1:
        from distillguard.gateway.metrics import prepare_multiprocess

        # worker processes rebuild the application from the same configuration, and write
        # their metrics to one folder that the exposition sums
        prepare_multiprocess()
        if state.config_file is not None:
            os.environ["DISTILLGUARD_CONFIG"] = str(Path(state.config_file).resolve())
        uvicorn.run(
            "distillguard.app:app_from_environment",
            factory=True,
            host=h,
            port=p,
            workers=n,
            log_config=None,
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=30,
            **server_options,
        )
        return
    from distillguard.app import create_application, tune_gc_for_serving
    from distillguard.gateway.tracing import configure_otlp_from_environment

    configure_otlp_from_environment()
    app = create_application(settings)
    tune_gc_for_serving()
    uvicorn.run(
        app,
        host=h,
        port=p,
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=30,
        **server_options,
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)
