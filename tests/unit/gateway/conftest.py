"""Fixtures of the gateway tests: settings with a keyring, the gateway, an agent factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.app import create_gateway
from distillguard.config import Settings
from distillguard.gateway import Gateway
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded settings (SQLite store under tmp_path)."""
    return make_settings(tmp_path)


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Gateway]:
    """A gateway with the stub upstream."""
    gw = create_gateway(settings)
    try:
        yield gw
    finally:
        gw.close_sync()


@pytest.fixture
def agents(settings: Settings) -> AgentFactory:
    """Issues agents registered where the gateway looks."""
    return AgentFactory.from_settings(settings)
