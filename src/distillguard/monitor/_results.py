"""The scan's side of the results format: it writes through :mod:`distillguard.results`.

The model (:class:`~distillguard.results.Campaign`), the file names and the writer live in the
results package; this module only hands a finished scan to :func:`~distillguard.results.write_scan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from distillguard.results import ACCOUNT_SCORES_SCHEMA, Campaign, write_scan

__all__ = ["ACCOUNT_SCORES_SCHEMA", "Campaign", "write_results"]


class _Finished(Protocol):
    """What :func:`write_results` needs of a scan's result (``monitor.scan.ScanResult``)."""

    @property
    def accounts(self) -> pa.Table: ...

    @property
    def campaigns(self) -> Sequence[Campaign]: ...

    def summary(self) -> dict[str, Any]: ...


def write_results(result: _Finished, out: Path) -> None:
    """Write ``account_scores.parquet``/``.csv``, ``campaigns.json`` and ``scan_summary.json``."""
    write_scan(out, accounts=result.accounts, campaigns=result.campaigns, summary=result.summary())
