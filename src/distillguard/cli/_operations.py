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
    """The actor of a command: ``name`` (an ``--actor`` option) or the OS user.

    Raises:
        InputError: an empty ``name``.
    """
    from distillguard.app.operations import Actor

    if name is None:
        try:
            name = getpass.getuser()
        except Exception:  # no user name in the environment or the password database
            name = "unknown"
    return Actor(name=name, door="cli")


def open_operations(
    settings: Settings, *, keys: bool = True, store_url: str | None = None
) -> Operations:
    """The service over the settings' store and registry (close it); ``keys``: with the
    keyring's passport and ledger keys (False: the keyring is not opened); ``store_url``: over
    that store instead (a ``--store`` option; no keys)."""
    from distillguard.app.operations import Operations, operations_from_settings

    if store_url is None:
        return operations_from_settings(settings, keys=keys)
    from distillguard.passport import open_registry
    from distillguard.store import open_store

    store = open_store(store_url)
    try:
        registry = open_registry(settings)
    except BaseException:
        store.close()
        raise
    try:
        return Operations(
            store=store,
            registry=registry,
            ledger_origin=settings.ledger.origin,
            close_registry=True,
        )
    except BaseException:
        store.close()
        registry.close()
        raise
