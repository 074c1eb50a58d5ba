"""scan_dataset and scan_dataset_text count, skip, limit and report progress the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillguard.keyring import WatermarkKey
from distillguard.watermark import (
    CaterConfig,
    CaterWatermark,
    KGWConfig,
    KGWWatermark,
    ScanReport,
    WordTokenizer,
    scan_dataset,
    scan_dataset_text,
)

TEXT = "the quick brown fox jumps over the lazy dog and then runs far away into the woods"


def _dataset(tmp_path: Path) -> Path:
    rows = [
        {"id": "r1", "text": TEXT},
        {"id": "r2"},  # no text: skipped
        {"id": "r3", "text": TEXT + " again"},
        {"id": "r4", "text": 5},  # not a string: skipped
        {"id": "r5", "text": TEXT + " once more"},
        {"id": "r6", "text": TEXT + " at last"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _scan(
    kind: str, path: Path, key: WatermarkKey, limit: int | None
) -> tuple[ScanReport, list[int]]:
    seen: list[int] = []
    if kind == "tokens":
        report = scan_dataset(
            path,
            scheme=KGWWatermark(KGWConfig(), key=key),
            tokenizer=WordTokenizer(),
            limit=limit,
            on_record=seen.append,
        )
    else:
        report = scan_dataset_text(
            path,
            watermark=CaterWatermark(CaterConfig(), key=key),
            limit=limit,
            on_record=seen.append,
        )
    return report, seen


@pytest.mark.parametrize("kind", ["tokens", "text"])
def test_counts_skips_limit_and_progress(kind: str, tmp_path: Path, key: WatermarkKey) -> None:
    path = _dataset(tmp_path)
    report, seen = _scan(kind, path, key, limit=None)
    assert (report.records, report.skipped, len(report.p_values)) == (6, 2, 4)
    assert seen == [1, 2, 3, 4, 5, 6]
    report, seen = _scan(kind, path, key, limit=4)
    assert (report.records, report.skipped, len(report.p_values)) == (4, 2, 2)
    assert seen == [1, 2, 3, 4]
