"""The application layer: wires the components (store, ledger, privacy, scorer, limiter, upstream,
gateway, console, admin) once and offers the services that span them.

* :class:`Operations` (:mod:`~distillguard.app.operations`): every operator action (overrides,
  analyst verdicts, passports, revocations, checkpoints, ledger audits, legal holds) and the
  audit trail they all write, whichever door they came through.
* :mod:`~distillguard.app.ingest`: ingest, a service above the store, the ledger and privacy.
* :mod:`~distillguard.app.admin`: the admin API, an HTTP door onto :class:`Operations`.
* :func:`create_application`, :func:`create_gateway`, :func:`app_from_environment`
  (:mod:`~distillguard.app.server`): the served application, assembled once from the
  configuration.

Layers inside the package: the services (operations, ingest) sit below the doors (the admin
API, the console), which sit below :mod:`~distillguard.app.server`. The console imports
``distillguard.app.operations``; the server imports the console. Every name here is imported on
first use (PEP 562), so that importing the console, or ingest on an install without the
``gateway`` extra, does not pull in the server. Nothing below the doors imports this package;
the CLI and the server entry points sit above it.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillguard.app.operations import (
        AccountStatus,
        ActionOutcome,
        Actor,
        AuditEntry,
        Door,
        Operations,
        PassportRequest,
        operations_from_settings,
    )
    from distillguard.app.server import (
        Application,
        app_from_environment,
        check_workers,
        create_application,
        create_gateway,
        detected_workers,
        tune_gc_for_serving,
    )

_OPERATIONS = frozenset(
    {
        "AccountStatus",
        "ActionOutcome",
        "Actor",
        "AuditEntry",
        "Door",
        "Operations",
        "PassportRequest",
        "operations_from_settings",
    }
)
_SERVER = frozenset(
    {
        "Application",
        "app_from_environment",
        "check_workers",
        "create_application",
        "create_gateway",
        "detected_workers",
        "tune_gc_for_serving",
    }
)

__all__ = [
    "AccountStatus",
    "ActionOutcome",
    "Actor",
    "Application",
    "AuditEntry",
    "Door",
    "Operations",
    "PassportRequest",
    "app_from_environment",
    "check_workers",
    "create_application",
    "create_gateway",
    "detected_workers",
    "operations_from_settings",
    "tune_gc_for_serving",
]


def __getattr__(name: str) -> Any:
    """The package's names, imported from their module on first use."""
    home: ModuleType
    if name in _OPERATIONS:
        from distillguard.app import operations

        home = operations
    elif name in _SERVER:
        from distillguard.app import server

        home = server
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
