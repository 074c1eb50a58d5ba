"""Writing the results of a scan (format v1 "Results of a scan")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from distillguard._internal.timeutil import format_ts

if TYPE_CHECKING:
    from distillguard.monitor.scan import ScanResult

__all__ = ["ACCOUNT_SCORES_SCHEMA", "Campaign", "write_results"]

#: The columns required by format v1, then ours.
ACCOUNT_SCORES_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("flagged", pa.bool_(), nullable=False),
        pa.field("campaign_id", pa.string()),
        pa.field("reasons", pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class Campaign:
    """One detected campaign (an entry of ``campaigns.json``)."""

    campaign_id: str
    accounts: list[str]
    score: float
    first_seen_us: int
    last_seen_us: int
    exchanges: int
    signals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``campaigns.json`` form (timestamps RFC 3339)."""
        from datetime import UTC, datetime

        return {
            "campaign_id": self.campaign_id,
            "accounts": self.accounts,
            "score": self.score,
            "first_seen": format_ts(datetime.fromtimestamp(self.first_seen_us / 1e6, UTC)),
            "last_seen": format_ts(datetime.fromtimestamp(self.last_seen_us / 1e6, UTC)),
            "exchanges": self.exchanges,
            "signals": self.signals,
        }


def write_results(result: ScanResult, out: Path) -> None:
    """Write ``account_scores.parquet``/``.csv``, ``campaigns.json`` and ``scan_summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    table = result.accounts
    pq.write_table(table, out / "account_scores.parquet")
    csv_table = table.set_column(
        table.schema.get_field_index("reasons"),
        "reasons",
        pa.array(["; ".join(r or []) for r in table["reasons"].to_pylist()], pa.string()),
    )
    pacsv.write_csv(csv_table, out / "account_scores.csv")
    (out / "campaigns.json").write_bytes(
        orjson.dumps([c.to_dict() for c in result.campaigns], option=orjson.OPT_INDENT_2)
    )
    (out / "scan_summary.json").write_bytes(
        orjson.dumps(result.summary(), option=orjson.OPT_INDENT_2)
    )
