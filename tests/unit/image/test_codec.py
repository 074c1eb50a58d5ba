"""Bad input: not an image, truncated files, tiny and huge images, unusual modes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from distillguard.errors import ImageFormatError
from distillguard.image import detect_image, embed_pixels, watermark_image
from distillguard.image._codec import MAX_PIXELS, decode_image
from distillguard.keyring import WatermarkKey

from .conftest import encode


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` (the pixel data is tiny and wrong)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff\xe0" * 8],
)
def test_not_an_image(key: WatermarkKey, data: bytes) -> None:
    with pytest.raises(ImageFormatError):
        detect_image(data, key=key)
    with pytest.raises(ImageFormatError):
        watermark_image(data, payload=1, key=key)


def test_truncated_jpeg(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    data = encode(photo, "JPEG", quality=90)
    with pytest.raises(ImageFormatError, match=r"truncated|cannot decode"):
        detect_image(data[: len(data) // 2], key=key, name="half.jpg")


def test_truncated_images_are_refused_even_if_pillow_is_told_to_load_them(
    key: WatermarkKey, photo: NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as WeasyPrint's import does
    data = encode(photo, "JPEG", quality=90)
    with pytest.raises(ImageFormatError, match=r"truncated|cannot decode"):
        detect_image(data[: len(data) // 2], key=key, name="half.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the process-wide setting is restored


def test_truncated_png(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    data = encode(photo)
    with pytest.raises(ImageFormatError):
        detect_image(data[: len(data) // 3], key=key)


@pytest.mark.parametrize("size", [(64, 400), (400, 100), (8, 8)])
def test_too_small(key: WatermarkKey, size: tuple[int, int]) -> None:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    with pytest.raises(ImageFormatError, match="too small"):
        watermark_image(encode(pixels), payload=1, key=key)
    with pytest.raises(ImageFormatError, match="too small"):
        embed_pixels(pixels, payload=1, key=key)


def test_huge_dimensions_refused_before_decoding(key: WatermarkKey) -> None:
    data = _png_with_size(60_000, 60_000)
    assert MAX_PIXELS < 60_000 * 60_000
    with pytest.raises(ImageFormatError, match=r"limit|larger"):
        detect_image(data, key=key)


def test_bad_arrays(key: WatermarkKey) -> None:
    with pytest.raises(ImageFormatError):
        embed_pixels(np.zeros((200, 200, 4), dtype=np.uint8), payload=1, key=key)
    with pytest.raises(ImageFormatError):
        embed_pixels(np.zeros((200, 200, 3), dtype=np.float32), payload=1, key=key)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "I;16", "1"])
def test_modes_round_trip(key: WatermarkKey, photo: NDArray[np.uint8], mode: str) -> None:
    img = Image.fromarray(photo)
    if mode == "I;16":
        source = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 200)
    elif mode == "LA":
        source = img.convert("L")
        source.putalpha(180)
    else:
        source = img.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    source.save(buf, format=fmt)
    marked = watermark_image(buf.getvalue(), payload=4242, key=key)
    decoded = decode_image(marked)
    if mode in ("RGBA", "LA"):
        assert decoded.alpha is not None
    result = detect_image(marked, key=key, claimed_payload=4242)
    assert result.detected, mode
    if mode == "1":
        # A 1-bit image becomes 8-bit grayscale of pure black and white: clipping halves the
        # mark (pixels can only move one way), so some payload bits may flip.
        assert decoded.grayscale
        assert result.bit_accuracy is not None and result.bit_accuracy >= 0.75
    else:
        assert result.payload == 4242


def test_grayscale_stays_grayscale(key: WatermarkKey, photo: NDArray[np.uint8]) -> None:
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    marked = embed_pixels(gray, payload=3, key=key)
    assert marked.ndim == 2
    assert decode_image(encode(marked)).grayscale
