"""Decoding and encoding image bytes with bounds, mode handling and clear errors."""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFile, UnidentifiedImageError

from distillguard.errors import ImageFormatError

__all__ = ["MAX_PIXELS", "MIN_SIDE", "DecodedImage", "decode_image", "encode_image", "luma"]

#: Largest accepted image (pixels): bounds memory and time on hostile input (64 megapixels).
MAX_PIXELS = 64 * 1024 * 1024
#: Smallest accepted side in pixels: below it there is too little room for a watermark.
MIN_SIDE = 128

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of a decoded image: ``rgb`` (H×W×3 uint8, or H×W for grayscale), optional alpha."""

    pixels: NDArray[np.uint8]
    alpha: NDArray[np.uint8] | None
    format: str
    mode: str

    @property
    def grayscale(self) -> bool:
        """True for a one-channel image."""
        return self.pixels.ndim == 2

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


_STRICT = threading.Lock()


@contextmanager
def _strict_loading() -> Iterator[None]:
    """Refuse truncated images while decoding, whatever the process-wide Pillow setting.

    Some libraries set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` when imported (WeasyPrint
    does), which would make a truncated image decode silently with grey rows.
    """
    with _STRICT:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def decode_image(data: bytes, *, name: str = "image") -> DecodedImage:
    """Decode image bytes (JPEG, PNG, WebP, TIFF, ...) into pixels.

    RGB and grayscale images keep their channels; CMYK, palette, 16-bit and other modes become RGB
    or 8-bit grayscale; an alpha channel is kept aside and restored on encoding.

    Raises:
        ImageFormatError: not an image, truncated, too small, too large or an unusable mode.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageFormatError(f"{name}: expected bytes, got {type(data).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size
            _check_size(width, height, name=name)
            with _strict_loading():
                img.load()
    except ImageFormatError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFormatError(
            f"{name}: not a readable image (or larger than {MAX_PIXELS} pixels)",
            hint="give a JPEG, PNG, WebP or TIFF file",
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageFormatError(
            f"{name}: cannot decode the image ({exc})", hint="the file may be truncated"
        ) from None
    fmt = getattr(img, "format", None) or "PNG"
    mode = img.mode
    alpha: NDArray[np.uint8] | None = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint8)
        img = rgba.convert("RGB") if mode != "LA" else img.convert("L")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr16 = np.asarray(img, dtype=np.float64)
        top = max(float(arr16.max()), 1.0)
        img = Image.fromarray(np.clip(np.rint(arr16 * (255.0 / top)), 0, 255).astype(np.uint8))
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    pixels = np.asarray(img, dtype=np.uint8)
    return DecodedImage(pixels=pixels, alpha=alpha, format=fmt, mode=mode)


def _check_size(width: int, height: int, *, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageFormatError(
            f"{name}: {width}×{height} is larger than the {MAX_PIXELS}-pixel limit",
            hint="downscale the image first",
            details={"width": width, "height": height},
        )
    if min(width, height) < MIN_SIDE:
        raise ImageFormatError(
            f"{name}: {width}×{height} is too small (each side needs {MIN_SIDE} pixels or more)",
            details={"width": width, "height": height},
        )


def check_pixels(pixels: NDArray[np.uint8], *, name: str = "image") -> None:
    """Check an in-memory pixel array (H×W×3 or H×W, uint8) like :func:`decode_image` does."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ImageFormatError(f"{name}: expected an H×W×3 or H×W uint8 array")
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ImageFormatError(f"{name}: expected 3 colour channels, got {pixels.shape[2]}")
    _check_size(int(pixels.shape[1]), int(pixels.shape[0]), name=name)


def encode_image(
    pixels: NDArray[np.uint8],
    *,
    alpha: NDArray[np.uint8] | None = None,
    format: str = "PNG",
    quality: int = 95,
) -> bytes:
    """Encode pixels (with an optional alpha channel) as ``format`` (JPEG drops alpha)."""
    fmt = format.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    img = Image.fromarray(pixels)
    if alpha is not None and fmt != "JPEG":
        img.putalpha(Image.fromarray(alpha))
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "PNG":
        img.save(out, format="PNG", compress_level=1)
    else:
        img.save(out, format=fmt)
    return out.getvalue()


def mime_type(fmt: str) -> str:
    """The MIME type of a Pillow format name (``image/png`` when unknown)."""
    return _FORMATS.get(fmt.upper(), "image/png")


def luma(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """BT.601 luma (Y of YCbCr) as float32, H×W."""
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    p = pixels.astype(np.float32)
    return np.asarray(0.299 * p[..., 0] + 0.587 * p[..., 1] + 0.114 * p[..., 2], dtype=np.float32)
