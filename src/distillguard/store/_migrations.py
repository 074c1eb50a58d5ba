"""Versioned schema migrations of the store: one ordered chain for the tables of every component,
on SQLite and PostgreSQL alike.

Each :class:`Migration` has a number, a name, its steps (DDL written once with the store's
``{text}``/``{bigint}``/``{blob}``/``{double}`` placeholders, or a function for what SQL text
cannot say) and the component versions it brings (rows of ``schema_versions``, which the
components check with :meth:`Store.ensure_tables`). Applied migrations are rows of
``schema_migrations`` (number, name, when, by which DistillGuard): ``distillguard db current``
and ``db history`` read them, ``distillguard db migrate`` applies what is pending.

Rules the code keeps:

* **A process never changes an existing store's schema.** Opening a store whose schema is older
  than this code raises :class:`~distillguard.errors.SchemaOutdatedError` (hint: ``distillguard
  db migrate``); a newer one raises :class:`~distillguard.errors.SchemaVersionError`.
* **Zero setup for a new store.** A store with none of DistillGuard's tables (a new SQLite file,
  ``sqlite://`` in memory, an empty PostgreSQL database or schema) is created at the head
  version when it is first opened: the embedded default needs no command.
* **One migrator at a time.** Each migration runs in its own transaction, under PostgreSQL's
  advisory lock of the schema (SQLite: the write lock of ``BEGIN IMMEDIATE``), and re-reads the
  version inside it, so two replicas that start on an empty database, or two ``db migrate``
  jobs, apply each migration once.
* **Migrations are frozen.** A migration's text never changes once released; a change of
  schema is a new migration. The components keep their own DDL constants (what they expect);
  ``tests/unit/store/test_migrations.py`` checks that the head of the chain creates exactly
  that schema, and that every component calling ``ensure_tables`` is covered here.

Migration 1 is the schema of the release before migrations existed (commit 499b9b1): on a
store made by that release (or an earlier one with an older ledger), it creates what is
missing, brings the ledger's own older layouts up to its version 5 (the steps
``Ledger.__init__`` took there), and records the component versions.

When it misfires: a store whose tables were changed by hand (a dropped index, an extra column)
still reports its version; migrations trust the version table, they do not diff the schema.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from distillguard.errors import SchemaOutdatedError, SchemaVersionError
from distillguard.store._cursor import Cursor

__all__ = [
    "HEAD",
    "HEAD_COMPONENTS",
    "MIGRATIONS",
    "AppliedMigration",
    "Migration",
    "SchemaState",
    "applied_migrations",
    "check_schema",
    "migrate",
    "open_schema",
    "schema_state",
]

logger = logging.getLogger(__name__)


class Store(Protocol):
    """What migrations use of a store (:class:`distillguard.store.Store` has it)."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction."""

    def q(self, sql: str) -> str:
        """``?`` placeholders adapted to the backend."""

    def ddl(self, statement: str) -> str:
        """Type placeholders adapted to the backend."""

    def existing_tables(self, cur: Cursor, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are tables."""

    def columns(self, cur: Cursor, table: str) -> set[str]:
        """A table's column names."""

    def forget_component_versions(self) -> None:
        """Drop cached component versions."""


#: A step: DDL text (both backends) or a function run with the migration's cursor.
Step = str | Callable[["Store", Cursor], None]

VERSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_versions "
    "(component {text} PRIMARY KEY, version {bigint} NOT NULL)"
)
MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version {bigint} PRIMARY KEY, "
    "name {text} NOT NULL, applied_at {bigint} NOT NULL, applied_by {text} NOT NULL)"
)
#: Tables whose presence says "a DistillGuard store" (without them the store is new).
_MARKER_TABLES = ("schema_migrations", "schema_versions", "accounts", "exchanges")


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history."""

    version: int
    name: str
    steps: tuple[Step, ...]
    components: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    applied_at_us: int
    applied_by: str


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands.

    ``version``: the latest applied migration (None: no migration history); ``empty``: none of
    DistillGuard's tables (a new store); ``legacy``: tables made before migrations existed.
    """

    version: int | None
    empty: bool
    legacy: bool

    @property
    def pending(self) -> tuple[Migration, ...]:
        """The migrations ``migrate`` would apply."""
        done = self.version or 0
        return tuple(m for m in MIGRATIONS if m.version > done)


