"""The results of a scan: the output folder's layout, its model, its writer and its reader.

Layout (format v1 "Results of a scan" of ``shared/schema/exchange-log-v1.md``, plus the
summary)::

    account_scores.parquet   one row per account: ACCOUNT_SCORES_SCHEMA (+ optional columns)
    account_scores.csv       the same rows, ``reasons`` joined with "; "
    campaigns.json           a JSON list of campaigns (Campaign.to_dict)
    scan_summary.json        counts, unavailable signals, timings (free-form object)

Version 1 carries no marker, so files written by every release so far read as version 1. A later
version adds ``"format": "distillguard-scan/N"`` to ``scan_summary.json``; this reader refuses
N > 1 with a message that says to upgrade, instead of misreading the folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from distillguard._internal.timeutil import format_ts, from_micros, to_micros
from distillguard.errors import ResultFormatError
from distillguard.results import _common as c

__all__ = [
    "ACCOUNT_SCORES_CSV",
    "ACCOUNT_SCORES_FILE",
    "ACCOUNT_SCORES_SCHEMA",
    "CAMPAIGNS_FILE",
    "SCAN_FILES",
    "SCAN_FORMAT",
    "SCAN_SUMMARY_FILE",
    "Campaign",
    "ScanResults",
    "read_account_scores",
    "read_scan",
    "write_scan",
]

#: The format's name and the newest version this release reads and writes.
SCAN_FORMAT: Final = "distillguard-scan/1"
CAMPAIGNS_FILE: Final = "campaigns.json"
ACCOUNT_SCORES_FILE: Final = "account_scores.parquet"
ACCOUNT_SCORES_CSV: Final = "account_scores.csv"
SCAN_SUMMARY_FILE: Final = "scan_summary.json"
#: Every file of a scan's output folder (what an evidence bundle copies, in this order).
SCAN_FILES: Final = (CAMPAIGNS_FILE, SCAN_SUMMARY_FILE, ACCOUNT_SCORES_FILE, ACCOUNT_SCORES_CSV)

_NAME, _VERSION = "distillguard-scan", 1
_HINT: Final = "run `distillguard scan --out DIR`"

#: The columns required by format v1, then ours.
ACCOUNT_SCORES_SCHEMA: Final = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("flagged", pa.bool_(), nullable=False),
        pa.field("campaign_id", pa.string()),
        pa.field("reasons", pa.list_(pa.string())),
    ]
)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


#: What a reader needs of ``account_scores.parquet``: column -> (test of its type, in words).
_SCORE_COLUMNS: Final = {
    "account_id": (_is_text, "strings"),
    "score": (lambda t: pa.types.is_floating(t) or pa.types.is_integer(t), "numbers"),
    "flagged": (pa.types.is_boolean, "booleans"),
    "campaign_id": (lambda t: _is_text(t) or pa.types.is_null(t), "strings or nulls"),
}


@dataclass(frozen=True)
class Campaign:
    """One detected campaign (an entry of ``campaigns.json``).

    Attributes:
        campaign_id: a stable id derived from the members (``camp-`` and 12 hex digits).
        accounts: the member accounts (a tuple, whatever sequence was given).
        score: the campaign's score (mean of its members').
        first_seen_us, last_seen_us: the first and last exchange of any member, in microseconds
            since the Unix epoch (written as RFC 3339 with six fraction digits, read back exactly).
        exchanges: the members' exchanges.
        signals: the evidence, by signal name (JSON values).
    """

    campaign_id: str
    accounts: Sequence[str]
    score: float
    first_seen_us: int
    last_seen_us: int
    exchanges: int
    signals: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", tuple(self.accounts))

    @property
    def first_seen(self) -> datetime:
        """The first exchange of any member (aware, UTC)."""
        return from_micros(self.first_seen_us)

    @property
    def last_seen(self) -> datetime:
        """The last exchange of any member (aware, UTC)."""
        return from_micros(self.last_seen_us)

    def to_dict(self) -> dict[str, Any]:
        """The ``campaigns.json`` form (timestamps RFC 3339, UTC, six fraction digits)."""
        return {
            "campaign_id": self.campaign_id,
            "accounts": list(self.accounts),
            "score": self.score,
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
            "exchanges": self.exchanges,
            "signals": dict(self.signals),
        }

    @classmethod
    def from_dict(cls, obj: Any, *, where: str = "campaign") -> Campaign:
        """Read one ``campaigns.json`` entry.

        Raises:
            ResultFormatError: a field is missing, of the wrong type, a negative exchange count,
                a timestamp that is not RFC 3339, or ``last_seen`` before ``first_seen``; the
                message starts with ``where``.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        accounts = c.field(obj, "accounts", list, where)
        if not all(isinstance(a, str) for a in accounts):
            raise ResultFormatError(f"{where}: field 'accounts' must list account ids")
        signals = obj.get("signals", {})
        if not isinstance(signals, Mapping):
            raise ResultFormatError(f"{where}: field 'signals' must be an object")
        exchanges = c.field(obj, "exchanges", int, where)
        if exchanges < 0:
            raise ResultFormatError(f"{where}: field 'exchanges' is negative")
        first, last = c.time(obj, "first_seen", where), c.time(obj, "last_seen", where)
        if last < first:
            raise ResultFormatError(f"{where}: 'last_seen' is before 'first_seen'")
        return cls(
            campaign_id=c.field(obj, "campaign_id", str, where),
            accounts=tuple(accounts),
            score=c.number(obj, "score", where),
            first_seen_us=to_micros(first),
            last_seen_us=to_micros(last),
            exchanges=exchanges,
            signals=dict(signals),
        )


