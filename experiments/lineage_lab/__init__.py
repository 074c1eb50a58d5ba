"""The lineage lab: tiny teachers with distinct styles, students distilled from them at several
fractions of their data, independent models, and the attribution tests of each where the truth
is known (``python -m experiments.lineage_lab``).

See :mod:`experiments.lineage_lab.lab` and ``docs/fingerprint.md`` ("The lineage lab").
"""

from __future__ import annotations

from .lab import (
    LineageConfig,
    LineageResult,
    LineageRun,
    choose_sources,
    lineage_table,
    merge_results,
    read_lineage,
    run_lineage_lab,
)

__all__ = [
    "LineageConfig",
    "LineageResult",
    "LineageRun",
    "choose_sources",
    "lineage_table",
    "merge_results",
    "read_lineage",
    "run_lineage_lab",
]
