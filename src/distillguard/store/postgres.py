"""PostgreSQL backend (psycopg 3): for several gateway replicas and larger deployments."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from distillguard.errors import StoreConnectionError
from distillguard.records import Exchange
from distillguard.store._migrations import open_schema
from distillguard.store.base import (
    EXCHANGE_COLUMNS,
    Cursor,
    Store,
    StoredExchange,
    exchange_row,
)

__all__ = ["DEFAULT_POOL_SIZE", "PostgresStore", "split_pool_size", "split_schema"]

logger = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_schema(url: str) -> tuple[str, str | None]:
    """Remove DistillGuard's ``schema=NAME`` query parameter from a PostgreSQL URL.

    Returns the URL psycopg should connect to and the schema name (None for the default).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    clean = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise StoreConnectionError(
            f"invalid schema name {schema!r} in the store URL",
            hint="use lower-case letters, digits and underscores",
        )
    return clean, schema


#: Batches of at least this many exchanges empty the staging table with TRUNCATE.
_TRUNCATE_FROM = 256


#: Connections a PostgreSQL store keeps open at most (``?pool_size=N`` in the URL changes it).
DEFAULT_POOL_SIZE = 8
#: Seconds a transaction waits for a free connection before :class:`StoreConnectionError`.
POOL_TIMEOUT_S = 30.0


