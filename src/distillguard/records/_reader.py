"""Streaming reader of exchange logs (format v1) with validation and quarantine.

A log is a folder with an accounts table and an exchanges table, each as JSONL, gzipped JSONL or
Parquet (the exchanges possibly as a folder of such files). The reader streams both tables in
batches with bounded memory: only the set of account ids and a spill-to-disk set of exchange ids
are kept. Every record that breaks the format goes to the quarantine with its file, line (or
row), field and reason, so that for each table ``read = accepted + quarantined``.

>>> reader = read_log("path/to/log")                        # doctest: +SKIP
>>> for batch in reader.accounts(): ...                     # doctest: +SKIP
>>> for batch in reader.exchanges(): ...                    # doctest: +SKIP
>>> reader.report.reconciles                                # doctest: +SKIP
True
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import sqlite3
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import orjson

from distillguard._internal.files import open_private
from distillguard._internal.timeutil import format_ts
from distillguard.errors import LogFormatError, LogNotFoundError
from distillguard.records._bulk import PreparedExchange, prepare_exchange
from distillguard.records._model import Account, Exchange
from distillguard.records._validate import FieldError, account_from_mapping, exchange_from_mapping

__all__ = [
    "FileIssue",
    "LogReader",
    "PreparedExchange",
    "QuarantineEntry",
    "QuarantineWriter",
    "RawCopy",
    "ReadReport",
    "TableCounts",
    "find_tables",
    "read_log",
]

logger = logging.getLogger(__name__)

Table = Literal["accounts", "exchanges"]
_T = TypeVar("_T", Account, Exchange, Exchange | PreparedExchange)
_X = TypeVar("_X", Exchange, Exchange | PreparedExchange)

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
#: Bytes of a bad record copied into the quarantine; its full size and SHA-256 are kept too.
MAX_RAW_KEPT = 65_536
#: Default cap on the quarantine file of one run; later entries are counted, not written.
MAX_QUARANTINE_BYTES = 64 * 1024 * 1024
SAMPLE_LIMIT = 100  # quarantine entries kept in memory for the report


@dataclass(frozen=True, slots=True)
class RawCopy:
    """What the quarantine keeps of a rejected record.

    ``record`` is the line's text (JSONL) or the row (Parquet), cut to :data:`MAX_RAW_KEPT`
    bytes; ``size`` and ``sha256`` describe the whole record as it is in the file (the line's
    bytes including its line end; for Parquet, the row as compact JSON), so that a copy that was
    cut can still be matched to its original.
    """

    record: Any
    size: int
    sha256: str

    @property
    def truncated(self) -> bool:
        """Whether ``record`` is only the start of the record."""
        return self.size > MAX_RAW_KEPT


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One rejected record: where it was, which field, why, and the record itself."""

    table: Table
    file: str
    line: int | None
    field: str | None
    reason: str
    raw: RawCopy | None = None

    @property
    def where(self) -> str:
        """``file:line`` (or ``file row N`` for Parquet)."""
        if self.line is None:
            return self.file
        sep = " row " if self.file.endswith(".parquet") else ":"
        return f"{self.file}{sep}{self.line}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as written to the quarantine file.

        ``record`` is the (possibly cut) copy of the record; ``record_bytes`` and
        ``record_sha256`` describe the whole record, ``record_truncated`` says whether the copy
        is cut.
        """
        raw = self.raw
        return {
            "table": self.table,
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "record": None if raw is None else raw.record,
            "record_bytes": None if raw is None else raw.size,
            "record_sha256": None if raw is None else raw.sha256,
            "record_truncated": False if raw is None else raw.truncated,
        }

    def describe(self) -> str:
        """One human-readable line."""
        fld = f" field '{self.field}':" if self.field else ""
        return f"{self.where}:{fld} {self.reason}"


@dataclass(frozen=True, slots=True)
class FileIssue:
    """A problem with a whole file (empty, truncated archive, corrupt Parquet)."""

    file: str
    severity: Literal["warning", "error"]
    message: str


@dataclass(slots=True)
class TableCounts:
    """How many records of one table were read, accepted and quarantined."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0

    @property
    def reconciles(self) -> bool:
        """``read == accepted + quarantined``."""
        return self.read == self.accepted + self.quarantined


