"""Calibration harness: empirical false-positive rates of a detector on text known to be clean.

A detector is calibrated when, on text written without the key, the fraction of p-values at or
below a level ``alpha`` is ``alpha`` (or less: the discrete tests are slightly conservative),
within sampling error. :func:`empirical_fpr` gives that fraction with an exact Clopper-Pearson
interval; :func:`load_alpaca_outputs` reads the AlpacaEval model outputs used as clean text.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from scipy import stats as _sps

__all__ = ["FPRRow", "empirical_fpr", "find_alpaca_outputs", "load_alpaca_outputs"]


@dataclass(frozen=True)
class FPRRow:
    """Empirical false-positive rate at one nominal level.

    Attributes:
        level: the nominal level ``alpha``.
        rejections: p-values at or below ``alpha``.
        tests: p-values in all.
        fpr: ``rejections / tests``.
        low, high: the exact two-sided ``confidence`` Clopper-Pearson interval of the true rate.
        within: the nominal level is inside the interval (agreement within sampling error).
        not_above: the rate is not significantly above nominal (``low <= level``); discrete
            tests on short texts are conservative, so they satisfy this but not always
            ``within``.
    """

    level: float
    rejections: int
    tests: int
    fpr: float
    low: float
    high: float
    within: bool
    not_above: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def empirical_fpr(
    p_values: npt.NDArray[np.float64],
    *,
    levels: Sequence[float] = (1e-2, 1e-3, 1e-4),
    confidence: float = 0.99,
) -> list[FPRRow]:
    """Rejection rates of ``p_values`` at each level with exact confidence intervals."""
    p = np.asarray(p_values, dtype=np.float64)
    n = int(p.size)
    rows = []
    a = 1.0 - confidence
    for level in levels:
        k = int(np.sum(p <= level))
        low = float(_sps.beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
        high = float(_sps.beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
        rows.append(
            FPRRow(
                level=level,
                rejections=k,
                tests=n,
                fpr=k / n if n else 0.0,
                low=low,
                high=high,
                within=low <= level <= high,
                not_above=low <= level,
            )
        )
    return rows


def find_alpaca_outputs(start: Path) -> Path | None:
    """``shared/data/alpaca_eval_dev/outputs`` beside or above ``start`` (``../shared`` in CI)."""
    for base in [start, *start.parents]:
        for candidate in (base / "shared", base / ".." / "shared"):
            folder = candidate / "data" / "alpaca_eval_dev" / "outputs"
            if folder.is_dir():
                return folder.resolve()
    return None


def load_alpaca_outputs(folder: Path, *, limit: int | None = None) -> Iterator[str]:
    """The ``output`` texts of every ``*.jsonl.gz`` file in ``folder`` (sorted by file name)."""
    count = 0
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rb") as fh:
            for line in fh:
                record = orjson.loads(line)
                text = record.get("output") if isinstance(record, dict) else None
                if isinstance(text, str) and text.strip():
                    yield text
                    count += 1
                    if limit is not None and count >= limit:
                        return
