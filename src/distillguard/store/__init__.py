"""Persistence of records: a SQLite file by default, PostgreSQL by URL.

>>> from distillguard.store import open_store
>>> store = open_store("sqlite://")          # in memory; "sqlite:///path/store.sqlite" for a file
>>> store.count("exchanges")
0
"""

from __future__ import annotations

from distillguard.errors import ConfigurationError
from distillguard.store._queries import (
    Activity,
    InfraUse,
    account_exchange_count,
    account_exchanges,
    activity,
    infrastructure,
    one_exchange_per_account,
)
from distillguard.store.base import Cursor, InsertHook, InsertHooks, Store, StoredExchange

__all__ = [
    "Activity",
    "Cursor",
    "InfraUse",
    "InsertHook",
    "InsertHooks",
    "Store",
    "StoredExchange",
    "account_exchange_count",
    "account_exchanges",
    "activity",
    "infrastructure",
    "one_exchange_per_account",
    "open_store",
]


def open_store(url: str) -> Store:
    """Open (and create or migrate) the store at ``url``.

    ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``, ``sqlite://`` (in
    memory), or ``postgresql://user@host:port/db[?schema=NAME]``.

    Raises:
        ConfigurationError: the URL scheme is not supported.
        StoreConnectionError: the database cannot be opened or reached.
    """
    if url.startswith("sqlite://"):
        from distillguard.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from distillguard.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError(
        f"unsupported store URL {url.split('://')[0]!r}://...",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )
