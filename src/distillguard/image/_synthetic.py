"""Natural-looking test images made locally, for tests, benchmarks and robustness tables.

Nothing is downloaded: each image is a mix of smooth gradients (sky, lighting), a 1/f ("pink")
noise field (the power spectrum of natural scenes falls off roughly as 1/f²), soft-edged shapes
(objects with edges) and fine texture, with a colour palette drawn from the seed. The same seed
gives the same image.

>>> from distillguard.image._synthetic import synthetic_image
>>> synthetic_image(seed=1, width=64, height=48).shape
(48, 64, 3)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["synthetic_image"]


def _pink_noise(
    rng: np.random.Generator, height: int, width: int, slope: float
) -> NDArray[np.float64]:
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = rng.standard_normal((height, fx.shape[1])) + 1j * rng.standard_normal(
        (height, fx.shape[1])
    )
    field = np.fft.irfft2(spectrum / radius**slope, s=(height, width))
    field -= field.mean()
    return np.asarray(field / (field.std() + 1e-12))


def synthetic_image(*, seed: int, width: int = 512, height: int = 512) -> NDArray[np.uint8]:
    """A deterministic natural-looking RGB image, ``height × width × 3`` ``uint8``.

    Args:
        seed: selects the image; the same seed gives the same pixels.
        width: width in pixels (at least 8).
        height: height in pixels (at least 8).
    """
    if width < 8 or height < 8:
        raise ValueError("synthetic images are at least 8×8 pixels")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy /= height
    xx /= width
    palette = rng.uniform(20, 235, size=(4, 3))
    # Smooth gradients.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-12)
    image = palette[0] * (1 - ramp[..., None]) + palette[1] * ramp[..., None]
    # Large-scale 1/f structure (clouds, terrain) and fine texture.
    slope = rng.uniform(0.9, 1.4)
    clouds = _pink_noise(rng, height, width, slope)
    image += clouds[..., None] * rng.uniform(10, 35) * rng.uniform(0.6, 1.0, size=3)
    # Soft-edged shapes (objects).
    for _ in range(int(rng.integers(3, 9))):
        cy, cx = rng.uniform(0, 1, size=2)
        ry, rx = rng.uniform(0.05, 0.3, size=2)
        dist = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        edge = rng.uniform(0.02, 0.3)
        alpha = 1.0 / (1.0 + np.exp(np.minimum((dist - 1.0) / edge, 60.0)))
        colour = palette[int(rng.integers(2, 4))] * rng.uniform(0.6, 1.2)
        shade = 1.0 + 0.15 * _pink_noise(rng, height, width, 1.8)
        image = image * (1 - alpha[..., None]) + (colour * shade[..., None]) * alpha[..., None]
    texture = _pink_noise(rng, height, width, 0.5)
    image += texture[..., None] * rng.uniform(1.0, 6.0)
    out: NDArray[np.uint8] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out
