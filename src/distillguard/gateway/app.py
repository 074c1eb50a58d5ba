"""The gateway's ASGI application, :class:`Gateway`: routing between its parts.

It is assembled from the configuration by :func:`distillguard.app.create_gateway` (the
application layer wires the store, the scorer, the limiter, the upstream, the admin API and the
console once, and hands them in). Routes:

* ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``: the
  OpenAI-compatible API, served by :class:`~distillguard.gateway.core.GatewayCore` (a plain ASGI
  app reached without the web framework's routing, for speed);
* ``GET /.well-known/http-message-signatures-directory``: the key directory of agent keys;
* ``/admin/...``: the admin API (:mod:`distillguard.app.admin`, handed in as a router),
  bearer token;
* ``GET /metrics`` (Prometheus), ``GET /healthz`` (the process answers), ``GET /readyz`` (store,
  recorder and upstream usable);
* ``GET /openapi.json``: the OpenAPI schema of all of the above;
* ``/console``: reserved for the operator console, mounted with :meth:`Gateway.mount`;
* ``/v1/images/...``: the image endpoints, mounted the same way when enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response

from distillguard.gateway._http import ASGIApp, Receive, Scope, Send
from distillguard.gateway.core import GatewayCore
from distillguard.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from distillguard.gateway.policy import Override
from distillguard.passport import DIRECTORY_PATH, KeyDirectory

__all__ = ["OPENAI_PATHS", "Gateway", "openai_paths_schema"]

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


@runtime_checkable
class _AsyncClosable(Protocol):
    """A part holding connections of its own to close on the event loop (the Redis limiter)."""

    async def aclose(self) -> None:
        """Close them."""
        ...


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


_READY_PROBE_S = 2.0


def _within(probe: Callable[[], object], timeout_s: float) -> bool:
    """``probe()`` is truthy within ``timeout_s`` (it runs in a daemon thread, abandoned if
    it takes longer: a readiness check must answer before the orchestrator's probe times out)."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(probe()))
        except Exception:
            result.append(False)

    thread = threading.Thread(target=run, name="dg-ready-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


class Gateway:
    """The gateway ASGI application (see the module documentation).

    Built by :func:`distillguard.app.create_gateway`; or by hand from its parts for tests and
    embedding. Call :meth:`close` (or run the ASGI lifespan) to flush the recorder.

    Args:
        core: the OpenAI-compatible request path.
        directory: the key directory of agent keys (None: not served).
        metrics: the Prometheus metrics.
        admin_token: the admin bearer token (guards :meth:`mount` with ``admin_only``).
        routers: FastAPI routers served next to ``/healthz`` (the admin API).
        load_overrides: reads the analysts' overrides (from the store); reloaded every
            ``override_refresh_s`` into the policy, since other replicas may set them.
        store_ready: whether the store answers (a readiness check; None: not checked).
        on_close: called once by :meth:`close_sync`, after the recorder stopped.
    """

    def __init__(
        self,
        *,
        core: GatewayCore,
        directory: KeyDirectory | None,
        metrics: GatewayMetrics,
        admin_token: str,
        routers: Sequence[APIRouter] = (),
        load_overrides: Callable[[], Sequence[Override]] | None = None,
        store_ready: Callable[[], bool] | None = None,
        override_refresh_s: float = 2.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self.directory = directory
        self.metrics = metrics
        self.admin_token = admin_token
        self.override_refresh_s = override_refresh_s
        self._overrides = load_overrides
        self._store_ready = store_ready
        self._on_close = on_close
        self._closed = False
        self._mounts: dict[str, ASGIApp] = {}
        self.api = self._build_api(routers)

    def __repr__(self) -> str:
        return f"Gateway(core={self.core!r})"

    def mount(self, prefix: str, app: ASGIApp, *, admin_only: bool = True) -> None:
        """Serve ``app`` under ``prefix`` (the operator console goes at ``/console``).

        With ``admin_only`` every request needs the admin bearer token (401 otherwise); pass
        False when ``app`` authenticates by itself (e.g. a login page setting a session).
        """
        self._mounts[prefix.rstrip("/")] = _AdminOnly(app, self.admin_token) if admin_only else app

    def ready(self) -> tuple[bool, dict[str, bool]]:
        """Readiness and its parts."""
        checks = {
            "recorder": self.core.recorder.alive,
            "upstream": self.core.upstream.ready(),
        }
        open_mode = self.core.recorder.spool is not None
        if self._store_ready is not None:
            if open_mode and self.core.recorder.spooling:
                checks["store"] = False  # known down: no probe that would wait for it
            elif open_mode:
                checks["store"] = _within(self._store_ready, _READY_PROBE_S)
            else:
                try:
                    checks["store"] = bool(self._store_ready())
                except Exception:
                    checks["store"] = False
        if open_mode:
            # failure mode open: a store that cannot be reached is served around (the spool),
            # so this replica stays in the load balancer; "spooling" says it is degraded
            checks["spooling"] = self.core.recorder.spooling
            ok = checks["recorder"] and checks["upstream"]
            return ok, checks
        return all(checks.values()), checks

    def _build_api(self, routers: Sequence[APIRouter]) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            task = asyncio.create_task(self._refresh_overrides())
            try:
                yield
            finally:
                task.cancel()
                await self.aclose()
                import gc

                gc.unfreeze()  # let the start-up objects be freed at exit (tune_gc_for_serving)

        api = FastAPI(
            title="DistillGuard gateway",
            version="1",
            description=(
                "OpenAI-compatible API with agent passports, rate limits, a ledger of every "
                "exchange, online scoring and policy actions; admin API (bearer token)."
            ),
            lifespan=lifespan,
        )
        for router in routers:
            api.include_router(router)

        @api.get("/healthz", tags=["ops"], summary="Liveness")
        def healthz() -> dict[str, str]:
            """The process answers."""
            return {"status": "ok"}

        @api.get("/readyz", tags=["ops"], summary="Readiness")
        def readyz() -> Response:
            """Ready when the store, the recorder and the upstream are usable (503 otherwise);
            in failure mode open, the store is reported but not required."""
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
        if self._overrides is None:
            return
        while True:
            await asyncio.sleep(self.override_refresh_s)
            try:
                overrides = await asyncio.to_thread(self._load_overrides)
                self.core.policy.set_overrides(overrides)
            except Exception as exc:
                logger.warning("could not reload overrides: %s", type(exc).__name__)

    def _load_overrides(self) -> list[Override]:
        return list(self._overrides()) if self._overrides is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch: the model endpoints to the core (its handlers' paths: OpenAI and Anthropic),
        the key directory, mounts, then FastAPI."""
        if scope["type"] == "http":
            path = scope["path"]
            if path in self.core.paths:
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
        if isinstance(self.core.limiter, _AsyncClosable):
            await self.core.limiter.aclose()
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Stop the scorer and the recorder, then ``on_close`` (blocking; once)."""
        self._closed = True
        if self.core.scoring is not None:
            self.core.scoring.close()
        self.core.recorder.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
