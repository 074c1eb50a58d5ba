"""DistillGuard: protect a model from illicit distillation."""

from __future__ import annotations

# A part of DistillGuard imported without its extra (``distillguard.gateway`` without
# ``distillguard[gateway]``) raises one error naming the extra (see _internal/extras.py).
from distillguard._internal.extras import install_import_hook

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata when first asked for: importing
    ``importlib.metadata`` was a third of ``distillguard --help``'s start-up (issue 25)."""
    if name != "__version__":
        raise AttributeError(f"module 'distillguard' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("distillguard")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found


install_import_hook()