def _only(dialect: str, sql: str) -> Step:
    def step(store: Store, cur: Cursor) -> None:
        if store.dialect == dialect:
            cur.execute(store.ddl(sql))

    step.__doc__ = f"{dialect} only: {sql}"
    return step


# -- migration 1: the schema of the release before migrations (commit 499b9b1), frozen -------

_M1_TABLES: tuple[str, ...] = (
    # core (store/base.py CORE_DDL, component "core" version 1)
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
    """CREATE TABLE IF NOT EXISTS ingest_runs (
        run_id {text} PRIMARY KEY, started_at {bigint} NOT NULL, finished_at {bigint},
        source {text}, summary {text}
    )""",
    # ledger (ledger/log.py LEDGER_DDL, version 5)
    """CREATE TABLE IF NOT EXISTS ledger_leaves (
        leaf_index {bigint} PRIMARY KEY, exchange_id {text} NOT NULL,
        leaf_hash {blob} NOT NULL, content_hash {blob} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_segments (
        first_leaf {bigint} PRIMARY KEY, first_seq {bigint} NOT NULL, count {bigint} NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS ledger_nodes (node_id {bigint} PRIMARY KEY, hash {blob} NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ledger_state (
        id {bigint} PRIMARY KEY, origin {text} NOT NULL, size {bigint} NOT NULL,
        root {blob} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        checkpoint_no {bigint} PRIMARY KEY, size {bigint} NOT NULL, root {blob} NOT NULL,
        created_at {bigint} NOT NULL, kid {text}, note {text} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_erasures (
        leaf_index {bigint} NOT NULL, exchange_id {text} NOT NULL, scope {text} NOT NULL,
        erased_at {bigint} NOT NULL, reason {text} NOT NULL, actor {text} NOT NULL,
        tombstone_leaf {bigint}, signature {blob}, signed_by {text}, content_after {blob},
        PRIMARY KEY (leaf_index, scope)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_superseded_erasures (
        tombstone_leaf {bigint} PRIMARY KEY, leaf_index {bigint} NOT NULL,
        exchange_id {text} NOT NULL, scope {text} NOT NULL, erased_at {bigint} NOT NULL,
        reason {text} NOT NULL, actor {text} NOT NULL, signature {blob}, signed_by {text},
        content_after {blob}
    )""",
    # passport (passport/registry.py _STORE_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS passports (
        passport_id {text} PRIMARY KEY, account_id {text} NOT NULL, org_id {text} NOT NULL,
        agent_kid {text} NOT NULL, agent_jwk {text} NOT NULL, issuer_kid {text} NOT NULL,
        issued_at {bigint} NOT NULL, expires_at {bigint} NOT NULL, claims {text} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS passport_revocations (
        passport_id {text} PRIMARY KEY, revoked_at {bigint} NOT NULL, reason {text} NOT NULL)""",
    # privacy (privacy/holds.py PRIVACY_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS legal_holds (
        hold_id {text} PRIMARY KEY, scope {text} NOT NULL, target {text} NOT NULL,
        reason {text} NOT NULL, created_at {bigint} NOT NULL, created_by {text} NOT NULL,
        released_at {bigint}, released_by {text}
    )""",
    """CREATE TABLE IF NOT EXISTS privacy_receipts (
        receipt_id {text} PRIMARY KEY, kind {text} NOT NULL, created_at {bigint} NOT NULL,
        actor {text} NOT NULL, body {text} NOT NULL
    )""",
    # gateway (gateway/policy.py ACTION_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS gateway_actions (
        action_id {text} PRIMARY KEY, ts {bigint} NOT NULL, account_id {text} NOT NULL,
        exchange_id {text}, action {text} NOT NULL, reason {text} NOT NULL,
        source {text} NOT NULL, risk {double}, cluster_id {text}
    )""",
    """CREATE TABLE IF NOT EXISTS gateway_overrides (
        account_id {text} PRIMARY KEY, action {text} NOT NULL, reason {text} NOT NULL,
        actor {text} NOT NULL, set_at {bigint} NOT NULL, expires_at {bigint}
    )""",
    # gateway_alerts (gateway/alerts.py ALERT_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS gateway_alerts (
        subject {text} NOT NULL, state {text} NOT NULL, alert_id {text} NOT NULL,
        created_at {bigint} NOT NULL, body {text} NOT NULL, PRIMARY KEY (subject, state)
    )""",
    # console (console/data.py CONSOLE_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS console_members (
        scan_key {text} NOT NULL, campaign_id {text} NOT NULL, account_id {text} NOT NULL,
        score {double} NOT NULL, PRIMARY KEY (scan_key, campaign_id, account_id)
    )""",
    """CREATE TABLE IF NOT EXISTS console_audit (
        audit_id {text} PRIMARY KEY, ts {bigint} NOT NULL, analyst {text} NOT NULL,
        action {text} NOT NULL, target {text} NOT NULL, reason {text} NOT NULL,
        outcome {text} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS console_sessions (
        session_hash {text} PRIMARY KEY, analyst {text} NOT NULL, expires_at {bigint} NOT NULL,
        token_fp {text} NOT NULL
    )""",
    # canaries (fingerprint/canaries.py CANARY_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS fingerprint_canaries (
        canary_id {text} PRIMARY KEY, account_id {text} NOT NULL, kid {text} NOT NULL,
        idx {bigint} NOT NULL, entity {text} NOT NULL, value {text} NOT NULL,
        sentence {text} NOT NULL, question {text} NOT NULL, first_planted_at {bigint} NOT NULL
    )""",
    # analyst_labels (monitor/feedback.py LABEL_DDL, version 1)
    """CREATE TABLE IF NOT EXISTS analyst_labels (
        account_id {text} NOT NULL, verdict {text} NOT NULL, actor {text} NOT NULL,
        note {text} NOT NULL, labelled_at {bigint} NOT NULL
    )""",
)