def split_pool_size(url: str) -> tuple[str, int]:
    """Remove DistillGuard's ``pool_size=N`` query parameter (1..256) from a PostgreSQL URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = next((v for k, v in query if k == "pool_size"), None)
    rest = [(k, v) for k, v in query if k != "pool_size"]
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    if given is None:
        return clean, DEFAULT_POOL_SIZE
    if not given.isdigit() or not 1 <= int(given) <= 256:
        raise StoreConnectionError(
            f"invalid pool_size {given!r} in the store URL", hint="use a number from 1 to 256"
        )
    return clean, int(given)


class PostgresStore(Store):
    """A store in a PostgreSQL database (``postgresql://user@host:5432/db[?schema=NAME]
    [&pool_size=N]``).

    Connections come from a pool (``psycopg_pool``; at most ``pool_size``, default
    :data:`DEFAULT_POOL_SIZE`): each :meth:`transaction` takes one for its duration, and nested
    transactions in the same thread reuse it (savepoints), so several threads (the gateway's
    workers) use one store at once without a lock. Bulk inserts go through ``COPY`` into a
    temporary staging table and one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, which is
    safe with several writers.

    Misfires: a transaction that waits more than :data:`POOL_TIMEOUT_S` for a connection (every
    one busy) raises :class:`StoreConnectionError`; size the pool to the threads that use it.
    """

    dialect: ClassVar[Literal["sqlite", "postgresql"]] = "postgresql"
    _TYPES: ClassVar[dict[str, str]] = {
        "blob": "BYTEA",
        "bigint": "BIGINT",
        "text": "TEXT",
        "double": "DOUBLE PRECISION",
    }

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        super().__init__(url)
        from distillguard._internal.extras import require_extra

        require_extra("postgres", "the PostgreSQL store", ["psycopg", "psycopg_pool"])
        import psycopg
        from psycopg_pool import ConnectionPool

        conninfo, self.schema = split_schema(url)
        conninfo, self.pool_size = split_pool_size(conninfo)
        self._local = threading.local()
        schema = self.schema

        def configure(conn: psycopg.Connection[Any]) -> None:
            if schema:
                conn.execute(f'SET search_path TO "{schema}"')

        # One direct connection first: its error says what is wrong (the pool's would not), and
        # it creates the schema and checks (or creates) the tables while the pool fills.
        try:
            probe = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            from distillguard.config import mask_url, scrub_url_secrets

            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreConnectionError(  # the driver may echo parts of a misparsed password
                f"cannot connect to PostgreSQL at {mask_url(conninfo)}: "
                f"{scrub_url_secrets(why, conninfo)}",
                hint="check that the server runs and the URL, user and database are right",
            ) from None
        with probe:
            if schema:  # UniqueViolation: another process created it at the same moment
                with suppress(psycopg.errors.UniqueViolation):
                    probe.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            configure(probe)
            self._local.conn = probe  # transactions below run on it
            try:
                open_schema(self, check=check_schema)  # an empty database is created at the head
            finally:
                self._local.conn = None
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, "connect_timeout": 10},
            configure=configure,
            timeout=POOL_TIMEOUT_S,
            name=f"distillguard-{schema or 'public'}",
            open=True,
        )

    def q(self, sql: str) -> str:
        """Convert ``?`` placeholders to psycopg's ``%s`` (escaping literal ``%``)."""
        return sql.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A transaction on a pooled connection; nested calls in the same thread become
        savepoints on the same connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
            return
        from psycopg_pool import PoolTimeout

        try:
            pooled = self._pool.connection()
            conn = pooled.__enter__()
        except PoolTimeout:
            raise StoreConnectionError(
                f"no PostgreSQL connection free after {POOL_TIMEOUT_S:g} s "
                f"(pool of {self.pool_size})",
                hint="raise pool_size in the store URL, or use fewer threads",
            ) from None
        self._local.conn = conn
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except BaseException as exc:
            self._local.conn = None
            if not pooled.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            self._local.conn = None
            pooled.__exit__(None, None, None)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def _autocommit(self, sql: str) -> None:
        """Run one statement outside any transaction (``VACUUM``, ``DROP SCHEMA``)."""
        with self._pool.connection() as conn:
            conn.execute(sql)

    def finish_erasure(self) -> None:
        """``VACUUM`` the exchanges table (see the base class for what this does not remove)."""
        import psycopg

        try:
            self._autocommit("VACUUM exchanges")
        except psycopg.Error as exc:
            logger.warning("VACUUM after erasure failed: %s", str(exc).strip())

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests and tear-down only)."""
        if not self.schema:
            raise StoreConnectionError("refusing to drop the default schema")
        self._autocommit(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def _insert_exchanges(
        self,
        cur: Cursor,
        batch: Sequence[tuple[Exchange, bytes]],
        *,
        run_id: str,
        now_us: int,
    ) -> list[StoredExchange]:
        cols = [c for c in EXCHANGE_COLUMNS if c != "seq"]
        collist = ", ".join(cols)
        # No constraints: CREATE TABLE AS copies only the column types. Created in the caller's
        # transaction (a rollback removes it again), hence IF NOT EXISTS on every batch.
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS dg_stage ON COMMIT DELETE ROWS AS "
            "SELECT 0::BIGINT AS ord, * FROM exchanges WITH NO DATA"
        )
        rows: list[tuple[Any, ...]] = []
        for i, (exchange, salt) in enumerate(batch):
            row = exchange_row(exchange, seq=0, salt=salt, run_id=run_id, now_us=now_us)
            rows.append((i, *row[:1], *row[2:]))
        with cur.copy(f"COPY dg_stage (ord, {collist}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO exchanges (seq, {collist}) "
            f"SELECT nextval('exchanges_seq_gen'), {collist} FROM dg_stage ORDER BY ord "
            "ON CONFLICT (exchange_id) DO NOTHING RETURNING exchange_id, seq"
        )
        got = {r[0]: int(r[1]) for r in cur.fetchall()}
        # A bulk batch empties the staging table with TRUNCATE: in a run that is one transaction
        # (atomic ingest) rows DELETEd stay in the table as dead tuples until the commit, and
        # every later batch's INSERT ... SELECT scanned all of them again. TRUNCATE costs about
        # 2 ms, so the gateway's small batches (their own short transactions) keep DELETE.
        cur.execute("TRUNCATE dg_stage" if len(rows) >= _TRUNCATE_FROM else "DELETE FROM dg_stage")
        return [
            StoredExchange(exchange=e, salt=s, seq=got[e.exchange_id])
            for e, s in batch
            if e.exchange_id in got
        ]

    def _insert_rows(
        self, cur: Cursor, rows: Sequence[Sequence[Any]], *, run_id: str, now_us: int
    ) -> list[int]:
        cols = [c for c in EXCHANGE_COLUMNS if c != "seq"]
        collist = ", ".join(cols)
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS dg_stage ON COMMIT DELETE ROWS AS "
            "SELECT 0::BIGINT AS ord, * FROM exchanges WITH NO DATA"
        )
        with cur.copy(f"COPY dg_stage (ord, {collist}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            write = copy.write_row
            for i, row in enumerate(rows):
                write((i, *row, run_id, now_us))
        cur.execute(
            f"INSERT INTO exchanges (seq, {collist}) "
            f"SELECT nextval('exchanges_seq_gen'), {collist} FROM dg_stage ORDER BY ord "
            "ON CONFLICT (exchange_id) DO NOTHING RETURNING exchange_id, seq"
        )
        got = {r[0]: int(r[1]) for r in cur.fetchall()}
        cur.execute("TRUNCATE dg_stage" if len(rows) >= _TRUNCATE_FROM else "DELETE FROM dg_stage")
        return [got.get(row[0], 0) for row in rows]
