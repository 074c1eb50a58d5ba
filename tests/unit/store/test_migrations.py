"""Schema migrations: a new store at the head, older stores refused until migrated, a store made by
the previous release (commit 499b9b1, with data) upgraded with its data and a clean audit, the
head schema equal to what the components' code expects, and one migrator at a time."""

from __future__ import annotations

import ast
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.errors import SchemaOutdatedError, SchemaVersionError
from distillguard.ledger import Ledger, audit_ledger, load_public_keys
from distillguard.store import Store, open_store
from distillguard.store._migrations import (
    HEAD,
    HEAD_COMPONENTS,
    M1,
    MIGRATIONS,
    VERSIONS_DDL,
    applied_migrations,
    schema_state,
)
from distillguard.testing import make_account, make_exchange, postgres_store_url, write_log

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "store_499b9b1"
SRC = Path(__file__).resolve().parents[3] / "src" / "distillguard"


def _tables(store: Store) -> set[str]:
    with store.transaction() as cur:
        if store.dialect == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        return {str(r[0]) for r in cur.fetchall()}


# ---------------------------------------------------------------- new and current stores


def test_a_new_store_is_created_at_the_head(store: Store) -> None:
    state = schema_state(store)
    assert state.version == HEAD and not state.empty and not state.legacy
    assert [a.version for a in applied_migrations(store)] == [m.version for m in MIGRATIONS]
    with store.transaction() as cur:
        cur.execute("SELECT component, version FROM schema_versions")
        assert dict(cur.fetchall()) == dict(HEAD_COMPONENTS)
    assert store.migrate() == []  # nothing pending: a second run does nothing


def test_reopening_a_current_store_changes_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        before = applied_migrations(store)
    with open_store(store_url) as store:
        assert applied_migrations(store) == before


def _drop_last_migration(store: Store) -> None:
    """Make the store look as if migration HEAD had never run."""
    with store.transaction() as cur:
        cur.execute("DROP TABLE operations_audit")
        cur.execute("DELETE FROM schema_versions WHERE component = 'operations'")
        cur.execute(store.q("DELETE FROM schema_migrations WHERE version = ?"), (HEAD,))


def test_an_older_store_is_refused_and_not_changed(store_url: str) -> None:
    with open_store(store_url) as store:
        _drop_last_migration(store)
        tables = _tables(store)
    with pytest.raises(SchemaOutdatedError) as info:
        open_store(store_url)
    assert info.value.hint is not None and "distillguard db migrate" in info.value.hint
    assert info.value.code == "DG403" and isinstance(info.value, SchemaVersionError)
    with open_store(store_url, check_schema=False) as store:
        assert _tables(store) == tables  # the refused open created nothing
        assert schema_state(store).version == HEAD - 1
        assert store.migrate() == [f"{HEAD} {MIGRATIONS[-1].name}"]
    with open_store(store_url) as store:
        assert "operations_audit" in _tables(store)


def test_a_component_behind_its_code_is_refused_not_created(store: Store) -> None:
    """A component's ensure_tables never changes a migrated store's schema."""
    with store.transaction() as cur:
        cur.execute("DELETE FROM schema_versions WHERE component = 'privacy'")
    store.forget_component_versions()
    from distillguard.privacy._holds import ensure_privacy_tables

    with pytest.raises(SchemaOutdatedError, match="privacy"):
        ensure_privacy_tables(store)


def test_a_newer_store_is_refused(store_url: str) -> None:
    with open_store(store_url) as store, store.transaction() as cur:
        cur.execute(
            store.q(
                "INSERT INTO schema_migrations (version, name, applied_at, applied_by) "
                "VALUES (?, ?, ?, ?)"
            ),
            (HEAD + 1, "from the future", 0, "99.0"),
        )
    with pytest.raises(SchemaVersionError, match="newer") as info:
        open_store(store_url)
    assert not isinstance(info.value, SchemaOutdatedError)
    with open_store(store_url, check_schema=False) as store, pytest.raises(SchemaVersionError):
        store.migrate()


def test_migrate_to_an_unknown_version_is_refused(store: Store) -> None:
    with pytest.raises(SchemaVersionError, match="no migration"):
        store.migrate(target=HEAD + 5)


def test_migrating_step_by_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_store(url, check_schema=False) as store:  # empty: nothing created without check
        assert schema_state(store).empty
        assert store.migrate(target=1) == [f"1 {M1.name}"]
        assert schema_state(store).version == 1
    with pytest.raises(SchemaOutdatedError):
        open_store(url)
    with open_store(url, check_schema=False) as store:
        assert len(store.migrate()) == HEAD - 1


@pytest.mark.postgres
def test_concurrent_migrators_apply_each_migration_once() -> None:
    """Replicas starting together on an empty schema: the advisory lock serialises them."""
    with postgres_store_url() as url:
        errors: list[BaseException] = []

        def start() -> None:
            try:
                open_store(url).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        with open_store(url) as store:
            assert [a.version for a in applied_migrations(store)] == list(range(1, HEAD + 1))


# ---------------------------------------------------------------- the head equals the code


def _component_ddl() -> dict[str, tuple[int, tuple[str, ...]]]:
    """What each component's code expects: (version, its DDL) from its own module."""
    from distillguard.app.operations import AUDIT_DDL, AUDIT_SCHEMA_VERSION
    from distillguard.console._data import CONSOLE_DDL
    from distillguard.fingerprint.canaries import CANARY_DDL
    from distillguard.gateway.alerts import ALERT_DDL
    from distillguard.gateway.policy import ACTION_DDL
    from distillguard.ledger._log import LEDGER_DDL
    from distillguard.ledger._log import SCHEMA_VERSION as LEDGER_VERSION
    from distillguard.monitor.feedback import LABEL_DDL
    from distillguard.passport._registry import _STORE_DDL, _STORE_SCHEMA_VERSION
    from distillguard.privacy._holds import PRIVACY_DDL
    from distillguard.privacy._holds import SCHEMA_VERSION as PRIVACY_VERSION
    from distillguard.store.base import CORE_DDL, SCHEMA_VERSION
    from distillguard.store.sqlite import _SCRUB_DDL

    return {
        "core": (SCHEMA_VERSION, (*CORE_DDL, _SCRUB_DDL)),
        "ledger": (LEDGER_VERSION, LEDGER_DDL),
        "passport": (_STORE_SCHEMA_VERSION, _STORE_DDL),
        "privacy": (PRIVACY_VERSION, PRIVACY_DDL),
        "gateway": (1, ACTION_DDL),
        "gateway_alerts": (1, ALERT_DDL),
        "console": (1, CONSOLE_DDL),
        "canaries": (1, CANARY_DDL),
        "analyst_labels": (1, LABEL_DDL),
        "operations": (AUDIT_SCHEMA_VERSION, AUDIT_DDL),
    }


def _schema(path: Path) -> dict[str, Any]:
    """Tables with their columns (name, type, not null, primary key) and indexes, of a file."""
    con = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {}
        names = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] not in ("schema_migrations", "schema_versions")
        ]
        for name in names:
            cols = con.execute(f"PRAGMA table_info({name})").fetchall()
            idx = con.execute(f"PRAGMA index_list({name})").fetchall()
            out[name] = (
                sorted((c[1], c[2], c[3], c[5]) for c in cols),
                sorted(
                    (
                        i[1] if not i[1].startswith("sqlite_autoindex") else "auto",
                        i[2],
                        tuple(r[2] for r in con.execute(f"PRAGMA index_info('{i[1]}')")),
                    )
                    for i in idx
                ),
            )
        return out
    finally:
        con.close()


def test_the_head_schema_is_what_the_components_code_creates(tmp_path: Path) -> None:
    """Migrations are frozen text; each component keeps its own DDL. They must agree: a change
    to a component's tables without a migration fails here."""
    migrated = tmp_path / "migrated.sqlite"
    open_store(f"sqlite:///{migrated}").close()
    direct = tmp_path / "direct.sqlite"
    con = sqlite3.connect(direct)
    types = {"blob": "BLOB", "bigint": "INTEGER", "text": "TEXT", "double": "REAL"}
    ddl = _component_ddl()
    # the console indexes gateway_actions: the gateway's tables first
    for component in ("core", "gateway", *[c for c in ddl if c not in ("core", "gateway")]):
        for statement in ddl[component][1]:
            con.execute(statement.format(**types))
    con.commit()
    con.close()
    assert _schema(migrated) == _schema(direct)
    assert {c: v for c, (v, _) in ddl.items()} == dict(HEAD_COMPONENTS)


def test_every_component_that_checks_its_tables_is_covered_by_a_migration() -> None:
    """Every ``ensure_tables("name", ...)`` in the package names a component of the chain."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "ensure_tables"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    assert found, "no ensure_tables call found: the scan is broken"
    assert found <= set(HEAD_COMPONENTS), sorted(found - set(HEAD_COMPONENTS))


# ---------------------------------------------------------------- the previous release's store


def _fixture_rows() -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    con = sqlite3.connect(":memory:")
    con.executescript((FIXTURE / "store.sql").read_text(encoding="utf-8"))
    try:
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall():
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            rows = con.execute(f"SELECT * FROM {table}").fetchall()
            yield table, cols, rows
    finally:
        con.close()


def _previous_release_store(backend: str, tmp_path: Path, pg_url: str | None) -> str:
    """A store as release 499b9b1 left it: SQLite, the file it wrote (from its SQL dump);
    PostgreSQL, that release's DDL (migration 1's statements, without a migration history)
    holding the same rows."""
    if backend == "sqlite":
        path = tmp_path / "previous.sqlite"
        con = sqlite3.connect(path)
        con.executescript((FIXTURE / "store.sql").read_text(encoding="utf-8"))
        con.close()
        return f"sqlite:///{path}"
    assert pg_url is not None
    from distillguard.store.postgres import PostgresStore

    store = PostgresStore(pg_url, check_schema=False)
    try:
        with store.transaction() as cur:
            cur.execute(store.ddl(VERSIONS_DDL))
            for step in M1.steps:
                if isinstance(step, str):
                    cur.execute(store.ddl(step))
                else:
                    step(store, cur)
            for table, cols, rows in _fixture_rows():
                if table == "wal_scrub_pending" or not rows:
                    continue
                marks = ", ".join("?" * len(cols))
                cur.executemany(
                    store.q(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"),
                    [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows],
                )
            cur.execute("SELECT setval('exchanges_seq_gen', (SELECT max(seq) FROM exchanges))")
    finally:
        store.close()
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def previous_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _previous_release_store("sqlite", tmp_path, None)
        return
    with postgres_store_url() as url:
        yield _previous_release_store("postgresql", tmp_path, url)


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "dg"))
    return tmp_path


def _audit(store: Store) -> Any:
    keys = load_public_keys(FIXTURE / "ledger_keys.json")
    return audit_ledger(Ledger.open(store), public_keys=keys)


def test_a_store_of_the_previous_release_is_migrated_with_its_data(
    previous_store: str,
    cli_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    url = previous_store
    # refused as it is, with the way out in the hint
    with pytest.raises(SchemaOutdatedError, match="before schema migrations") as info:
        open_store(url)
    assert info.value.hint is not None and "db migrate" in info.value.hint
    assert main(["--json", "db", "current", "--store", url]) == 1
    state = json.loads(capsys.readouterr().out)
    assert state["made_before_migrations"] and state["version"] is None
    assert [p["version"] for p in state["pending"]] == list(range(1, HEAD + 1))
    # the old release's data reads the same before and after (through the migrating CLI)
    with open_store(url, check_schema=False) as store:
        before_ex = [s.exchange for b in store.iter_exchanges() for s in b]
        before_acc = [a for b in store.iter_accounts() for a in b]
    assert main(["--json", "db", "migrate", "--store", url]) == 0
    done = json.loads(capsys.readouterr().out)
    assert [m["version"] for m in done["applied"]] == list(range(1, HEAD + 1))
    assert done["from"] is None and done["to"] == HEAD
    assert main(["--json", "db", "current", "--store", url]) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"]
    assert main(["--json", "db", "history", "--store", url]) == 0
    history = json.loads(capsys.readouterr().out)["migrations"]
    assert all(m["applied_at"] for m in history) and len(history) == HEAD

    with open_store(url) as store:
        assert store.count("accounts") == expected["accounts"]
        assert store.count("exchanges") == expected["exchanges"]
        assert [s.exchange for b in store.iter_exchanges() for s in b] == before_ex
        assert [a for b in store.iter_accounts() for a in b] == before_acc
        head = Ledger.open(store).head()
        assert (head.size, head.root_hash.hex()) == (
            expected["ledger_size"],
            expected["ledger_root_hex"],
        )
        report = _audit(store)
        assert report.ok, [f.to_dict() for f in report.findings]
        assert report.checkpoints_checked == expected["checkpoints"]
        # the other components read their rows back through today's code
        from distillguard.passport import StorePassportRegistry
        from distillguard.privacy import LegalHolds

        record = StorePassportRegistry(store).get("pp-1")
        assert record is not None and record.revocation is not None
        assert [h.target for h in LegalHolds(store).holds() if h.active] == [
            expected["held_account"]
        ]
        with store.transaction() as cur:  # migration 2 carried the console's audit rows over
            cur.execute("SELECT door, actor, action, target FROM operations_audit")
            assert (
                cur.fetchall()
                == [("console", "analyst@example.org", "block", "acct-02")]
                * expected["console_audit"]
            )
        # and the store keeps working: a new ingest appends to the same ledger
        from distillguard.app.ingest import ingest_log

        log = write_log(
            cli_home / "new-log",
            [make_account("acct-new")],
            [make_exchange(f"ex-new-{i}", account_id="acct-new") for i in range(3)],
        )
        result = ingest_log(store, log)
        assert result.exchanges.inserted == 3
        assert Ledger.open(store).head().size == expected["ledger_size"] + 3
        assert _audit(store).ok


def test_migration_1_adds_the_erasure_columns_of_an_older_ledger(tmp_path: Path) -> None:
    """A ledger of version 2 (before tombstones) had no tombstone, signature or content_after
    columns: migration 1 adds them, as the ledger did at its opening in 499b9b1."""
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
        INSERT INTO schema_versions VALUES ('core', 1), ('ledger', 2);
        CREATE TABLE ledger_erasures (
            leaf_index INTEGER NOT NULL, exchange_id TEXT NOT NULL, scope TEXT NOT NULL,
            erased_at INTEGER NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
            PRIMARY KEY (leaf_index, scope));
        INSERT INTO ledger_erasures VALUES (3, 'ex-3', 'content', 1, 'gdpr', 'dpo');
        """
    )
    con.close()
    url = f"sqlite:///{path}"
    with pytest.raises(SchemaOutdatedError):
        open_store(url)
    with open_store(url, check_schema=False) as store:
        store.migrate()
    with open_store(url) as store, store.transaction() as cur:
        assert {"tombstone_leaf", "signature", "signed_by", "content_after"} <= store.columns(
            cur, "ledger_erasures"
        )
        cur.execute("SELECT exchange_id, tombstone_leaf FROM ledger_erasures")
        assert cur.fetchall() == [("ex-3", None)]  # the row kept, the new column empty
        cur.execute("SELECT version FROM schema_versions WHERE component = 'ledger'")
        assert cur.fetchone()[0] == HEAD_COMPONENTS["ledger"]
