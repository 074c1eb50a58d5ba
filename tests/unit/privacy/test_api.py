"""The public API of ``distillguard.privacy``: ``__all__`` and docstrings."""

from __future__ import annotations

import inspect

import distillguard.privacy as privacy
from distillguard.privacy import _holds, _minimise, _policy, _redact, _retention


def test_all_names_exist_and_are_documented() -> None:
    for name in privacy.__all__:
        obj = getattr(privacy, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name


def test_modules_export_what_they_define() -> None:
    for module in (_holds, _minimise, _policy, _redact, _retention):
        assert module.__doc__
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
        public = {
            n
            for n, o in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(o) or inspect.isfunction(o))
            and getattr(o, "__module__", None) == module.__name__
        }
        assert public <= set(module.__all__), (module.__name__, public - set(module.__all__))
