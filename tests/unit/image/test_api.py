"""``distillguard.image``: no secrets in reprs or logs (``__all__`` is in test_public_api)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from numpy.typing import NDArray

from distillguard.image import detect_pixels, embed_pixels, make_test_credentials
from distillguard.keyring import WatermarkKey


def test_secrets_stay_out_of_reprs_and_logs(
    key: WatermarkKey, photo: NDArray[np.uint8], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="distillguard"):
        result = detect_pixels(embed_pixels(photo, payload=1, key=key), key=key)
    text = caplog.text + repr(result) + str(result.to_dict())
    assert key.secret.hex() not in text
    assert key.kid in repr(result)
    creds = make_test_credentials()
    raw = creds.credentials.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw.hex() not in repr(creds)
    assert "private_key" not in repr(creds.credentials)