_M1_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS exchanges_account_ts ON exchanges (account_id, ts)",
    "CREATE INDEX IF NOT EXISTS exchanges_ts ON exchanges (ts)",
    "CREATE INDEX IF NOT EXISTS ledger_segments_seq ON ledger_segments (first_seq)",
    "CREATE INDEX IF NOT EXISTS ledger_erasures_exchange ON ledger_erasures (exchange_id)",
    "CREATE INDEX IF NOT EXISTS ledger_erasures_tombstone ON ledger_erasures (tombstone_leaf)",
    "CREATE INDEX IF NOT EXISTS legal_holds_target ON legal_holds (target, scope)",
    "CREATE INDEX IF NOT EXISTS gateway_actions_account ON gateway_actions (account_id, ts)",
    "CREATE INDEX IF NOT EXISTS console_audit_ts ON console_audit (ts)",
    "CREATE INDEX IF NOT EXISTS console_audit_target ON console_audit (target, ts)",
    "CREATE INDEX IF NOT EXISTS console_gateway_actions_ts ON gateway_actions (ts)",
    "CREATE INDEX IF NOT EXISTS fingerprint_canaries_account ON fingerprint_canaries (account_id)",
    "CREATE INDEX IF NOT EXISTS analyst_labels_account ON analyst_labels (account_id)",
)

_LEGACY_ERASURE_COLUMNS = (
    ("tombstone_leaf", "{bigint}"),
    ("signature", "{blob}"),
    ("signed_by", "{text}"),
    ("content_after", "{blob}"),
)


def _component_version(store: Store, cur: Cursor, component: str) -> int | None:
    cur.execute(store.q("SELECT version FROM schema_versions WHERE component = ?"), (component,))
    row = cur.fetchone()
    return None if row is None else int(row[0])


def _m1_ledger_columns(store: Store, cur: Cursor) -> None:
    """A ledger older than version 5 (3: tombstone leaves, 4: signatures, 5: content after an
    erasure) lacks erasure columns: add them (as ``Ledger.__init__`` did at 499b9b1)."""
    previous = _component_version(store, cur, "ledger")
    if previous is None or previous >= 5:
        return
    columns = store.columns(cur, "ledger_erasures")
    for name, kind in _LEGACY_ERASURE_COLUMNS:
        if name not in columns:
            cur.execute(store.ddl(f"ALTER TABLE ledger_erasures ADD COLUMN {name} {kind}"))


def _m1_ledger_segments(store: Store, cur: Cursor) -> None:
    """A version-1 ledger found leaves by a unique index on ``exchange_id``; give each leaf a
    segment (as ``Ledger._migrate_from_v1`` did at 499b9b1)."""
    if _component_version(store, cur, "ledger") != 1:
        return
    cur.execute("SELECT count(*) FROM ledger_segments")
    if int(cur.fetchone()[0]):
        return
    cur.execute(
        "INSERT INTO ledger_segments (first_leaf, first_seq, count) "
        "SELECT l.leaf_index, e.seq, 1 FROM ledger_leaves l "
        "JOIN exchanges e ON e.exchange_id = l.exchange_id"
    )


