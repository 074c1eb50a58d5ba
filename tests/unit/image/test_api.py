"""The public API of ``distillguard.image``: ``__all__`` everywhere, docstrings, no secrets."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from numpy.typing import NDArray

import distillguard.image as pkg
from distillguard.image import detect_pixels, embed_pixels, make_test_credentials
from distillguard.keyring import WatermarkKey


def public_modules() -> list[str]:
    names = [pkg.__name__]
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            names.append(f"{pkg.__name__}.{info.name}")
    return names


def test_all_lists_exactly_documented_public_objects() -> None:
    for name in public_modules():
        module = importlib.import_module(name)
        assert module.__doc__, name
        exported = module.__all__
        assert len(exported) == len(set(exported)), name
        for attr in exported:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{name}.{attr} has no docstring"
        defined = {
            n
            for n, o in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(o) or inspect.isfunction(o))
            and getattr(o, "__module__", None) == name
        }
        assert defined <= set(exported), f"{name}: {defined - set(exported)} not in __all__"


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
