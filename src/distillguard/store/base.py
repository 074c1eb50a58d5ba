"""The store interface shared by the SQLite and PostgreSQL backends.

A store keeps accounts and exchanges (format v1) plus the tables of other components (the ledger,
privacy holds...), which each component creates with :meth:`Store.ensure_tables`. SQL is written
once with ``?`` placeholders and portable types; :meth:`Store.q` and the ``{blob}``-style type
placeholders adapt it to the backend.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import orjson

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.errors import StorageError
from distillguard.records import EXCHANGE_FIELDS, Account, Exchange, Message
from distillguard.store._cursor import Cursor

__all__ = [
    "ACCOUNT_COLUMNS",
    "EXCHANGE_COLUMNS",
    "Cursor",
    "InsertHook",
    "InsertHooks",
    "Store",
    "StoredExchange",
    "UndecodableExchange",
    "account_from_row",
    "account_row",
    "decode_exchange_row",
    "exchange_from_row",
    "exchange_row",
    "new_salts",
]

logger = logging.getLogger(__name__)

SALT_BYTES = 32
#: The version of the core tables (component ``core``; migrations record it).
SCHEMA_VERSION = 1
_VERSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_versions "
    "(component {text} PRIMARY KEY, version {bigint} NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class StoredExchange:
    """An exchange as stored: the record, its random salt and its insertion sequence number.

    ``seq`` increases with insertion order (1-based); on PostgreSQL it may have gaps.
    """

    exchange: Exchange
    salt: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class UndecodableExchange:
    """A stored exchange row that is not a valid record (altered or corrupted in the database):
    its id and ``seq`` as far as they can be read, the column at fault and what is wrong."""

    exchange_id: str
    seq: int | None
    field: str
    reason: str

    def describe(self) -> str:
        """One line naming the row, the column and the problem."""
        return f"stored exchange {self.exchange_id!r}: column '{self.field}': {self.reason}"


InsertHook = Callable[[Cursor, Sequence[StoredExchange]], None]


class InsertHooks:
    """The named hooks a store runs after each batch of newly stored exchanges, in the batch's
    own transaction and with its cursor (so that what they write commits or rolls back with
    the rows), in the order they were registered.

    The ledger registers as ``"ledger"`` (every stored exchange becomes a leaf) and content
    minimisation as ``"minimisation"`` after it (the ledger commits to the full record first).
    A hook object that needs to find itself again (attach twice, one hook) looks its name up
    with :meth:`get`. A hook that raises aborts the batch: the caller's transaction rolls back.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, InsertHook] = {}

    def __repr__(self) -> str:
        return f"InsertHooks({list(self._hooks)!r})"

    def __len__(self) -> int:
        return len(self._hooks)

    def __contains__(self, name: object) -> bool:
        return name in self._hooks

    def names(self) -> tuple[str, ...]:
        """The registered names, in running order."""
        return tuple(self._hooks)

    def get(self, name: str) -> InsertHook | None:
        """The hook registered as ``name``, or None."""
        return self._hooks.get(name)

    def register(self, name: str, hook: InsertHook, *, after: Sequence[str] = ()) -> None:
        """Run ``hook`` after every later batch, after the hooks registered before it.

        ``after`` names hooks that must already be registered (so that they run first).

        Raises:
            ConfigurationError: ``name`` is taken, or a hook of ``after`` is not registered.
        """
        from distillguard.errors import ConfigurationError

        if name in self._hooks:
            raise ConfigurationError(
                f"an insert hook named {name!r} is already registered on this store",
                hint="look it up with store.insert_hooks.get(name) instead of registering twice",
            )
        missing = [n for n in after if n not in self._hooks]
        if missing:
            raise ConfigurationError(
                f"the insert hook {name!r} must run after {', '.join(map(repr, missing))}, "
                "which is not registered on this store",
                hint=f"register {', '.join(missing)} first",
            )
        self._hooks[name] = hook

    def unregister(self, name: str) -> InsertHook | None:
        """Remove the hook registered as ``name``; returns it, or None if there was none."""
        return self._hooks.pop(name, None)

    def run(self, cur: Cursor, inserted: Sequence[StoredExchange]) -> None:
        """Call every hook with ``cur`` and ``inserted``, in order."""
        for hook in self._hooks.values():
            hook(cur, inserted)