@dataclass(slots=True)
class ReadReport:
    """Counts per table, file-level issues and a sample of quarantined records."""

    accounts: TableCounts = field(default_factory=TableCounts)
    exchanges: TableCounts = field(default_factory=TableCounts)
    files: list[str] = field(default_factory=list)
    issues: list[FileIssue] = field(default_factory=list)
    sample: list[QuarantineEntry] = field(default_factory=list)
    quarantine_path: Path | None = None
    quarantine_unwritten: int = 0

    @property
    def reconciles(self) -> bool:
        """Both tables reconcile."""
        return self.accounts.reconciles and self.exchanges.reconciles

    @property
    def ok(self) -> bool:
        """Nothing quarantined and no file-level error."""
        return (
            self.accounts.quarantined == 0
            and self.exchanges.quarantined == 0
            and not any(i.severity == "error" for i in self.issues)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the report."""
        return {
            "ok": self.ok,
            "reconciles": self.reconciles,
            "accounts": _counts(self.accounts),
            "exchanges": _counts(self.exchanges),
            "files": self.files,
            "issues": [
                {"file": i.file, "severity": i.severity, "message": i.message} for i in self.issues
            ],
            "quarantine": str(self.quarantine_path) if self.quarantine_path else None,
            "quarantine_unwritten": self.quarantine_unwritten,
            "sample": [{**e.to_dict(), "record": None} for e in self.sample],
        }


def _counts(c: TableCounts) -> dict[str, int]:
    return {"read": c.read, "accepted": c.accepted, "quarantined": c.quarantined}


class QuarantineWriter:
    """Appends rejected records to a JSONL file (owner-only), created on the first entry.

    At most ``max_bytes`` are written per run (each entry's record copy is already cut to
    :data:`MAX_RAW_KEPT`); entries past the cap are counted in :attr:`unwritten` only, so that a
    small compressed input cannot fill the disk through its quarantine.
    """

    def __init__(self, path: Path | None, *, max_bytes: int = MAX_QUARANTINE_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fh: IO[bytes] | None = None
        self.count = 0
        self.written_bytes = 0
        self.unwritten = 0

    def write(self, entry: QuarantineEntry) -> None:
        """Record one entry (a no-op without a path; counted only once the cap is reached)."""
        self.count += 1
        if self.path is None:
            return
        data = _entry_json(entry)
        if self.written_bytes + len(data) > self.max_bytes:
            if self.unwritten == 0:
                logger.warning(
                    "quarantine file %s reached its cap of %s bytes: further rejected records "
                    "are counted but not copied",
                    self.path,
                    f"{self.max_bytes:,}",
                )
            self.unwritten += 1
            return
        if self._fh is None:
            self._fh = open_private(self.path, append=True)  # never overwrite earlier entries
        self._fh.write(data)
        self.written_bytes += len(data)

    def close(self) -> None:
        """Flush and close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SeenIds:
    """An exact set of exchange ids with bounded memory: spills to a temporary SQLite file."""

    def __init__(self, limit: int = 1_500_000) -> None:
        self._mem: set[str] = set()
        self._limit = limit
        self._db: sqlite3.Connection | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def add_new(self, ids: list[str]) -> list[bool]:
        """Add ``ids``; returns, per id, whether it was new (False: a duplicate)."""
        if self._db is None:
            out = []
            for i in ids:
                if i in self._mem:
                    out.append(False)
                else:
                    self._mem.add(i)
                    out.append(True)
            if len(self._mem) > self._limit:
                self._spill()
            return out
        db = self._db
        stored: set[str] = set()
        for start in range(0, len(ids), 900):  # one indexed lookup per chunk, not per id
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            stored.update(
                r[0] for r in db.execute(f"SELECT id FROM seen WHERE id IN ({marks})", chunk)
            )
        out = []
        fresh: list[tuple[str]] = []
        for i in ids:
            if i in stored:
                out.append(False)
            else:
                stored.add(i)  # a repeat later in the same batch is a duplicate too
                fresh.append((i,))
                out.append(True)
        db.executemany("INSERT INTO seen VALUES (?)", fresh)
        return out

    def _spill(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="distillguard-seen-")
        self._db = sqlite3.connect(str(Path(self._tmp.name) / "seen.sqlite"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.executemany("INSERT INTO seen VALUES (?)", ((i,) for i in self._mem))
        self._mem = set()
        logger.info("exchange-id set spilled to disk at %s", self._tmp.name)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _table_files(root: Path, table: Table) -> list[Path]:
    singles = [root / f"{table}{s}" for s in SUFFIXES if (root / f"{table}{s}").is_file()]
    folder = root / table
    parts: list[Path] = []
    if folder.is_dir():
        parts = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        if not parts:
            raise LogFormatError(
                f"{folder} holds no .jsonl, .jsonl.gz or .parquet files",
                hint="put the table's files in that folder or remove it",
            )
    if len(singles) + (1 if parts else 0) > 1:
        names = [p.name for p in singles] + ([f"{table}/"] if parts else [])
        raise LogFormatError(
            f"{root} holds the {table} table more than once: {', '.join(names)}",
            hint="keep one of them",
        )
    return singles or parts


def find_tables(path: Path) -> tuple[list[Path], list[Path]]:
    """The files of the accounts and exchanges tables of the log folder ``path``.

    Raises:
        LogNotFoundError: ``path`` does not exist.
        LogFormatError: it is not a folder, or a table is missing or present twice.
    """
    if not path.exists():
        raise LogNotFoundError(
            f"log folder {path} does not exist",
            hint="give the folder that holds accounts.jsonl and exchanges.jsonl (or .parquet)",
        )
    if not path.is_dir():
        raise LogFormatError(
            f"{path} is a file, not a log folder",
            hint="give the folder that holds accounts.* and exchanges.*",
        )
    accounts = _table_files(path, "accounts")
    exchanges = _table_files(path, "exchanges")
    missing = [n for n, files in (("accounts", accounts), ("exchanges", exchanges)) if not files]
    if missing:
        raise LogFormatError(
            f"{path} has no {' and no '.join(missing)} table",
            hint="expected accounts.jsonl|.jsonl.gz|.parquet and exchanges.jsonl|.jsonl.gz|"
            ".parquet (or a folder exchanges/)",
        )
    return accounts, exchanges


def _entry_json(entry: QuarantineEntry) -> bytes:
    """One line of the quarantine file; never fails on what a record holds."""
    data = entry.to_dict()
    try:
        return orjson.dumps(data, default=str) + b"\n"
    except TypeError:  # too deep, or strings that are not UTF-8 (from a Parquet row)
        data["record"] = repr(data["record"])[:MAX_RAW_KEPT]
        return orjson.dumps(data, default=str) + b"\n"


def _raw_text(line: bytes, size: int | None = None, digest: str | None = None) -> RawCopy:
    """The quarantine copy of a JSONL line (``size``/``digest``: of the whole line, if cut)."""
    text = line[:MAX_RAW_KEPT].decode("utf-8", errors="replace").rstrip("\r\n")
    full = len(line) if size is None else size
    return RawCopy(
        text + ("…" if full > MAX_RAW_KEPT else ""),
        full,
        hashlib.sha256(line).hexdigest() if digest is None else digest,
    )


def _jsonable(row: dict[str, Any]) -> RawCopy:
    """The quarantine copy of a Parquet row: compact JSON, cut to :data:`MAX_RAW_KEPT` bytes."""
    clean = {
        k: (format_ts(v) if isinstance(v, datetime) and v.tzinfo else v) for k, v in row.items()
    }
    try:
        data = orjson.dumps(clean, default=str)
    except TypeError:  # nested too deep, or text that is not UTF-8
        data = repr(clean).encode("utf-8", errors="replace")
    digest = hashlib.sha256(data).hexdigest()
    if len(data) <= MAX_RAW_KEPT:
        return RawCopy(clean, len(data), digest)
    return RawCopy(data[:MAX_RAW_KEPT].decode("utf-8", errors="replace") + "…", len(data), digest)


class LogReader:
    """Reads and validates one log folder; see :func:`read_log`.

    Read :meth:`accounts` before :meth:`exchanges` (exchanges are checked against the account
    ids); :meth:`exchanges` reads the accounts first itself if that was not done.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 5000,
        max_record_bytes: int = 16 * 1024 * 1024,
        quarantine: QuarantineWriter | None = None,
        check_duplicates: bool = True,
        known_accounts: Callable[[list[str]], set[str]] | None = None,
    ) -> None:
        self.path = path
        self.batch_size = batch_size
        self.max_record_bytes = max_record_bytes
        self.quarantine = quarantine or QuarantineWriter(None)
        self.check_duplicates = check_duplicates
        self.known_accounts = known_accounts
        self.account_files, self.exchange_files = find_tables(path)
        self.report = ReadReport(
            files=[str(p) for p in (*self.account_files, *self.exchange_files)],
            quarantine_path=self.quarantine.path,
        )
        self._account_ids: set[str] | None = None

    # -- public -------------------------------------------------------------------------

    def accounts(self) -> Iterator[list[Account]]:
        """Validated accounts in batches. Duplicate account ids are quarantined."""
        ids: set[str] = set()
        counts = self.report.accounts
        for batch in self._records("accounts", self.account_files, account_from_mapping):
            good: list[Account] = []
            for where, acc in batch:
                if acc.account_id in ids:
                    self._reject("accounts", where, "account_id", "duplicate account_id", None)
                    continue
                ids.add(acc.account_id)
                good.append(acc)
            counts.accepted += len(good)
            if good:
                yield good
        self._account_ids = ids

    def exchanges(self) -> Iterator[list[Exchange]]:
        """Validated exchanges in batches (unknown accounts and duplicate ids quarantined)."""
        return self._exchange_batches(exchange_from_mapping)

    def prepared_exchanges(self) -> Iterator[list[Exchange | PreparedExchange]]:
        """Like :meth:`exchanges`, for bulk loading: each record that
        :func:`~distillguard.records._bulk.prepare_exchange` proves valid comes already encoded
        for the store and the ledger (a :class:`PreparedExchange`); every other record is
        validated by the record path (an :class:`Exchange`, or quarantined with its field and
        reason). The verdicts, the quarantine and the counts are those of :meth:`exchanges`."""
        return self._exchange_batches(_prepare_or_validate)

    def _exchange_batches(self, build: Callable[[dict[str, Any]], _X]) -> Iterator[list[_X]]:
        if self._account_ids is None:
            for _ in self.accounts():
                pass
        assert self._account_ids is not None
        account_ids = self._account_ids
        seen = _SeenIds() if self.check_duplicates else None
        counts = self.report.exchanges
        try:
            for batch in self._records("exchanges", self.exchange_files, build):
                unknown = {e.account_id for _, e in batch if e.account_id not in account_ids}
                if unknown and self.known_accounts is not None:
                    found = self.known_accounts(sorted(unknown))
                    account_ids.update(found)  # remember stored accounts for later batches
                    unknown -= found
                fresh = seen.add_new([e.exchange_id for _, e in batch]) if seen else None
                good: list[_X] = []
                for i, (where, ex) in enumerate(batch):
                    if ex.account_id in unknown:
                        self._reject(
                            "exchanges",
                            where,
                            "account_id",
                            f"account {ex.account_id!r} has no row in the accounts table",
                            None,
                        )
                    elif fresh is not None and not fresh[i]:
                        self._reject(
                            "exchanges",
                            where,
                            "exchange_id",
                            f"duplicate exchange_id {ex.exchange_id!r}",
                            None,
                        )
                    else:
                        good.append(ex)
                counts.accepted += len(good)
                if good:
                    yield good
        finally:
            if seen is not None:
                seen.close()

    # -- internals ----------------------------------------------------------------------

    def _reject(
        self,
        table: Table,
        where: tuple[str, int | None],
        field: str | None,
        reason: str,
        raw: RawCopy | None,
    ) -> None:
        entry = QuarantineEntry(table, where[0], where[1], field, reason, raw)
        counts = self.report.accounts if table == "accounts" else self.report.exchanges
        counts.quarantined += 1
        self.quarantine.write(entry)
        if self.quarantine.unwritten and not self.report.quarantine_unwritten:
            self.report.issues.append(
                FileIssue(
                    str(self.quarantine.path),
                    "warning",
                    f"the quarantine file reached its cap of {self.quarantine.max_bytes:,} bytes "
                    "(ingest.quarantine_max_bytes); later rejected records are counted but not "
                    "copied there (see quarantine_unwritten)",
                )
            )
        self.report.quarantine_unwritten = self.quarantine.unwritten
        if len(self.report.sample) < SAMPLE_LIMIT:
            self.report.sample.append(entry)
        logger.debug("quarantined %s", entry.describe())

    def _records(
        self,
        table: Table,
        files: list[Path],
        build: Callable[[dict[str, Any]], _T],
    ) -> Iterator[list[tuple[tuple[str, int | None], _T]]]:
        for path in files:
            name = str(path)
            rows = (
                self._parquet_rows(table, path)
                if path.name.endswith(".parquet")
                else self._jsonl_rows(table, path)
            )
            empty = True
            batch: list[tuple[tuple[str, int | None], _T]] = []
            for where, obj, raw in rows:
                empty = False
                try:
                    batch.append((where, build(obj)))
                except FieldError as exc:
                    self._reject(table, where, exc.field, exc.reason, raw())
                if len(batch) >= self.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
            if empty:
                self.report.issues.append(FileIssue(name, "warning", "file holds no records"))

    def _jsonl_rows(
        self, table: Table, path: Path
    ) -> Iterator[tuple[tuple[str, int | None], dict[str, Any], Callable[[], RawCopy]]]:
        name = str(path)
        counts = self.report.accounts if table == "accounts" else self.report.exchanges
        limit = self.max_record_bytes
        try:
            fh: gzip.GzipFile | io.BufferedReader = (
                gzip.open(path, "rb") if name.endswith(".gz") else path.open("rb")  # noqa: SIM115
            )
        except OSError as exc:
            raise LogFormatError(f"cannot open {name}: {exc}") from None
        lineno = 0
        try:
            with fh:
                while True:
                    try:
                        line = fh.readline(limit + 1)
                    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
                        self.report.issues.append(
                            FileIssue(
                                name,
                                "error",
                                f"{_archive_problem(exc)} after line {lineno}; records after "
                                "it could not be read",
                            )
                        )
                        return
                    if not line:
                        return
                    lineno += 1
                    if len(line) > limit and not line.endswith(b"\n"):
                        hasher = hashlib.sha256(line)
                        skipped = _skip_rest_of_line(fh, hasher)
                        counts.read += 1
                        size = len(line) + skipped
                        self._reject(
                            table,
                            (name, lineno),
                            None,
                            f"line is longer than {limit:,} bytes (max_record_bytes; "
                            f"{size:,} bytes)",
                            _raw_text(line[:1024], size, hasher.hexdigest()),
                        )
                        continue
                    if not line.strip():
                        continue
                    counts.read += 1
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        self._reject(
                            table, (name, lineno), None, _json_problem(line, exc), _raw_text(line)
                        )
                        continue
                    if type(obj) is not dict:
                        self._reject(
                            table,
                            (name, lineno),
                            None,
                            f"line is a JSON {type(obj).__name__}, not an object",
                            _raw_text(line),
                        )
                        continue
                    yield (name, lineno), obj, partial(_raw_text, line)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # pragma: no cover - defensive
            self.report.issues.append(FileIssue(name, "error", _archive_problem(exc)))

    def _parquet_rows(
        self, table: Table, path: Path
    ) -> Iterator[tuple[tuple[str, int | None], dict[str, Any], Callable[[], RawCopy]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = str(path)
        counts = self.report.accounts if table == "accounts" else self.report.exchanges
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise LogFormatError(
                f"{name} is not a readable Parquet file: {exc}",
                hint="re-export the table; a truncated or corrupt Parquet file cannot be read",
            ) from None
        rowno = 0
        try:
            for rb in pf.iter_batches(batch_size=self.batch_size):
                try:
                    rows = rb.to_pylist()
                except _CONVERSION_ERRORS:  # one value Python cannot hold: find it row by row
                    rows = None
                if rows is None:
                    for i in range(rb.num_rows):
                        rowno += 1
                        counts.read += 1
                        row, problem = _parquet_row(rb, i)
                        if problem is not None:
                            self._reject(
                                table, (name, rowno), problem[0], problem[1], _jsonable(row)
                            )
                            continue
                        clean = {k: v for k, v in row.items() if v is not None}
                        yield (name, rowno), clean, partial(_jsonable, row)
                    continue
                for row in rows:
                    rowno += 1
                    counts.read += 1
                    clean = {k: v for k, v in row.items() if v is not None}
                    yield (name, rowno), clean, partial(_jsonable, row)
        except (pa.ArrowException, OSError) as exc:
            self.report.issues.append(
                FileIssue(name, "error", f"corrupt Parquet data after row {rowno}: {exc}")
            )


#: What converting an Arrow value to Python raises for a value Python cannot hold: a timestamp
#: outside the datetime range (OverflowError), text that is not UTF-8 (UnicodeDecodeError, a
#: ValueError), a nanosecond value without pandas (ValueError).
_CONVERSION_ERRORS = (ValueError, OverflowError, ArithmeticError)


def _prepare_or_validate(obj: dict[str, Any]) -> Exchange | PreparedExchange:
    """The bulk path's record: encoded if provably valid, else through the record path (which
    raises :class:`FieldError` for a broken record)."""
    return prepare_exchange(obj) or exchange_from_mapping(obj)


def _parquet_row(rb: Any, i: int) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """Row ``i`` of a record batch, column by column; the first unreadable column, if any."""
    row: dict[str, Any] = {}
    problem: tuple[str, str] | None = None
    for name, column in zip(rb.schema.names, rb.columns, strict=True):
        try:
            row[name] = column[i].as_py()
        except _CONVERSION_ERRORS as exc:
            row[name] = None
            if problem is None:
                problem = (name, f"value cannot be read ({type(exc).__name__}: {exc})")
    return row, problem


def _skip_rest_of_line(fh: gzip.GzipFile | io.BufferedReader, hasher: Any) -> int:
    skipped = 0
    while True:
        chunk = fh.readline(1 << 20)
        hasher.update(chunk)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _archive_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated gzip file (the compressed stream ends before its end marker)"
    return f"corrupt gzip data ({exc})"


def _json_problem(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as ude:
        return f"invalid UTF-8 at byte {ude.start} of the line"
    return f"invalid JSON: {exc.msg} at column {exc.colno}"


def read_log(
    path: str | Path,
    *,
    batch_size: int = 5000,
    max_record_bytes: int = 16 * 1024 * 1024,
    quarantine: Path | None = None,
    check_duplicates: bool = True,
    known_accounts: Callable[[list[str]], set[str]] | None = None,
    quarantine_max_bytes: int = MAX_QUARANTINE_BYTES,
) -> LogReader:
    """Open a log folder for streaming validated reading.

    Args:
        path: the log folder.
        batch_size: records per yielded batch.
        max_record_bytes: longer JSONL lines are quarantined without being parsed.
        quarantine: JSONL file for rejected records (created on the first one); None keeps
            only the counts and a sample in the report.
        check_duplicates: quarantine repeated exchange ids (exact, bounded memory).
        known_accounts: called with account ids absent from the log's accounts table; returns
            those that are valid anyway (e.g. stored by an earlier ingest).
        quarantine_max_bytes: cap on what this run writes to the quarantine file; rejected
            records past it are counted (``report.quarantine_unwritten``) but not copied.

    Raises:
        LogNotFoundError: the folder does not exist.
        LogFormatError: a table is missing or ambiguous.
    """
    return LogReader(
        Path(path),
        batch_size=batch_size,
        max_record_bytes=max_record_bytes,
        quarantine=QuarantineWriter(quarantine, max_bytes=quarantine_max_bytes),
        check_duplicates=check_duplicates,
        known_accounts=known_accounts,
    )
