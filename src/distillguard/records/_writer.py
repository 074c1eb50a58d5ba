"""Writing exchange logs in format v1 (JSONL, gzipped JSONL or Parquet), streamed."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard._internal.files import ensure_private
from distillguard._internal.timeutil import parse_rfc3339
from distillguard.records._model import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA, Account, Exchange

__all__ = ["LogFormat", "LogWriter", "TableWriter"]

LogFormat = Literal["jsonl", "jsonl.gz", "parquet"]
_TS_COLUMNS = ("ts", "created_at")


def _parquet_row(record: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    known = set(schema.names)
    row = {k: v for k, v in record.items() if k in known}
    extra = {k: v for k, v in record.items() if k not in known}
    row["_extra"] = orjson.dumps(extra).decode() if extra else None
    return row


class TableWriter:
    """Streams records of one table to one file (``.jsonl``, ``.jsonl.gz`` or ``.parquet``).

    Parquet files use the format's column names and types plus a ``_extra`` column holding the
    fields the format does not define, as JSON (the reader merges it back).
    """

    def __init__(self, path: Path, schema: pa.Schema, fmt: LogFormat) -> None:
        self.path = path
        self.fmt = fmt
        self.schema = schema.append(pa.field("_extra", pa.string()))
        self.count = 0
        self._fh: BinaryIO | None = None
        self._pq: pq.ParquetWriter | None = None
        self._buffer: list[dict[str, Any]] = []
        ensure_private(path)  # exchange content: owner-only (0600) before the first byte
        if fmt == "parquet":
            self._pq = pq.ParquetWriter(path, self.schema, compression="zstd")
        elif fmt == "jsonl.gz":
            self._fh = cast(BinaryIO, gzip.open(path, "wb", compresslevel=5))  # noqa: SIM115
        else:
            self._fh = path.open("wb")

    def write_dicts(self, records: Iterable[dict[str, Any]]) -> None:
        """Write records given in their JSON form (timestamps as RFC 3339 strings)."""
        if self._fh is not None:
            chunk = [orjson.dumps(r) + b"\n" for r in records]
            self.count += len(chunk)
            self._fh.write(b"".join(chunk))
            return
        for r in records:
            row = _parquet_row(r, self.schema)
            for key in _TS_COLUMNS:
                if isinstance(row.get(key), str):
                    row[key] = parse_rfc3339(row[key])
            self._append(row)

    def write(self, records: Iterable[Account | Exchange]) -> None:
        """Write records."""
        if self._fh is not None:
            self.write_dicts(r.to_dict() for r in records)
            return
        for r in records:
            row = _parquet_row(r.to_dict(), self.schema)
            if isinstance(r, Exchange):
                row["ts"] = r.ts
            else:
                row["created_at"] = r.created_at
            self._append(row)

    def _append(self, row: dict[str, Any]) -> None:
        self.count += 1
        self._buffer.append(row)
        if len(self._buffer) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._pq is not None:
            self._pq.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._buffer = []

    def close(self) -> None:
        """Flush and close the file."""
        self._flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._pq is not None:
            self._pq.close()
            self._pq = None


class LogWriter:
    """Writes a log folder: ``accounts.<fmt>`` and ``exchanges.<fmt>``.

    >>> with LogWriter(Path("log"), fmt="jsonl.gz") as w:      # doctest: +SKIP
    ...     w.accounts.write(accounts)
    ...     w.exchanges.write(exchanges)
    """

    def __init__(self, folder: Path, *, fmt: LogFormat = "jsonl") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.accounts = TableWriter(folder / f"accounts.{fmt}", ACCOUNT_SCHEMA, fmt)
        self.exchanges = TableWriter(folder / f"exchanges.{fmt}", EXCHANGE_SCHEMA, fmt)

    def close(self) -> None:
        """Close both tables."""
        self.accounts.close()
        self.exchanges.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
