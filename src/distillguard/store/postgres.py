"""PostgreSQL backend (psycopg 3): for several gateway replicas and larger deployments."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from distillguard.errors import StoreConnectionError
from distillguard.records.model import Exchange
from distillguard.store.base import (
    EXCHANGE_COLUMNS,
    Cursor,
    Store,
    StoredExchange,
    exchange_row,
)

__all__ = ["PostgresStore", "split_schema"]

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


class PostgresStore(Store):
    """A store in a PostgreSQL database (``postgresql://user@host:5432/db[?schema=NAME]``).

    Bulk inserts go through ``COPY`` into a temporary staging table and one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, which is safe with several writers.
    """

    dialect: ClassVar[Literal["sqlite", "postgresql"]] = "postgresql"
    _TYPES: ClassVar[dict[str, str]] = {
        "blob": "BYTEA",
        "bigint": "BIGINT",
        "text": "TEXT",
        "double": "DOUBLE PRECISION",
    }

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import psycopg

        conninfo, self.schema = split_schema(url)
        try:
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            from distillguard.config import mask_url, scrub_url_secrets

            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreConnectionError(  # the driver may echo parts of a misparsed password
                f"cannot connect to PostgreSQL at {mask_url(conninfo)}: "
                f"{scrub_url_secrets(why, conninfo)}",
                hint="check that the server runs and the URL, user and database are right",
            ) from None
        if self.schema:
            self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            self._conn.execute(f'SET search_path TO "{self.schema}"')
        self.migrate()

    def q(self, sql: str) -> str:
        """Convert ``?`` placeholders to psycopg's ``%s`` (escaping literal ``%``)."""
        return sql.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A transaction (nested calls become savepoints)."""
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def finish_erasure(self) -> None:
        """``VACUUM`` the exchanges table (see the base class for what this does not remove)."""
        import psycopg

        try:
            self._conn.execute("VACUUM exchanges")
        except psycopg.Error as exc:
            logger.warning("VACUUM after erasure failed: %s", str(exc).strip())

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests and tear-down only)."""
        if not self.schema:
            raise StoreConnectionError("refusing to drop the default schema")
        self._conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

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

    def migrate(self) -> None:
        """Create the core tables and the sequence that numbers exchanges."""
        super().migrate()
        with self.transaction() as cur:
            cur.execute("CREATE SEQUENCE IF NOT EXISTS exchanges_seq_gen")