@dataclass(frozen=True)
class ScanResults:
    """A scan's output folder, read back: its campaigns, every account's score, its summary.

    Attributes:
        folder: where it was read from.
        campaigns: the campaigns, in file order.
        accounts: ``account_scores.parquet`` as an Arrow table (the required columns checked;
            any further column, such as ``exchanges``, kept).
        summary: ``scan_summary.json`` (empty when the file is absent).
    """

    folder: Path
    campaigns: tuple[Campaign, ...]
    accounts: pa.Table
    summary: Mapping[str, Any]

    def __repr__(self) -> str:
        return (
            f"ScanResults(folder={self.folder!r}, campaigns={len(self.campaigns)}, "
            f"accounts={self.accounts.num_rows})"
        )

    def campaign(self, campaign_id: str) -> Campaign | None:
        """A campaign by id (``None`` when there is none)."""
        return next((x for x in self.campaigns if x.campaign_id == campaign_id), None)


def write_scan(
    folder: Path,
    *,
    accounts: pa.Table,
    campaigns: Sequence[Campaign],
    summary: Mapping[str, Any],
) -> None:
    """Write a scan's output folder (created if needed; the four files replaced).

    Args:
        folder: the output folder.
        accounts: one row per account, at least the columns of :data:`ACCOUNT_SCORES_SCHEMA`
            (``reasons`` a list of strings, joined with "; " in the CSV).
        campaigns: the campaigns, written in this order.
        summary: a JSON-ready object (``scan_summary.json``).

    The bytes depend only on the arguments (same inputs, same files).
    """
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(accounts, folder / ACCOUNT_SCORES_FILE)
    csv_table = accounts.set_column(
        accounts.schema.get_field_index("reasons"),
        "reasons",
        pa.array(["; ".join(r or []) for r in accounts["reasons"].to_pylist()], pa.string()),
    )
    pacsv.write_csv(csv_table, folder / ACCOUNT_SCORES_CSV)
    (folder / CAMPAIGNS_FILE).write_bytes(
        orjson.dumps([x.to_dict() for x in campaigns], option=orjson.OPT_INDENT_2)
    )
    (folder / SCAN_SUMMARY_FILE).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ResultFormatError(f"{folder} is not a scan output folder", hint=_HINT)


def _read_summary(folder: Path) -> Mapping[str, Any]:
    path = folder / SCAN_SUMMARY_FILE
    if not path.exists():
        return {}
    summary = c.read_json(path)
    if not isinstance(summary, Mapping):
        raise ResultFormatError(f"{path}: expected an object")
    c.check_format(summary.get("format"), name=_NAME, version=_VERSION, where=str(path))
    return summary


def _read_scores(folder: Path) -> pa.Table:
    path = folder / ACCOUNT_SCORES_FILE
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise ResultFormatError(f"{path} does not exist", hint=_HINT) from None
    except (OSError, pa.ArrowException) as exc:
        raise ResultFormatError(f"{path} is not a readable Parquet file ({exc})") from None
    missing = [n for n in _SCORE_COLUMNS if n not in table.column_names]
    if missing:
        raise ResultFormatError(f"{path}: column(s) {', '.join(missing)} missing")
    for name, (ok, words) in _SCORE_COLUMNS.items():
        if not ok(table.schema.field(name).type):
            raise ResultFormatError(
                f"{path}: column {name!r} must hold {words}, not {table.schema.field(name).type}"
            )
    return table


def read_account_scores(folder: Path) -> pa.Table:
    """``account_scores.parquet`` of a scan's output folder, its required columns checked.

    Raises:
        ResultFormatError: the folder or the file is missing, the file is not Parquet, a
            required column is missing or of the wrong type, or ``scan_summary.json`` says the
            folder was written in a newer format.
    """
    _check_folder(folder)
    _read_summary(folder)
    return _read_scores(folder)


def read_scan(folder: Path) -> ScanResults:
    """Read a scan's output folder (``campaigns.json``, ``account_scores.parquet`` and, when
    present, ``scan_summary.json``).

    Raises:
        ResultFormatError: a file is missing or malformed, two campaigns share an id, or the
            folder was written in a newer format; the message names the file and the field.
    """
    _check_folder(folder)
    summary = _read_summary(folder)
    path = folder / CAMPAIGNS_FILE
    raw = c.read_json(path, hint=_HINT)
    if not isinstance(raw, list):
        raise ResultFormatError(f"{path}: expected a list of campaigns")
    campaigns = tuple(
        Campaign.from_dict(x, where=f"{path}: campaign {i}") for i, x in enumerate(raw)
    )
    ids = [x.campaign_id for x in campaigns]
    if len(set(ids)) != len(ids):
        raise ResultFormatError(f"{path}: a campaign id appears twice")
    table = _read_scores(folder)
    return ScanResults(folder=folder, campaigns=campaigns, accounts=table, summary=summary)