M1 = Migration(
    version=1,
    name="baseline: the schema of the release before migrations (499b9b1)",
    steps=(
        *_M1_TABLES,
        _m1_ledger_columns,
        *_M1_INDEXES,
        _m1_ledger_segments,
        _only(
            "sqlite",
            "CREATE TABLE IF NOT EXISTS wal_scrub_pending (id INTEGER PRIMARY KEY "
            "CHECK (id = 1), token TEXT NOT NULL, since_us INTEGER NOT NULL)",
        ),
        _only("postgresql", "CREATE SEQUENCE IF NOT EXISTS exchanges_seq_gen"),
    ),
    components=MappingProxyType(
        {
            "core": 1,
            "ledger": 5,
            "passport": 1,
            "privacy": 1,
            "gateway": 1,
            "gateway_alerts": 1,
            "console": 1,
            "canaries": 1,
            "analyst_labels": 1,
        }
    ),
)

# -- migration 2: the operations service's audit trail ------------------------------------


def _m2_copy_console_audit(store: Store, cur: Cursor) -> None:
    """Rows the console audited before the operations service existed join its trail (once)."""
    cur.execute(
        "INSERT INTO operations_audit (audit_id, ts, actor, door, action, target, reason, "
        "outcome) SELECT c.audit_id, c.ts, c.analyst, 'console', c.action, c.target, c.reason, "
        "c.outcome FROM console_audit c WHERE NOT EXISTS "
        "(SELECT 1 FROM operations_audit o WHERE o.audit_id = c.audit_id)"
    )


M2 = Migration(
    version=2,
    name="operations audit trail (every door audited alike)",
    steps=(
        """CREATE TABLE IF NOT EXISTS operations_audit (
        audit_id {text} PRIMARY KEY, ts {bigint} NOT NULL, actor {text} NOT NULL,
        door {text} NOT NULL, action {text} NOT NULL, target {text} NOT NULL,
        reason {text} NOT NULL, outcome {text} NOT NULL
    )""",
        "CREATE INDEX IF NOT EXISTS operations_audit_ts ON operations_audit (ts)",
        "CREATE INDEX IF NOT EXISTS operations_audit_target ON operations_audit (target, ts)",
        _m2_copy_console_audit,
    ),
    components=MappingProxyType({"operations": 1}),
)

#: The chain, oldest first.
MIGRATIONS: tuple[Migration, ...] = (M1, M2)
#: The version a store made or migrated by this code has.
HEAD: int = MIGRATIONS[-1].version


def _head_components() -> Mapping[str, int]:
    out: dict[str, int] = {}
    for m in MIGRATIONS:
        out.update(m.components)
    return MappingProxyType(out)


#: Every component the chain knows, at its head version.
HEAD_COMPONENTS: Mapping[str, int] = _head_components()


