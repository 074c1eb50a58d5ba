"""Exchange log format v1: the records, reading with validation and quarantine, writing.

* The model: :class:`Exchange` (one request and its answer, with :class:`Message`),
  :class:`Account`, their fields (:data:`EXCHANGE_FIELDS`, :data:`ACCOUNT_FIELDS`) and Arrow
  schemas (:data:`EXCHANGE_SCHEMA`, :data:`ACCOUNT_SCHEMA`).
* Reading: :func:`read_log` (JSONL, gzipped JSONL or Parquet files, or a folder of them) checks
  every record against the format and quarantines bad lines (:class:`QuarantineWriter`) instead
  of failing the read; :class:`ReadReport` counts what was read and kept. :func:`find_tables`
  lists a folder's tables.
* Validation of one record: :func:`exchange_from_mapping`, :func:`account_from_mapping`
  (:class:`FieldError` names the field); :class:`PreparedExchange` is the bulk path's form.
* Writing: :class:`LogWriter` in any of the formats (:data:`LogFormat`).

See ``docs/records.md``.
"""

from distillguard.records._model import (
    ACCOUNT_FIELDS,
    ACCOUNT_SCHEMA,
    EXCHANGE_FIELDS,
    EXCHANGE_SCHEMA,
    Account,
    Exchange,
    Message,
)
from distillguard.records._reader import (
    MAX_QUARANTINE_BYTES,
    FileIssue,
    LogReader,
    PreparedExchange,
    QuarantineEntry,
    QuarantineWriter,
    RawCopy,
    ReadReport,
    TableCounts,
    find_tables,
    read_log,
)
from distillguard.records._validate import FieldError, account_from_mapping, exchange_from_mapping
from distillguard.records._writer import LogFormat, LogWriter, TableWriter

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_SCHEMA",
    "EXCHANGE_FIELDS",
    "EXCHANGE_SCHEMA",
    "MAX_QUARANTINE_BYTES",
    "Account",
    "Exchange",
    "FieldError",
    "FileIssue",
    "LogFormat",
    "LogReader",
    "LogWriter",
    "Message",
    "PreparedExchange",
    "QuarantineEntry",
    "QuarantineWriter",
    "RawCopy",
    "ReadReport",
    "TableCounts",
    "TableWriter",
    "account_from_mapping",
    "exchange_from_mapping",
    "find_tables",
    "read_log",
]
