"""Fixtures of the evidence tests (the world itself is in :mod:`distillguard.evidence.testing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.evidence.testing import World, build_world


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> World:
    """The world on each store backend."""
    return build_world(tmp_path, store_url)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> World:
    """The world on SQLite only."""
    return build_world(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")