def _check_chain() -> None:
    numbers = [m.version for m in MIGRATIONS]
    if numbers != list(range(1, len(MIGRATIONS) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, ... in order: {numbers}")


_check_chain()


# -- reading the state ---------------------------------------------------------------------


def schema_state(store: Store) -> SchemaState:
    """Where the store's schema stands (reads only)."""
    with store.transaction() as cur:
        present = store.existing_tables(cur, _MARKER_TABLES)
        version = None
        if "schema_migrations" in present:
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
            version = None if row is None or row[0] is None else int(row[0])
    return SchemaState(
        version=version,
        empty=not present,
        legacy=bool(present) and "schema_migrations" not in present,
    )


def applied_migrations(store: Store) -> list[AppliedMigration]:
    """The rows of ``schema_migrations``, oldest first (empty without a migration history)."""
    with store.transaction() as cur:
        if not store.existing_tables(cur, ("schema_migrations",)):
            return []
        cur.execute(
            "SELECT version, name, applied_at, applied_by FROM schema_migrations ORDER BY version"
        )
        return [AppliedMigration(int(v), str(n), int(a), str(b)) for v, n, a, b in cur.fetchall()]


def check_schema(store: Store, state: SchemaState | None = None) -> None:
    """Raise unless the store's schema is at :data:`HEAD` (``state``: already read).

    Raises:
        SchemaOutdatedError: older (or made before migrations existed): migrate it first.
        SchemaVersionError: newer than this DistillGuard.
    """
    state = state or schema_state(store)
    where = repr(store)
    if state.version is None:
        raise SchemaOutdatedError(
            f"the store {where} was made by a DistillGuard release before schema migrations "
            f"(this one needs schema version {HEAD})",
            hint="run `distillguard db migrate --store URL` (see `distillguard db history`)",
        )
    if state.version < HEAD:
        raise SchemaOutdatedError(
            f"the store {where} has schema version {state.version}; this DistillGuard needs {HEAD}",
            hint="run `distillguard db migrate --store URL` (see `distillguard db current`)",
        )
    if state.version > HEAD:
        raise SchemaVersionError(
            f"the store {where} has schema version {state.version}, newer than this "
            f"DistillGuard understands ({HEAD})",
            hint="upgrade DistillGuard",
        )


# -- applying ------------------------------------------------------------------------------


def _lock(store: Store, cur: Cursor) -> None:
    """Serialise migrators: PostgreSQL's transaction-scoped advisory lock of this schema
    (SQLite's write transactions are already exclusive)."""
    if store.dialect == "postgresql":
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext('distillguard-migrate:' || current_schema()))"
        )


def _record_components(store: Store, cur: Cursor, components: Mapping[str, int]) -> None:
    for component, version in sorted(components.items()):
        previous = _component_version(store, cur, component)
        if previous is None:
            cur.execute(
                store.q("INSERT INTO schema_versions (component, version) VALUES (?, ?)"),
                (component, version),
            )
        elif previous < version:
            cur.execute(
                store.q("UPDATE schema_versions SET version = ? WHERE component = ?"),
                (version, component),
            )


def migrate(store: Store, *, target: int | None = None) -> list[Migration]:
    """Apply the pending migrations up to ``target`` (default :data:`HEAD`), each in its own
    transaction; returns those applied (empty if the store was already there).

    Raises:
        SchemaVersionError: the store is newer than this code, or ``target`` is unknown.
    """
    goal = HEAD if target is None else target
    if not 0 <= goal <= HEAD:
        raise SchemaVersionError(
            f"no migration {goal}: this DistillGuard knows versions 1 to {HEAD}",
            hint="see `distillguard db history`",
        )
    from distillguard import __version__

    done: list[Migration] = []
    for migration in MIGRATIONS:
        if migration.version > goal:
            break
        with store.transaction() as cur:
            _lock(store, cur)
            cur.execute(store.ddl(MIGRATIONS_DDL))
            cur.execute(store.ddl(VERSIONS_DDL))
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
            current = 0 if row is None or row[0] is None else int(row[0])
            if current > HEAD:
                raise SchemaVersionError(
                    f"the store {store!r} has schema version {current}, newer than this "
                    f"DistillGuard understands ({HEAD})",
                    hint="upgrade DistillGuard",
                )
            if current >= migration.version:
                continue  # applied earlier, or by another migrator while we waited
            started = time.perf_counter()
            for step in migration.steps:
                if isinstance(step, str):
                    cur.execute(store.ddl(step))
                else:
                    step(store, cur)
            _record_components(store, cur, migration.components)
            cur.execute(
                store.q(
                    "INSERT INTO schema_migrations (version, name, applied_at, applied_by) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (migration.version, migration.name, time.time_ns() // 1000, __version__),
            )
        logger.info(
            "store %r: applied migration %d (%s) in %.3f s",
            store,
            migration.version,
            migration.name,
            time.perf_counter() - started,
        )
        done.append(migration)
    store.forget_component_versions()
    return done


def open_schema(store: Store, *, check: bool = True) -> None:
    """What opening a store does to its schema: a new (empty) store is created at :data:`HEAD`;
    an existing one is checked (``check=False``: left as it is, for ``distillguard db``).

    Raises:
        SchemaOutdatedError, SchemaVersionError: see :func:`check_schema`.
    """
    if not check:
        return
    state = schema_state(store)
    if state.empty:
        migrate(store)
        return
    check_schema(store, state)


def describe(migrations: Sequence[Migration]) -> list[str]:
    """``"N name"`` for each migration (for logs and the CLI)."""
    return [f"{m.version} {m.name}" for m in migrations]
