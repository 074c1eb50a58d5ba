"""Shared fixtures of the watermark tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from distillguard.keyring import WatermarkKey

KeyFactory = Callable[[int], WatermarkKey]


def _make_key(seed: int) -> WatermarkKey:
    secret = seed.to_bytes(4, "little") * 8
    return WatermarkKey(
        kid=f"wm-{seed}", created_at=datetime(2026, 1, 1, tzinfo=UTC), secret=secret
    )


@pytest.fixture
def make_key() -> KeyFactory:
    """A factory of deterministic 32-byte watermark keys, one per seed."""
    return _make_key


@pytest.fixture
def key() -> WatermarkKey:
    """One fixed key."""
    return _make_key(7)
