"""Fixtures of the image tests: a fixed watermark key and images made locally."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from distillguard.image import synthetic_image
from distillguard.keyring import WatermarkKey


def make_key(seed: int) -> WatermarkKey:
    """A watermark key with a secret derived from ``seed`` (tests only)."""
    secret = np.random.default_rng(seed).bytes(32)
    return WatermarkKey(kid=f"wm-test-{seed}", created_at=datetime.now(UTC), secret=secret)


def encode(pixels: NDArray[np.uint8], fmt: str = "PNG", **options: int) -> bytes:
    """Encode pixels with Pillow."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="session")
def key() -> WatermarkKey:
    """The watermark key most tests use."""
    return make_key(1)


@pytest.fixture(scope="session")
def photo() -> NDArray[np.uint8]:
    """A 384×320 natural-looking RGB image."""
    return synthetic_image(seed=7, width=384, height=320)