#: Columns of ``exchanges``: the format's fields in their order, with ``seq`` after the id, then
#: the unknown fields, the salt and the ingest bookkeeping.
EXCHANGE_COLUMNS: tuple[str, ...] = (
    EXCHANGE_FIELDS[0],
    "seq",
    *EXCHANGE_FIELDS[1:],
    "extra",
    "salt",
    "ingest_run",
    "ingested_at",
)
ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "org_id",
    "created_at",
    "signup_channel",
    "email_domain",
    "payment_fingerprint",
    "country",
    "tier",
    "extra",
    "ingest_run",
)

_EXCHANGE_COLS = ", ".join(EXCHANGE_COLUMNS)

CORE_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS accounts (
        account_id {text} PRIMARY KEY,
        org_id {text}, created_at {bigint} NOT NULL, signup_channel {text},
        email_domain {text}, payment_fingerprint {text}, country {text}, tier {text},
        extra {text}, ingest_run {text}
    )""",
    """CREATE TABLE IF NOT EXISTS exchanges (
        exchange_id {text} PRIMARY KEY,
        seq {bigint} NOT NULL UNIQUE,
        ts {bigint} NOT NULL, account_id {text} NOT NULL, api_key_id {text}, agent_id {text},
        ip {text} NOT NULL, asn {bigint}, user_agent {text}, client_fingerprint {text},
        model {text} NOT NULL, endpoint {text}, messages {text}, response {text},
        reasoning {text}, tools {text}, prompt_tokens {bigint} NOT NULL,
        completion_tokens {bigint} NOT NULL, status {bigint} NOT NULL, latency_ms {double},
        extra {text}, salt {blob}, ingest_run {text}, ingested_at {bigint}
    )""",
    "CREATE INDEX IF NOT EXISTS exchanges_account_ts ON exchanges (account_id, ts)",
    "CREATE INDEX IF NOT EXISTS exchanges_ts ON exchanges (ts)",
    """CREATE TABLE IF NOT EXISTS ingest_runs (
        run_id {text} PRIMARY KEY, started_at {bigint} NOT NULL, finished_at {bigint},
        source {text}, summary {text}
    )""",
)


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value).decode()


def exchange_row(
    exchange: Exchange, *, seq: int, salt: bytes, run_id: str, now_us: int
) -> tuple[Any, ...]:
    """The row of ``exchanges`` for one record, in :data:`EXCHANGE_COLUMNS` order."""
    messages = [m.to_dict() for m in exchange.messages]
    return (
        exchange.exchange_id,
        seq,
        to_micros(exchange.ts),
        exchange.account_id,
        exchange.api_key_id,
        exchange.agent_id,
        exchange.ip,
        exchange.asn,
        exchange.user_agent,
        exchange.client_fingerprint,
        exchange.model,
        exchange.endpoint,
        orjson.dumps(messages).decode(),
        _json_or_none(exchange.response),
        _json_or_none(exchange.reasoning),
        None if exchange.tools is None else orjson.dumps(list(exchange.tools)).decode(),
        exchange.prompt_tokens,
        exchange.completion_tokens,
        exchange.status,
        exchange.latency_ms,
        _json_or_none(dict(exchange.extra)) if exchange.extra else None,
        salt,
        run_id,
        now_us,
    )


def account_row(account: Account, *, run_id: str) -> tuple[Any, ...]:
    """The row of ``accounts`` for one record, in :data:`ACCOUNT_COLUMNS` order."""
    return (
        account.account_id,
        account.org_id,
        to_micros(account.created_at),
        account.signup_channel,
        account.email_domain,
        account.payment_fingerprint,
        account.country,
        account.tier,
        _json_or_none(dict(account.extra)) if account.extra else None,
        run_id,
    )


def _freeze(obj: dict[str, Any] | None) -> MappingProxyType[str, Any]:
    return MappingProxyType(obj or {})


class _BadColumnError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _json_column(name: str, text: Any) -> Any:
    if not isinstance(text, str | bytes):
        raise _BadColumnError(name, f"expected JSON text, found {type(text).__name__}")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _BadColumnError(name, f"not valid JSON ({exc})") from None


def _typed(name: str, value: Any, *types: type, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if type(value) not in types:
        wanted = " or ".join(t.__name__ for t in types)
        found = "NULL" if value is None else type(value).__name__
        raise _BadColumnError(name, f"expected {wanted}, found {found}")
    return value


def _messages(value: Any) -> tuple[Message, ...]:
    if value is None:
        return ()
    msgs = _json_column("messages", value)
    if not isinstance(msgs, list):
        raise _BadColumnError("messages", "not a JSON array")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _BadColumnError("messages", f"item {i} is not an object")
        role, content = m.get("role"), m.get("content")
        if type(role) is not str or type(content) is not str:
            raise _BadColumnError("messages", f"item {i} lacks a string 'role' and 'content'")
        rest = {k: v for k, v in m.items() if k not in ("role", "content")}
        out.append(Message(role=role, content=content, extra=_freeze(rest)))
    return tuple(out)


def _decode_exchange(row: Sequence[Any]) -> StoredExchange:
    if len(row) != len(EXCHANGE_COLUMNS):
        raise _BadColumnError("*", f"expected {len(EXCHANGE_COLUMNS)} columns, found {len(row)}")
    (
        exchange_id,
        seq,
        ts,
        account_id,
        api_key_id,
        agent_id,
        ip,
        asn,
        user_agent,
        client_fingerprint,
        model,
        endpoint,
        messages,
        response,
        reasoning,
        tools,
        prompt_tokens,
        completion_tokens,
        status,
        latency_ms,
        extra,
        salt,
        _run,
        _at,
    ) = row
    _typed("exchange_id", exchange_id, str)
    _typed("seq", seq, int)
    _typed("ts", ts, int)
    try:
        when = from_micros(ts)
    except OverflowError:
        raise _BadColumnError("ts", f"{ts} is not a representable time") from None
    for name, value in (("account_id", account_id), ("ip", ip), ("model", model)):
        _typed(name, value, str)
    for name, value in (
        ("api_key_id", api_key_id),
        ("agent_id", agent_id),
        ("user_agent", user_agent),
        ("client_fingerprint", client_fingerprint),
        ("endpoint", endpoint),
    ):
        _typed(name, value, str, optional=True)
    for name, value in (
        ("prompt_tokens", prompt_tokens),
        ("completion_tokens", completion_tokens),
        ("status", status),
    ):
        _typed(name, value, int)
    _typed("asn", asn, int, optional=True)
    _typed("latency_ms", latency_ms, int, float, optional=True)
    if salt is not None and not isinstance(salt, bytes | bytearray | memoryview):
        raise _BadColumnError("salt", f"expected bytes, found {type(salt).__name__}")
    tool_list = None if tools is None else _json_column("tools", tools)
    if tool_list is not None and not isinstance(tool_list, list):
        raise _BadColumnError("tools", "not a JSON array")
    extra_obj = _json_column("extra", extra) if extra else None
    if extra_obj is not None and not isinstance(extra_obj, dict):
        raise _BadColumnError("extra", "not a JSON object")
    exchange = Exchange(
        exchange_id=exchange_id,
        ts=when,
        account_id=account_id,
        ip=ip,
        model=model,
        messages=_messages(messages),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        status=status,
        api_key_id=api_key_id,
        agent_id=agent_id,
        asn=asn,
        user_agent=user_agent,
        client_fingerprint=client_fingerprint,
        endpoint=endpoint,
        response=None if response is None else _json_column("response", response),
        reasoning=None if reasoning is None else _json_column("reasoning", reasoning),
        tools=None if tool_list is None else tuple(tool_list),
        latency_ms=latency_ms,
        extra=_freeze(extra_obj),
    )
    return StoredExchange(exchange=exchange, salt=b"" if salt is None else bytes(salt), seq=seq)


def decode_exchange_row(row: Sequence[Any]) -> StoredExchange | UndecodableExchange:
    """Rebuild a :class:`StoredExchange` from a row of :data:`EXCHANGE_COLUMNS`, or describe
    why the row is not a valid record (never raises on a bad row)."""
    try:
        return _decode_exchange(row)
    except _BadColumnError as exc:
        field, reason = exc.field, exc.reason
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        field, reason = "*", f"{type(exc).__name__}: {exc}"
    exchange_id = row[0] if row else None
    seq = row[1] if len(row) > 1 else None
    return UndecodableExchange(
        exchange_id=exchange_id if isinstance(exchange_id, str) else repr(exchange_id),
        seq=seq if type(seq) is int else None,
        field=field,
        reason=reason,
    )


def exchange_from_row(row: Sequence[Any]) -> StoredExchange:
    """Rebuild a :class:`StoredExchange` from a row of :data:`EXCHANGE_COLUMNS`.

    Raises:
        StorageError: the row is not a valid record; the message names the exchange and column.
    """
    decoded = decode_exchange_row(row)
    if isinstance(decoded, UndecodableExchange):
        raise StorageError(
            decoded.describe(),
            hint="the row was altered or corrupted in the database; run `distillguard ledger "
            "audit`",
            details={
                "exchange_id": decoded.exchange_id,
                "field": decoded.field,
                "reason": decoded.reason,
            },
        )
    return decoded


def account_from_row(row: Sequence[Any]) -> Account:
    """Rebuild an :class:`Account` from a row of :data:`ACCOUNT_COLUMNS`."""
    account_id, org_id, created_at, channel, domain, payment, country, tier, extra, _run = row
    return Account(
        account_id=account_id,
        created_at=from_micros(created_at),
        org_id=org_id,
        signup_channel=channel,
        email_domain=domain,
        payment_fingerprint=payment,
        country=country,
        tier=tier,
        extra=_freeze(orjson.loads(extra) if extra else None),
    )


def new_salts(count: int) -> list[bytes]:
    """``count`` fresh random salts of :data:`SALT_BYTES` bytes."""
    blob = os.urandom(SALT_BYTES * count)
    return [blob[i : i + SALT_BYTES] for i in range(0, len(blob), SALT_BYTES)]


class Store(ABC):
    """Persistence of accounts, exchanges and component tables.

    Open one with :func:`distillguard.store.open_store`. Writes happen in :meth:`transaction`
    blocks. A SQLite store is one connection, used from one thread at a time; a PostgreSQL store
    pools connections and may be used from several threads at once (one connection per
    transaction).
    """

    dialect: ClassVar[Literal["sqlite", "postgresql"]]
    _TYPES: ClassVar[dict[str, str]]

    def __init__(self, url: str) -> None:
        self.url = url
        self.insert_hooks = InsertHooks()
        self._component_versions: dict[str, int] | None = None

    def __repr__(self) -> str:
        from distillguard.config import mask_url

        return f"{type(self).__name__}({mask_url(self.url)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits on exit, rolls back on an exception."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def q(self, sql: str) -> str:
        """Adapt SQL written with ``?`` placeholders to this backend."""
        return sql

    def ddl(self, statement: str) -> str:
        """Replace the type placeholders ``{blob} {bigint} {text} {double}`` for this backend."""
        return statement.format(**self._TYPES)

    def table_exists(self, cur: Cursor, name: str) -> bool:
        """Whether this store has a table ``name`` (PostgreSQL: in its schema)."""
        return name in self.existing_tables(cur, (name,))

    def existing_tables(self, cur: Cursor, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are tables of this store (PostgreSQL: of its schema); one query."""
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        if self.dialect == "sqlite":
            cur.execute(
                f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
                tuple(names),
            )
        else:
            cur.execute(
                self.q(
                    "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                    f"AND c.relkind IN ('r', 'p') AND c.relname IN ({marks})"
                ),
                tuple(names),
            )
        return {str(r[0]) for r in cur.fetchall()}

    def columns(self, cur: Cursor, table: str) -> set[str]:
        """The column names of ``table`` (empty if there is no such table)."""
        if self.dialect == "sqlite":
            cur.execute("SELECT name FROM pragma_table_info(?)", (table,))
        else:
            cur.execute(
                self.q(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ?"
                ),
                (table,),
            )
        return {str(r[0]) for r in cur.fetchall()}

    def _read_component_versions(self) -> dict[str, int]:
        with self.transaction() as cur:
            if not self.table_exists(cur, "schema_versions"):
                return {}
            cur.execute("SELECT component, version FROM schema_versions")
            return {str(c): int(v) for c, v in cur.fetchall()}

    def forget_component_versions(self) -> None:
        """Drop the cached component versions (after a migration changed them)."""
        self._component_versions = None

    def ensure_tables(self, component: str, version: int, statements: Sequence[str]) -> None:
        """Check that the store holds ``component``'s tables at ``version``.

        The migrations (:mod:`distillguard.store._migrations`, ``distillguard db migrate``)
        create and change the tables of every component they know; for those this only reads
        the version recorded in ``schema_versions`` (cached per store object) and never changes
        the schema. A component no migration knows yet (new code under development) still gets
        its tables created from ``statements`` as before, with a warning; the test suite fails
        until a migration covers it.

        Raises:
            SchemaVersionError: the store holds a newer schema of ``component`` than this code,
                or this code wants a version no migration provides (a missing migration).
            SchemaOutdatedError: the store's schema is older: run ``distillguard db migrate``.
        """
        from distillguard.errors import SchemaOutdatedError, SchemaVersionError
        from distillguard.store._migrations import HEAD_COMPONENTS

        known = self._component_versions
        if known is None or known.get(component) != version:
            known = self._component_versions = self._read_component_versions()
        have = known.get(component)
        if have == version:
            return
        if have is not None and have > version:
            raise SchemaVersionError(
                f"the store's '{component}' tables are version {have}, newer than this "
                f"DistillGuard understands ({version})",
                hint="upgrade DistillGuard",
            )
        head = HEAD_COMPONENTS.get(component)
        if head is not None and head < version:
            raise SchemaVersionError(
                f"this DistillGuard wants the '{component}' tables at version {version}, but its "
                f"migrations stop at {head} (a migration is missing: a bug)",
                hint="report it; add the migration in distillguard/store/_migrations.py",
            )
        if head is not None:
            raise SchemaOutdatedError(
                f"the store's '{component}' tables are "
                + ("missing" if have is None else f"version {have}")
                + f", this DistillGuard needs version {version}",
                hint="run `distillguard db migrate --store URL`",
            )
        logger.warning(
            "component %r is not covered by a schema migration: creating its tables directly",
            component,
        )
        with self.transaction() as cur:
            cur.execute(self.ddl(_VERSIONS_DDL))
            for statement in statements:
                cur.execute(self.ddl(statement))
            if have is None:
                cur.execute(
                    self.q("INSERT INTO schema_versions (component, version) VALUES (?, ?)"),
                    (component, version),
                )
            else:
                cur.execute(
                    self.q("UPDATE schema_versions SET version = ? WHERE component = ?"),
                    (version, component),
                )
        self._component_versions = None

    def migrate(self, *, target: int | None = None) -> list[str]:
        """Apply the pending schema migrations (all, or up to ``target``); returns ``"N name"``
        of each applied. What ``distillguard db migrate`` runs."""
        from distillguard.store._migrations import describe, migrate

        return describe(migrate(self, target=target))

    def bulk_load(self) -> AbstractContextManager[None]:
        """Call inside a write transaction that will insert many exchanges (an atomic ingest).

        A backend may set index maintenance aside while it runs and rebuild at its end, in the
        same transaction (SQLite: see :meth:`SQLiteStore.bulk_load`); the default does nothing.
        """
        return nullcontext()

    # -- erasure ------------------------------------------------------------------------

    def prepare_erasure(self, cur: Cursor) -> None:
        """Call in an erasure's transaction before it deletes or overwrites data.

        SQLite: ``PRAGMA secure_delete=ON`` for this connection, so the space the erased rows
        free is overwritten with zeros instead of left readable in the file. PostgreSQL has no
        such setting (see :meth:`finish_erasure`).
        """
        if self.dialect == "sqlite":
            cur.execute("PRAGMA secure_delete=ON")

    def finish_erasure(self) -> None:
        """Call after an erasure commits, outside any transaction, to push the erased bytes out
        of the files the database keeps beside its tables.

        SQLite: a ``wal_checkpoint(TRUNCATE)``, so the write-ahead log (``-wal`` file), which
        still holds earlier images of the erased pages, is copied back and emptied. PostgreSQL:
        ``VACUUM`` of the exchanges table, so the dead row versions that still hold the erased
        values are removed from the table's pages (the bytes stay in the data files until the
        space is reused, and in the server's WAL segments, archives and backups for as long as
        those are kept). Failures are logged, not raised: the erasure itself has committed.
        """
        logger.debug("no post-erasure clean-up for %r", self)

    # -- writing ------------------------------------------------------------------------

    def existing_ids(self, cur: Cursor, table: str, key: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already keys of ``table`` (``key`` column)."""
        found: set[str] = set()
        step = 900
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            marks = ",".join("?" * len(chunk))
            cur.execute(self.q(f"SELECT {key} FROM {table} WHERE {key} IN ({marks})"), chunk)
            found.update(r[0] for r in cur.fetchall())
        return found

    def add_accounts(self, cur: Cursor, batch: Sequence[Account], *, run_id: str) -> int:
        """Insert accounts not stored yet; returns how many were inserted."""
        if not batch:
            return 0
        existing = self.existing_ids(cur, "accounts", "account_id", [a.account_id for a in batch])
        rows = [account_row(a, run_id=run_id) for a in batch if a.account_id not in existing]
        if rows:
            cols = ", ".join(ACCOUNT_COLUMNS)
            marks = ", ".join("?" * len(ACCOUNT_COLUMNS))
            cur.executemany(self.q(f"INSERT INTO accounts ({cols}) VALUES ({marks})"), rows)
        return len(rows)

    def add_exchanges(
        self,
        cur: Cursor,
        batch: Sequence[tuple[Exchange, bytes]],
        *,
        run_id: str = "",
        now_us: int = 0,
    ) -> list[StoredExchange]:
        """Insert (exchange, salt) pairs whose ids are not stored yet, then run the insert hooks.

        Returns the newly inserted exchanges in batch order. Hooks run with the same cursor,
        inside the caller's transaction, so that what they write commits with the rows.
        """
        if not batch:
            return []
        inserted = self._insert_exchanges(cur, batch, run_id=run_id, now_us=now_us)
        if inserted:
            self.insert_hooks.run(cur, inserted)
        return inserted

    def add_exchange_rows(
        self,
        cur: Cursor,
        rows: Sequence[Sequence[Any]],
        *,
        run_id: str = "",
        now_us: int = 0,
    ) -> list[int]:
        """Insert exchanges given already encoded (the bulk path of ingest); returns, per row, its
        ``seq``, or 0 where its id was already stored (the row is then skipped).

        A row is the record's stored columns in ``EXCHANGE_FIELDS`` order (``ts`` in
        microseconds, ``messages``, ``response``, ``reasoning`` and ``tools`` as JSON text),
        then ``extra`` (JSON text or None) and the salt: :data:`EXCHANGE_COLUMNS` without
        ``seq``, ``ingest_run`` and ``ingested_at``, which are added here.

        The insert hooks do **not** run: the caller appends the rows to the ledger itself, in
        the same transaction (``distillguard.app.ingest`` does, and uses this path only when the
        ledger is the store's one hook).
        """
        if not rows:
            return []
        return self._insert_rows(cur, rows, run_id=run_id, now_us=now_us)

    def _insert_rows(
        self, cur: Cursor, rows: Sequence[Sequence[Any]], *, run_id: str, now_us: int
    ) -> list[int]:
        """Backend-specific bulk insert of encoded rows (see :meth:`add_exchange_rows`)."""
        raise NotImplementedError(f"{type(self).__name__} has no bulk insert of encoded rows")

    @abstractmethod
    def _insert_exchanges(
        self,
        cur: Cursor,
        batch: Sequence[tuple[Exchange, bytes]],
        *,
        run_id: str,
        now_us: int,
    ) -> list[StoredExchange]:
        """Backend-specific bulk insert that skips stored ids; returns what was inserted."""

    def begin_ingest_run(self, run_id: str, *, source: str, started_us: int) -> None:
        """Record the start of an ingest run (its own transaction, committed at once, so that
        a run that fails later is still on record)."""
        with self.transaction() as cur:
            cur.execute(
                self.q("INSERT INTO ingest_runs (run_id, started_at, source) VALUES (?, ?, ?)"),
                (run_id, started_us, source),
            )

    def finish_ingest_run(self, run_id: str, *, finished_us: int, summary: bytes | str) -> None:
        """Record the end of an ingest run and its summary (JSON), in its own transaction."""
        text = summary.decode() if isinstance(summary, bytes) else summary
        with self.transaction() as cur:
            cur.execute(
                self.q("UPDATE ingest_runs SET finished_at = ?, summary = ? WHERE run_id = ?"),
                (finished_us, text, run_id),
            )

    # -- reading ------------------------------------------------------------------------

    def get_exchange(self, exchange_id: str) -> StoredExchange | None:
        """The stored exchange with this id, or None."""
        with self.transaction() as cur:
            cur.execute(
                self.q(f"SELECT {_EXCHANGE_COLS} FROM exchanges WHERE exchange_id = ?"),
                (exchange_id,),
            )
            row = cur.fetchone()
        return None if row is None else exchange_from_row(row)

    def get_exchange_checked(self, exchange_id: str) -> StoredExchange | UndecodableExchange | None:
        """The stored exchange with this id, a description of why its row is not a valid record,
        or None."""
        with self.transaction() as cur:
            cur.execute(
                self.q(f"SELECT {_EXCHANGE_COLS} FROM exchanges WHERE exchange_id = ?"),
                (exchange_id,),
            )
            row = cur.fetchone()
        return None if row is None else decode_exchange_row(row)

    def get_account(self, account_id: str) -> Account | None:
        """The stored account with this id, or None."""
        with self.transaction() as cur:
            cur.execute(
                self.q(f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts WHERE account_id = ?"),
                (account_id,),
            )
            row = cur.fetchone()
        return None if row is None else account_from_row(row)

    def count(self, table: Literal["accounts", "exchanges"]) -> int:
        """Number of rows in ``accounts`` or ``exchanges``."""
        with self.transaction() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            row = cur.fetchone()
        return int(row[0])

    def iter_exchanges(
        self, *, batch_size: int = 10_000, after_seq: int = 0
    ) -> Iterator[list[StoredExchange]]:
        """All exchanges in insertion order, in batches (keyset pagination; bounded memory).

        Raises:
            StorageError: a row is not a valid record (see :meth:`iter_exchanges_checked`).
        """
        for rows in self._keyset_batches(
            "exchanges", EXCHANGE_COLUMNS, "seq", start=after_seq, batch_size=batch_size
        ):
            yield [exchange_from_row(r) for r in rows]

    def iter_exchanges_checked(
        self, *, batch_size: int = 10_000
    ) -> Iterator[list[StoredExchange | UndecodableExchange]]:
        """Like :meth:`iter_exchanges`, but a row that is not a valid record comes as an
        :class:`UndecodableExchange` instead of stopping the walk (the audit's reader)."""
        for rows in self._keyset_batches(
            "exchanges", EXCHANGE_COLUMNS, "seq", start=0, batch_size=batch_size
        ):
            yield [decode_exchange_row(r) for r in rows]

    def iter_accounts(self, *, batch_size: int = 10_000) -> Iterator[list[Account]]:
        """All accounts ordered by id, in batches."""
        for rows in self._keyset_batches(
            "accounts", ACCOUNT_COLUMNS, "account_id", start="", batch_size=batch_size
        ):
            yield [account_from_row(r) for r in rows]

    def _keyset_batches(
        self, table: str, columns: tuple[str, ...], key: str, *, start: Any, batch_size: int
    ) -> Iterator[list[Any]]:
        """The rows (``columns``) of ``table`` whose ``key`` is above ``start``, in ``key``
        order, in batches of ``batch_size`` (keyset pagination, one transaction a batch)."""
        cols = ", ".join(columns)
        key_at = columns.index(key)
        last = start
        while True:
            with self.transaction() as cur:
                cur.execute(
                    self.q(f"SELECT {cols} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?"),
                    (last, batch_size),
                )
                rows = cur.fetchall()
            if not rows:
                return
            last = rows[-1][key_at]
            yield rows

    def known_accounts(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored accounts."""
        with self.transaction() as cur:
            return self.existing_ids(cur, "accounts", "account_id", ids)
