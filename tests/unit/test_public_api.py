"""Every public module of DistillGuard: a docstring, an exact ``__all__``, documented exports.

Public means every module whose dotted path has no part starting with ``_`` (``_internal``,
``_engine``...). Each must say what it is for, list its public names in ``__all__`` (no
duplicates, nothing missing that it defines), and give each exported class and function a
docstring. Command modules (``distillguard.cli.*``) export ``register`` and their commands are
the command line, not Python API, so only the first two rules apply to them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import distillguard


def _public_modules() -> list[str]:
    names = [distillguard.__name__]
    for info in pkgutil.walk_packages(distillguard.__path__, prefix="distillguard."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = _public_modules()


def test_the_walk_finds_the_packages() -> None:
    for expected in ("distillguard.records", "distillguard.store", "distillguard.ledger"):
        assert expected in PUBLIC_MODULES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_module_has_docstring_and_exact_all(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name}.{attr} has no docstring"
    if name.startswith("distillguard.cli."):
        return  # command modules: their commands are the CLI, registered by register()
    defined = {
        n
        for n, o in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(o) or inspect.isfunction(o))
        and getattr(o, "__module__", None) == name
    }
    missing = defined - set(exported)
    assert not missing, f"{name} defines {sorted(missing)} but leaves them out of __all__"
