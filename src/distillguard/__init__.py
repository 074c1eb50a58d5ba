"""DistillGuard: protect a model from illicit distillation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("distillguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

# A part of DistillGuard imported without its extra (``distillguard.gateway`` without
# ``distillguard[gateway]``) raises one error naming the extra (see _internal/extras.py).
from distillguard._internal.extras import install_import_hook

install_import_hook()
