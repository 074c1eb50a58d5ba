"""Helpers to test code against a gateway: settings with a keyring, ASGI clients, request bodies.

Used by DistillGuard's own tests, and usable by a provider's integration tests::

    settings = make_settings(tmp_path)
    gateway = create_gateway(settings)
    agent = AgentFactory.from_settings(settings).issue("acct-1")
    async with client(gateway, agent) as c:
        r = await c.post("/v1/chat/completions", json=chat_body("hi"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from distillguard.config import Settings
from distillguard.gateway.agents import Agent
from distillguard.gateway.app import Gateway
from distillguard.keyring import Keyring

__all__ = ["ADMIN_TOKEN", "BASE_URL", "admin_client", "chat_body", "client", "make_settings"]

ADMIN_TOKEN = "test-admin-token-0123456789"
"""The admin token :func:`make_settings` configures."""

BASE_URL = "http://gateway.test"
"""Base URL of the ASGI clients (the authority the requests are signed for)."""


def make_settings(tmp_path: Path, **gateway: Any) -> Settings:
    """Settings under ``tmp_path`` (``home``) with a fresh keyring and the admin token.

    ``gateway`` keys override the ``[gateway]`` section; ``store_url`` (a key of its own)
    sets the store.
    """
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    store_url = gateway.pop("store_url", None)
    passport = gateway.pop("passport", {})
    kwargs: dict[str, Any] = {
        "home": home,
        "gateway": {"admin_token": ADMIN_TOKEN, **gateway},
        "passport": passport,
    }
    if store_url:
        kwargs["store"] = {"url": store_url}
    settings = Settings(**kwargs)
    if not settings.keyring_path.exists():
        Keyring.create(settings.keyring_path)
    return settings


def client(gateway: Gateway, agent: Agent | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """A client of ``gateway`` over the ASGI transport, signing as ``agent`` when given."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway),
        base_url=BASE_URL,
        auth=agent.auth() if agent is not None else None,
        **kwargs,
    )


def admin_client(gateway: Gateway, token: str = ADMIN_TOKEN) -> httpx.AsyncClient:
    """An admin client of ``gateway`` (bearer token)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway),
        base_url=BASE_URL,
        headers={"authorization": f"Bearer {token}"},
    )


def chat_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    """A chat completion request body for the stub model."""
    return {"model": "stub-1", "messages": [{"role": "user", "content": text}], **extra}
