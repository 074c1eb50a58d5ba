"""The public API of ``distillguard.watermark``: ``__all__`` everywhere, docstrings, no secrets."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import distillguard.watermark as pkg
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
        assert sorted(exported) == sorted(set(exported)), name
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


def test_reprs_hide_the_secret(key: WatermarkKey) -> None:
    from distillguard.watermark import CaterConfig, CaterWatermark, KGWConfig, KGWWatermark

    secret_hex = key.secret.hex()
    for obj in (KGWWatermark(KGWConfig(), key=key), CaterWatermark(CaterConfig(), key=key)):
        text = repr(obj) + str(vars(obj) if hasattr(obj, "__dict__") else "")
        assert secret_hex not in text
        assert repr(key.secret) not in repr(obj)
