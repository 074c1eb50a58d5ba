"""The operations service for the ``distillguard`` commands that change state, so that what
they do is audited (``operations_audit``, door ``cli``) like the admin API and the console."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distillguard.app.operations import Actor, Operations
    from distillguard.config import Settings

__all__ = ["cli_actor", "open_operations"]


def cli_actor(name: str | None = None) -> Actor:
    """The actor of a command: ``name`` (an ``--actor`` option) or the OS user."""
    from distillguard.app.operations import Actor

    if not name or not name.strip():
        try:
            name = getpass.getuser()
        except Exception:  # no user name in the environment or the password database
            name = "unknown"
    return Actor(name=name, door="cli")


def open_operations(settings: Settings, *, keys: bool = True) -> Operations:
    """The service over the settings' store and registry (close it); ``keys``: with the
    keyring's passport and ledger keys (False: the keyring is not opened)."""
    from distillguard.app.operations import operations_from_settings

    return operations_from_settings(settings, keys=keys)
