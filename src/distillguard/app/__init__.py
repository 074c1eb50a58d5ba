"""The application layer: wires the components (store, ledger, privacy, scorer, limiter, upstream,
gateway, console, admin) once and offers the services that span them.

* :class:`Operations` (:mod:`~distillguard.app.operations`): every operator action (overrides,
  analyst verdicts, passports, revocations, checkpoints, ledger audits, legal holds) and the
  audit trail they all write, whichever door they came through.
* :mod:`~distillguard.app.admin`: the admin API, an HTTP door onto :class:`Operations`.
* :func:`create_application`, :func:`create_gateway`, :func:`app_from_environment`
  (:mod:`~distillguard.app.server`): the served application, assembled once from the
  configuration.

Layers inside the package: :mod:`~distillguard.app.operations` (and the other services) sit
below the doors (the admin API, the console), which sit below :mod:`~distillguard.app.server`.
The console imports the operations service; the server imports the console. So that importing
the console first works, the server's names are imported from here on first use (PEP 562).
Nothing below the doors imports this package; the CLI and the server entry points sit above it.
"""

from typing import TYPE_CHECKING, Any

from distillguard.app.operations import (
    AccountStatus,
    ActionOutcome,
    Actor,
    AuditEntry,
    Door,
    Operations,
    PassportRequest,
)

if TYPE_CHECKING:
    from distillguard.app.server import (
        Application,
        app_from_environment,
        check_workers,
        create_application,
        create_gateway,
        detected_workers,
        tune_gc_for_serving,
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
    "tune_gc_for_serving",
]


def __getattr__(name: str) -> Any:
    """The server's names, imported on first use (see the module documentation)."""
    if name in _SERVER:
        from distillguard.app import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
