"""Persistence of records: a SQLite file by default, PostgreSQL by URL.

>>> from distillguard.store import open_store
>>> store = open_store("sqlite://")          # in memory; "sqlite:///path/store.sqlite" for a file
>>> store.count("exchanges")
0
"""

from __future__ import annotations

from distillguard.errors import ConfigurationError
from distillguard.store._migrations import (
    HEAD as SCHEMA_HEAD,
)
from distillguard.store._migrations import (
    MIGRATIONS,
    AppliedMigration,
    Migration,
    SchemaState,
    applied_migrations,
    schema_state,
)
from distillguard.store._migrations import migrate as migrate_schema
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
    "MIGRATIONS",
    "SCHEMA_HEAD",
    "Activity",
    "AppliedMigration",
    "Cursor",
    "InfraUse",
    "InsertHook",
    "InsertHooks",
    "Migration",
    "SchemaState",
    "Store",
    "StoredExchange",
    "account_exchange_count",
    "account_exchanges",
    "activity",
    "applied_migrations",
    "infrastructure",
    "migrate_schema",
    "one_exchange_per_account",
    "open_store",
    "schema_state",
]


def open_store(url: str, *, check_schema: bool = True) -> Store:
    """Open the store at ``url``.

    ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``, ``sqlite://`` (in
    memory), or ``postgresql://user@host:port/db[?schema=NAME][&pool_size=N]``.

    A new store (none of DistillGuard's tables: a new SQLite file, an empty PostgreSQL database
    or schema) is created at the head schema version. An existing store must be at that version:
    an older one is refused (migrate it with ``distillguard db migrate``), never changed.
    ``check_schema=False`` opens it as it is (what ``distillguard db`` does).

    Raises:
        ConfigurationError: the URL scheme is not supported.
        StoreConnectionError: the database cannot be opened or reached.
        SchemaOutdatedError: the store's schema is older than this DistillGuard.
        SchemaVersionError: the store's schema is newer than this DistillGuard.
    """
    if url.startswith("sqlite://"):
        from distillguard.store.sqlite import SQLiteStore

        return SQLiteStore(url, check_schema=check_schema)
    if url.startswith(("postgresql://", "postgres://")):
        from distillguard.store.postgres import PostgresStore

        return PostgresStore(url, check_schema=check_schema)
    raise ConfigurationError(
        f"unsupported store URL {url.split('://')[0]!r}://...",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )
