"""A stored row made malformed is a located audit finding, never a crash (issue 24, finding 8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.errors import StorageError
from distillguard.ledger import AuditReport, Ledger, audit_ledger
from distillguard.store import Store, open_store
from distillguard.store.base import EXCHANGE_COLUMNS, UndecodableExchange

from .conftest import add_records, signing_key

KEY = signing_key()


def _setup(store: Store) -> Ledger:
    ledger = Ledger.attach(store)
    add_records(store, 0, 12)
    ledger.publish_checkpoint(KEY)
    return ledger


def _audit(ledger: Ledger) -> AuditReport:
    return audit_ledger(ledger, public_keys=[KEY.public_key()])


def _sql(store: Store, sql: str, params: tuple[object, ...] = ()) -> None:
    with store.transaction() as cur:
        cur.execute(store.q(sql), params)


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("messages", None, "role"),  # replaced below by the one-byte change role -> rolf
        ("messages", '[{"role": "user", "content": "hi"', "not valid JSON"),
        ("salt", "a text salt", "expected bytes"),
        ("salt", 12345, "expected bytes"),
        ("tools", '{"not": "a list"}', "not a JSON array"),
        ("ts", "yesterday", "expected int"),
        ("response", "\xff not json", "not valid JSON"),
    ],
)
def test_malformed_row_is_located(store: Store, column: str, value: object, what: str) -> None:
    ledger = _setup(store)
    if store.dialect == "postgresql" and column in ("salt", "ts"):
        pytest.skip("PostgreSQL's column types refuse a value of the wrong type")
    if value is None:  # the exact attack: one byte of the stored JSON changed
        _sql(
            store,
            "UPDATE exchanges SET messages = replace(messages, '\"role\"', '\"rolf\"') "
            "WHERE exchange_id = 'ex-000005'",
        )
    else:
        _sql(store, f"UPDATE exchanges SET {column} = ? WHERE exchange_id = 'ex-000005'", (value,))
    report = _audit(ledger)
    assert not report.ok
    first = report.findings[0]
    assert (first.kind, first.leaf_index, first.exchange_id) == (
        "record_undecodable",
        5,
        "ex-000005",
    )
    assert column in first.message and what in first.message
    # the store's own reader names the row instead of raising KeyError / TypeError
    with pytest.raises(StorageError, match="ex-000005"):
        store.get_exchange("ex-000005")
    checked = store.get_exchange_checked("ex-000005")
    assert isinstance(checked, UndecodableExchange) and checked.field == column


_CORRUPTIBLE = [
    c for c in EXCHANGE_COLUMNS if c not in ("exchange_id", "seq", "ingest_run", "ingested_at")
]
_NOT_NULL = {"ts", "account_id", "ip", "model", "prompt_tokens", "completion_tokens", "status"}
_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(
        [
            "[]",
            "{}",
            "null",
            '[{"role": "user"}]',
            '[{"role": 1, "content": "x"}]',
            '[["user", "x"]]',
            '"text"',
            "[" * 3000,
            '[{"role":"user","content":"x","n":1e999}]',
            "\ud800",
        ]
    ),
)


@pytest.fixture(scope="module")
def corrupt_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Ledger]]:
    path = tmp_path_factory.mktemp("corrupt") / "store.sqlite"
    store = open_store(f"sqlite:///{path}")
    ledger = _setup(store)
    yield store, ledger
    store.close()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(column=st.sampled_from(_CORRUPTIBLE), value=_VALUES, row=st.integers(0, 11))
def test_audit_never_raises_on_a_corrupted_row(
    corrupt_store: tuple[Store, Ledger], column: str, value: object, row: int
) -> None:
    store, ledger = corrupt_store
    if value is None and column in _NOT_NULL:
        value = ""
    if isinstance(value, str) and "\ud800" in value:
        value = value.encode("utf-8", "surrogatepass")  # SQLite stores it as bytes
    exchange_id = f"ex-{row:06d}"
    before = store.get_exchange(exchange_id)
    assert before is not None
    with store.transaction() as cur:
        cur.execute(f"SELECT {column} FROM exchanges WHERE exchange_id = ?", (exchange_id,))
        original = cur.fetchone()[0]
        cur.execute(
            f"UPDATE exchanges SET {column} = ? WHERE exchange_id = ?", (value, exchange_id)
        )
    try:
        report = _audit(ledger)  # must not raise, whatever the row holds
        after = store.get_exchange_checked(exchange_id)
        same = (
            not isinstance(after, UndecodableExchange)
            and after is not None
            and after.exchange.to_dict() == before.exchange.to_dict()
            and after.salt == before.salt
        )
        if same:
            assert report.ok, report.findings  # an equivalent encoding of the same record
        else:
            assert not report.ok
            assert report.first_bad_index == row
            assert report.findings[0].exchange_id == exchange_id
    finally:
        with store.transaction() as cur:
            cur.execute(
                f"UPDATE exchanges SET {column} = ? WHERE exchange_id = ?",
                (original, exchange_id),
            )


def test_unreadable_erasure_row_is_a_finding(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        ledger = _setup(store)
        _sql(
            store,
            "INSERT INTO ledger_erasures (leaf_index, exchange_id, scope, erased_at, reason, "
            "actor) VALUES (3, 'ex-000003', 'record', 'last week', 'r', 'a')",
        )
        report = _audit(ledger)
        assert [(f.kind, f.leaf_index) for f in report.findings] == [("erasure_unverified", 3)]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE ledger_leaves SET leaf_hash = 'text' WHERE leaf_index = 4", "record_changed"),
        ("UPDATE ledger_leaves SET content_hash = 7 WHERE leaf_index = 4", "record_changed"),
        ("UPDATE ledger_nodes SET hash = 'text' WHERE node_id = 15", "node_mismatch"),
    ],
)
def test_ledger_columns_of_the_wrong_type_are_findings(tmp_path: Path, sql: str, kind: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        ledger = Ledger.attach(store)
        add_records(store, 0, 20)
        ledger.publish_checkpoint(KEY)
        _sql(store, sql)
        report = _audit(ledger)
        assert kind in {f.kind for f in report.findings}
        assert report.first_bad_index is not None and report.first_bad_index <= 4
    finally:
        store.close()


# -- the ledger's own tables (issue 24 review gap 3) ----------------------------------------------


def test_mistyped_tree_size_is_a_state_mismatch(tmp_path: Path) -> None:
    """``UPDATE ledger_state SET size='big'`` made the audit raise ValueError."""
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        ledger = _setup(store)
        _sql(store, "UPDATE ledger_state SET size = 'big'")
        report = _audit(ledger)
        assert [(f.kind, f.leaf_index) for f in report.findings] == [("state_mismatch", 12)]
        assert "ledger_state" in report.findings[0].message and report.tree_size == 12
        with pytest.raises(StorageError, match=r"ledger_state\.size"):
            ledger.head()  # the other paths refuse it with a DistillGuard error, not a crash
    finally:
        store.close()


#: (table, column, key condition) of the ledger's own rows an insider or a bad disk can alter.
_LEDGER_CELLS = [
    ("ledger_state", "size", "id = 1"),
    ("ledger_state", "root", "id = 1"),
    ("ledger_nodes", "hash", "node_id = 15"),
    ("ledger_leaves", "exchange_id", "leaf_index = 7"),
    ("ledger_leaves", "leaf_hash", "leaf_index = 7"),
    ("ledger_leaves", "content_hash", "leaf_index = 7"),
]


@pytest.fixture(scope="module")
def corrupt_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Ledger]]:
    path = tmp_path_factory.mktemp("corrupt-ledger") / "store.sqlite"
    store = open_store(f"sqlite:///{path}")
    ledger = Ledger.attach(store)
    add_records(store, 0, 20)  # node 15 (leaves 0..15) is stored
    ledger.publish_checkpoint(KEY)
    yield store, ledger
    store.close()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cell=st.sampled_from(_LEDGER_CELLS), value=_VALUES)
def test_audit_never_raises_on_a_corrupted_ledger_row(
    corrupt_ledger: tuple[Store, Ledger], cell: tuple[str, str, str], value: object
) -> None:
    store, ledger = corrupt_ledger
    table, column, where = cell
    if value is None:
        value = ""  # every column here is NOT NULL
    if isinstance(value, str) and "\ud800" in value:
        value = value.encode("utf-8", "surrogatepass")
    with store.transaction() as cur:
        cur.execute(f"SELECT {column} FROM {table} WHERE {where}")
        original = cur.fetchone()[0]
        cur.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value,))
        cur.execute(f"SELECT {column} FROM {table} WHERE {where}")
        stored = cur.fetchone()[0]
    try:
        report = _audit(ledger)  # must not raise, whatever the row holds
        if type(stored) is type(original) and stored == original:
            assert report.ok, report.findings  # the column's affinity turned it back
        else:
            assert not report.ok
            if table == "ledger_state":
                assert "state_mismatch" in {f.kind for f in report.findings}
            else:
                assert report.first_bad_index is not None and report.first_bad_index <= 7
    finally:
        with store.transaction() as cur:
            cur.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (original,))
