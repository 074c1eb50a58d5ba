"""Round trips, robustness to mild attacks, exact p-values and clean-image false positives."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import Image, ImageFilter
from scipy.stats import binom

from distillguard.errors import InputError
from distillguard.image import (
    ImageWatermarkConfig,
    detect_image,
    detect_pixels,
    embed_pixels,
    synthetic_image,
    watermark_image,
)
from distillguard.keyring import WatermarkKey

from .conftest import encode, make_key


def _reload(data: bytes) -> NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / mse))


@settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    payload=st.integers(min_value=0, max_value=2**32 - 1),
    width=st.sampled_from([256, 300, 517, 1024]),
    height=st.sampled_from([256, 333, 480]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_round_trip_any_payload_and_size(
    key: WatermarkKey, payload: int, width: int, height: int, seed: int
) -> None:
    image = synthetic_image(seed=seed, width=width, height=height)
    marked = embed_pixels(image, payload=payload, key=key)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    result = detect_pixels(marked, key=key, claimed_payload=payload)
    assert result.detected
    assert result.payload == payload
    assert result.bit_accuracy == 1.0
    assert result.p_value == pytest.approx(2.0**-32)


@pytest.mark.parametrize("size", [(160, 160), (128, 300), (200, 150)])
def test_small_images_weaker_but_detected(key: WatermarkKey, size: tuple[int, int]) -> None:
    """Below 256 px a side chips are under 2 px: still detected, a few payload bits may flip."""
    for seed in range(4):
        image = synthetic_image(seed=seed, width=size[0], height=size[1])
        result = detect_pixels(
            embed_pixels(image, payload=0x0F0F0F0F, key=key), key=key, claimed_payload=0x0F0F0F0F
        )
        assert result.blind_p_value <= 1e-6
        assert result.bit_accuracy is not None and result.bit_accuracy >= 0.9


@pytest.mark.parametrize("bits", [16, 24, 48, 64])
def test_payload_widths(key: WatermarkKey, photo: NDArray[np.uint8], bits: int) -> None:
    cfg = ImageWatermarkConfig(payload_bits=bits, sync_bits=32)
    payload = (1 << bits) - 3
    marked = embed_pixels(photo, payload=payload, key=key, config=cfg)
    result = detect_pixels(marked, key=key, config=cfg)
    assert result.payload == payload and result.detected
    assert result.blind_p_value <= 2.0 * 2.0**-32


def test_invisible(key: WatermarkKey) -> None:
    for seed in range(3):
        image = synthetic_image(seed=seed, width=512, height=512)
        marked = embed_pixels(image, payload=123, key=key)
        assert psnr(image, marked) > 38.0
        assert int(np.abs(image.astype(int) - marked.astype(int)).max()) <= 8


def test_bytes_api_keeps_format_and_alpha(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    alpha = np.full(photo.shape[:2], 200, dtype=np.uint8)
    rgba = np.dstack([photo, alpha])
    marked = watermark_image(encode(rgba), payload=5, key=key)
    img = Image.open(io.BytesIO(marked))
    assert img.format == "PNG" and img.mode == "RGBA"
    assert np.array_equal(np.asarray(img)[..., 3], alpha)
    assert detect_image(marked, key=key, claimed_payload=5).bit_accuracy == 1.0
    as_jpeg = watermark_image(encode(photo), payload=5, key=key, output_format="JPEG")
    assert Image.open(io.BytesIO(as_jpeg)).format == "JPEG"
    assert detect_image(as_jpeg, key=key).payload == 5


def _jpeg(a: NDArray[np.uint8], quality: int) -> NDArray[np.uint8]:
    return _reload(encode(a, "JPEG", quality=quality))


def _resize(a: NDArray[np.uint8], factor: float) -> NDArray[np.uint8]:
    h, w = a.shape[:2]
    size = (int(w * factor), int(h * factor))
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC))


def _crop(a: NDArray[np.uint8], area: float) -> NDArray[np.uint8]:
    h, w = a.shape[:2]
    side = np.sqrt(1.0 - area)
    ch, cw = int(h * side), int(w * side)
    return a[(h - ch) // 3 : (h - ch) // 3 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]


def _screenshot(a: NDArray[np.uint8]) -> NDArray[np.uint8]:
    img = Image.fromarray(a)
    img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(
        Image.open(io.BytesIO(encode(np.asarray(img)))).convert("YCbCr").convert("RGB")
    )


MILD_ATTACKS = {
    "jpeg70": lambda a: _jpeg(a, 70),
    "jpeg50": lambda a: _jpeg(a, 50),
    "resize0.5": lambda a: _resize(a, 0.5),
    "resize1.5": lambda a: _resize(a, 1.5),
    "crop10": lambda a: _crop(a, 0.10),
    "crop30": lambda a: _crop(a, 0.30),
    "brightness+25": lambda a: np.clip(a.astype(int) + 25, 0, 255).astype(np.uint8),
    "contrast0.7": lambda a: np.clip((a.astype(float) - 128) * 0.7 + 128, 0, 255).astype(np.uint8),
    "screenshot": _screenshot,
}


@pytest.mark.parametrize("attack", sorted(MILD_ATTACKS))
def test_survives_mild_attacks(key: WatermarkKey, attack: str) -> None:
    accuracies = []
    detected = 0
    for seed in range(4):
        image = synthetic_image(seed=200 + seed, width=512, height=512)
        payload = 0x5EED0000 + seed
        attacked = MILD_ATTACKS[attack](embed_pixels(image, payload=payload, key=key))
        result = detect_pixels(attacked, key=key, claimed_payload=payload)
        assert result.bit_accuracy is not None
        accuracies.append(result.bit_accuracy)
        detected += result.blind_p_value <= 1e-3
    assert detected == 4
    assert float(np.mean(accuracies)) >= 0.95


def test_wrong_key_does_not_detect(photo: NDArray[np.uint8]) -> None:
    marked = embed_pixels(photo, payload=77, key=make_key(1))
    result = detect_pixels(marked, key=make_key(2), claimed_payload=77)
    assert not result.detected
    assert result.blind_p_value > 1e-3


def test_clean_images_p_values_are_valid() -> None:
    """P(p <= a) <= a on unwatermarked images: exact test, measured (fixed seeds)."""
    keys = [make_key(100 + i) for i in range(2)]
    p_values = []
    for seed in range(40):
        image = synthetic_image(seed=5000 + seed, width=160, height=128)
        for k in keys:
            p_values.append(detect_pixels(image, key=k).blind_p_value)
    p = np.array(p_values)
    n = len(p)
    for level in (0.01, 0.05, 0.2):
        # Allowed: the 99.9% upper quantile of Binomial(n, level).
        assert int(np.sum(p <= level)) <= int(binom.ppf(0.999, n, level))
    assert int(np.sum(p <= 1e-3)) <= 2


def test_claimed_payload_p_value_is_binomial_tail(
    key: WatermarkKey, photo: NDArray[np.uint8]
) -> None:
    marked = embed_pixels(photo, payload=0, key=key)
    claim = 0b1111  # four payload bits differ from the embedded zeros
    result = detect_pixels(marked, key=key, claimed_payload=claim)
    assert result.payload_matches == 28
    assert result.p_value == pytest.approx(float(binom.sf(27, 32, 0.5)))
    assert result.bit_accuracy == pytest.approx(28 / 32)


def test_payload_out_of_range(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    with pytest.raises(InputError):
        embed_pixels(photo, payload=2**32, key=key)
    with pytest.raises(InputError):
        embed_pixels(photo, payload=-1, key=key)
    with pytest.raises(InputError):
        detect_pixels(photo, key=key, alpha=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"payload_bits": 8}, {"payload_bits": 65}, {"sync_bits": 4}, {"strength": 0.0}],
)
def test_config_bounds(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError):
        ImageWatermarkConfig(**kwargs)  # type: ignore[arg-type]


def test_deterministic_for_a_key(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    a = embed_pixels(photo, payload=9, key=key)
    b = embed_pixels(photo, payload=9, key=key)
    c = embed_pixels(photo, payload=9, key=make_key(3))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
