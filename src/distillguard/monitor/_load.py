"""Loading a log (folder or store) into DuckDB as validated, slimmed tables.

Two tables are created in the connection:

``acc``  one row per valid account (format v1 columns; missing optional columns are NULL).
``ex``   one row per valid exchange with the columns the signals need: the number of user
         turns, a system-prompt flag, the /24 (or IPv6 /48) network and the optional
         infrastructure fields; no message contents.

:func:`content_sample` then creates ``sample``: per account, a fixed sample of exchanges with the
last user message (``prompt``, truncated), read again from the source.

Validation follows :mod:`distillguard.records` semantics. Parquet logs are validated in SQL
(required fields present, unique ids, exchanges of known accounts); JSONL logs are read through
:func:`distillguard.records.read_log` (which quarantines bad lines) and converted to Parquet
first. Rejected records are counted, never scanned.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from distillguard._internal.net import DUCKDB_NETWORK_UDF, duckdb_network_sql, network_of
from distillguard.errors import InputError, LogFormatError
from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA, LogWriter, find_tables, read_log

logger = logging.getLogger(__name__)

#: Characters of the last user message kept for content signals (head + tail).
PROMPT_HEAD = 480
PROMPT_TAIL = 160

_ACC_REQUIRED = ("account_id", "created_at")
_EX_REQUIRED = (
    "exchange_id",
    "ts",
    "account_id",
    "ip",
    "model",
    "messages",
    "prompt_tokens",
    "completion_tokens",
    "status",
)
#: SQL condition of a valid exchange row (required fields present, token counts not negative).
_EX_VALID = """exchange_id IS NOT NULL AND ts IS NOT NULL AND account_id IS NOT NULL
            AND ip IS NOT NULL AND model IS NOT NULL AND messages IS NOT NULL
            AND prompt_tokens IS NOT NULL AND completion_tokens IS NOT NULL
            AND status IS NOT NULL AND prompt_tokens >= 0 AND completion_tokens >= 0"""

_OPTIONAL_ACC = {
    "org_id": "VARCHAR",
    "signup_channel": "VARCHAR",
    "email_domain": "VARCHAR",
    "payment_fingerprint": "VARCHAR",
    "country": "VARCHAR",
    "tier": "VARCHAR",
}
_OPTIONAL_EX = {
    "asn": "BIGINT",
    "user_agent": "VARCHAR",
    "client_fingerprint": "VARCHAR",
    "api_key_id": "VARCHAR",
}


@dataclass
class LoadReport:
    """What was read: counts of accepted and skipped records, and absent optional fields."""

    source: str
    accounts_read: int = 0
    accounts_skipped: int = 0
    exchanges_read: int = 0
    exchanges_skipped: int = 0
    missing_fields: list[str] = field(default_factory=list)
    exchanges_sql: str = ""  # the DuckDB relation the exchanges were read from

    @property
    def accounts(self) -> int:
        """Accounts accepted."""
        return self.accounts_read - self.accounts_skipped

    @property
    def exchanges(self) -> int:
        """Exchanges accepted."""
        return self.exchanges_read - self.exchanges_skipped


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _jsonl_to_parquet(log: Path, work: Path, report: LoadReport) -> Path:
    """Validate a JSONL log with the records reader and rewrite it as Parquet in ``work``."""
    out = work / "validated"
    reader = read_log(log, batch_size=20_000, quarantine=work / "quarantine.jsonl")
    with LogWriter(out, fmt="parquet") as writer:
        for accounts in reader.accounts():
            writer.accounts.write(accounts)
        for exchanges in reader.exchanges():
            writer.exchanges.write(exchanges)
    rep = reader.report
    report.accounts_read += rep.accounts.read
    report.accounts_skipped += rep.accounts.quarantined
    report.exchanges_read += rep.exchanges.read
    report.exchanges_skipped += rep.exchanges.quarantined
    return out


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    return {str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def _register_network_of(con: duckdb.DuckDBPyConnection) -> None:
    """Make :func:`~distillguard._internal.net.network_of` callable from ``con``'s SQL (the
    fallback of its SQL twin for the addresses SQL leaves to Python), once per connection."""
    registered = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [DUCKDB_NETWORK_UDF]
    ).fetchall()[0][0]
    if not registered:
        con.create_function(
            DUCKDB_NETWORK_UDF, network_of, ["VARCHAR"], "VARCHAR", side_effects=False
        )


def load_log(con: duckdb.DuckDBPyConnection, log: Path, *, work: Path | None = None) -> LoadReport:
    """Create the validated ``acc`` and ``ex`` tables in ``con`` from the log folder ``log``.

    The ``net`` column of ``ex`` is :func:`~distillguard._internal.net.network_of` of the
    exchange's address, computed by its SQL twin.
    """
    report = LoadReport(source=str(log))
    _register_network_of(con)
    acc_files, ex_files = find_tables(log)
    if not all(p.name.endswith(".parquet") for p in (*acc_files, *ex_files)):
        work = work or Path(tempfile.mkdtemp(prefix="dg-scan-"))
        validated = _jsonl_to_parquet(log, work, report)
        acc_files, ex_files = find_tables(validated)
        pre_validated = True
    else:
        pre_validated = False
    acc_src = f"read_parquet({_sql_list(acc_files)}, union_by_name=true)"
    ex_src = f"read_parquet({_sql_list(ex_files)}, union_by_name=true)"
    try:
        acc_cols = _columns(con, acc_src)
        ex_cols = _columns(con, ex_src)
    except duckdb.Error as exc:
        raise LogFormatError(f"cannot read the Parquet tables of {log}: {exc}") from exc
    for name in _ACC_REQUIRED:
        if name not in acc_cols:
            raise LogFormatError(f"{log}: accounts table has no required column {name!r}")
    for name in _EX_REQUIRED:
        if name not in ex_cols:
            raise LogFormatError(f"{log}: exchanges table has no required column {name!r}")

    def opt(cols: set[str], name: str, typ: str, table: str) -> str:
        if name in cols:
            return f"CAST({name} AS {typ}) AS {name}"
        report.missing_fields.append(f"{table}.{name}")
        return f"CAST(NULL AS {typ}) AS {name}"

    acc_opt = ", ".join(opt(acc_cols, n, t, "accounts") for n, t in _OPTIONAL_ACC.items())
    # Duplicate rows are resolved by a total order on their values, so the row kept (and so the
    # scan's result) does not depend on the order in which DuckDB's threads read them.
    acc_ties = ", ".join(f"{n} NULLS FIRST" for n in _OPTIONAL_ACC)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE acc AS
        SELECT * EXCLUDE (rn) FROM (
          SELECT *, row_number() OVER (PARTITION BY account_id
                                       ORDER BY created_at, {acc_ties}) AS rn
          FROM (SELECT CAST(account_id AS VARCHAR) AS account_id,
                       CAST(created_at AS TIMESTAMPTZ) AS created_at, {acc_opt}
                FROM {acc_src} WHERE account_id IS NOT NULL AND created_at IS NOT NULL)
        ) WHERE rn = 1
        """
    )
    acc_total = int(con.execute(f"SELECT count(*) FROM {acc_src}").fetchall()[0][0])
    acc_ok = int(con.execute("SELECT count(*) FROM acc").fetchall()[0][0])
    ex_opt = ", ".join(opt(ex_cols, n, t, "exchanges") for n, t in _OPTIONAL_EX.items())
    ex_ties = ", ".join(f"{n} NULLS FIRST" for n in _OPTIONAL_EX)
    # Slim columns only: message contents are not kept here (16M prompts would dominate the
    # memory of the scan); the per-account content sample reads them again (content_sample).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ex AS
        WITH src AS (
          SELECT CAST(exchange_id AS VARCHAR) AS exchange_id, CAST(ts AS TIMESTAMPTZ) AS ts,
                 CAST(account_id AS VARCHAR) AS account_id, CAST(ip AS VARCHAR) AS ip,
                 {ex_opt},
                 CAST(prompt_tokens AS BIGINT) AS prompt_tokens,
                 CAST(completion_tokens AS BIGINT) AS completion_tokens,
                 CAST(status AS INTEGER) AS status,
                 len(list_filter(messages, lambda m: m.role = 'user')) AS n_user,
                 len(list_filter(messages, lambda m: m.role = 'system')) > 0 AS has_system
          FROM {ex_src}
          WHERE {_EX_VALID}
        ), dedup AS (
          SELECT * FROM src QUALIFY row_number() OVER (
            PARTITION BY exchange_id ORDER BY ts, account_id, ip, {ex_ties}, prompt_tokens,
                                              completion_tokens, status, n_user, has_system) = 1
        )
        SELECT d.* EXCLUDE (ip, api_key_id),
               {duckdb_network_sql("d.ip")} AS net,
               epoch_us(d.ts) AS ts_us
        FROM dedup d SEMI JOIN acc a ON a.account_id = d.account_id
        """
    )
    report.exchanges_sql = ex_src
    ex_total = int(con.execute(f"SELECT count(*) FROM {ex_src}").fetchall()[0][0])
    ex_ok = int(con.execute("SELECT count(*) FROM ex").fetchall()[0][0])
    if not pre_validated:
        report.accounts_read, report.exchanges_read = acc_total, ex_total
        report.accounts_skipped = acc_total - acc_ok
        report.exchanges_skipped = ex_total - ex_ok
    else:
        # The records reader already removed bad records; SQL found nothing more to skip.
        report.accounts_skipped += acc_total - acc_ok
        report.exchanges_skipped += ex_total - ex_ok
    if report.accounts_skipped or report.exchanges_skipped:
        logger.warning(
            "skipped %d invalid accounts and %d invalid exchanges of %s",
            report.accounts_skipped,
            report.exchanges_skipped,
            log,
        )
    return report


def content_sample(con: duckdb.DuckDBPyConnection, report: LoadReport, *, per_account: int) -> None:
    """Create table ``sample`` (``account_id``, ``exchange_id``, ``prompt``): for every account,
    the ``per_account`` exchanges of ``ex`` with the smallest MD5 of their id, and the last user
    message of each (truncated to its first ``PROMPT_HEAD`` and last ``PROMPT_TAIL``
    characters), read again from the source of ``report`` (``ex`` keeps no message contents).
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sample AS
        WITH pick AS (
          SELECT account_id, exchange_id, ts FROM ex
          QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY md5(exchange_id))
                  <= {int(per_account)}
        ), raw AS (
          SELECT CAST(exchange_id AS VARCHAR) AS exchange_id, CAST(ts AS TIMESTAMPTZ) AS ts,
                 CAST(account_id AS VARCHAR) AS account_id,
                 list_filter(messages, lambda m: m.role = 'user') AS um
          FROM {report.exchanges_sql}
          WHERE {_EX_VALID}
            AND CAST(exchange_id AS VARCHAR) IN (SELECT exchange_id FROM pick)
        )
        SELECT p.account_id, p.exchange_id,
               CASE WHEN len(um) = 0 THEN ''
                    WHEN length(um[-1].content) <= {PROMPT_HEAD + PROMPT_TAIL} THEN um[-1].content
                    ELSE left(um[-1].content, {PROMPT_HEAD}) || ' ' ||
                         right(um[-1].content, {PROMPT_TAIL}) END AS prompt
        FROM pick p JOIN raw r
          ON r.exchange_id = p.exchange_id AND r.ts = p.ts AND r.account_id = p.account_id
        QUALIFY row_number() OVER (PARTITION BY p.exchange_id ORDER BY prompt) = 1
        """
    )


def export_store(url: str, work: Path) -> Path:
    """Export the store at ``url`` to a Parquet log folder under ``work`` and return it."""
    from distillguard.store import open_store
    from distillguard.store.export import export_log

    out = work / "store-export"
    store = open_store(url)
    try:
        export_log(store, out, fmt="parquet")
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    if not (out / "exchanges.parquet").exists() and not (out / "exchanges").exists():
        raise InputError(f"the store {url} exported no exchanges table")
    return out


__all__ = [
    "ACCOUNT_SCHEMA",
    "EXCHANGE_SCHEMA",
    "LoadReport",
    "content_sample",
    "export_store",
    "load_log",
]
