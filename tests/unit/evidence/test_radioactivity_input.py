"""The report's reader reads the result file that ``distillguard radioactivity --out`` writes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from distillguard.keyring import WatermarkKey
from distillguard.radioactivity import (
    ModeResult,
    RadioactivityReport,
    RadioactivityScorer,
    TokenText,
)
from distillguard.results import read_radioactivity
from distillguard.watermark import KGWConfig, KGWWatermark


def test_radioactivity_report_file_loads(tmp_path: Path) -> None:
    key = WatermarkKey(
        kid="wm-test",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        secret=hashlib.sha256(b"evidence-radio").digest(),
    )
    scorer = RadioactivityScorer(KGWWatermark(KGWConfig(), key=key))
    rng = np.random.default_rng(0)
    scorer.add_texts([TokenText.of(rng.integers(0, 500, size=300)) for _ in range(4)])
    suspect = ModeResult.from_scorer(
        scorer, subject="student", mode="open", role="suspect", n_texts=4
    )
    report = RadioactivityReport(suspect=suspect, control=suspect, alpha=0.01)
    path = tmp_path / "radio.json"
    report.write_json(path)
    evidence = read_radioactivity(path)
    assert evidence.p_value == suspect.p_value
    assert evidence.method == suspect.detection.method
    assert evidence.suspect.subject == "student"
    assert len(evidence.curve) == len(suspect.curve) > 0
    assert evidence.verdict == report.verdict
    assert evidence.control is not None and evidence.control.p_value == suspect.p_value
    assert evidence == report.to_result()
