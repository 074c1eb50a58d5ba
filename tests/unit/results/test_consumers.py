"""The consumers (evidence report, console, evaluation) read the previous release's result files
through distillguard.results, and a result file of unknown kind is told apart by its marker."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.console import ScanIndex
from distillguard.console._app import _load_result
from distillguard.errors import ResultFormatError
from distillguard.evidence import build_report, render_html
from distillguard.monitor.evaluate import evaluate_scan
from distillguard.results import (
    AttributionResult,
    RadioactivityResult,
    read_attribution,
    read_radioactivity,
    read_result,
    read_scan,
)

DATA = Path(__file__).parent / "data"
SCAN = DATA / "scan-v1"
RADIO = DATA / "radioactivity-v1.json"
ATTR = DATA / "attribution-v1.json"


def test_read_result_tells_the_kinds_apart(tmp_path: Path) -> None:
    assert isinstance(read_result(RADIO), RadioactivityResult)  # has a verdict, no ranking
    assert isinstance(read_result(ATTR), AttributionResult)
    loose = tmp_path / "loose.json"
    loose.write_bytes(orjson.dumps({"method": "m", "statistic": 1.0, "p_value": 0.5}))
    assert isinstance(read_result(loose), RadioactivityResult)
    marked = tmp_path / "marked.json"
    marked.write_bytes(orjson.dumps({"format": "distillguard-attribution/1", "ranking": []}))
    assert isinstance(read_result(marked), AttributionResult)
    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps({"format": "distillguard-scan/1"}))
    with pytest.raises(ResultFormatError, match="neither a radioactivity nor an attribution"):
        read_result(other)
    other.write_bytes(b"[]")
    with pytest.raises(ResultFormatError, match="expected an object"):
        read_result(other)


def test_console_shows_the_radioactivity_file_the_cli_writes() -> None:
    """Regression: the console classified any file with a ``verdict`` as an attribution, so the
    file ``distillguard radioactivity --out`` writes was refused as a bad attribution."""
    rad = _load_result(RADIO)
    assert rad["error"] is None and rad["kind"] == "radioactivity"
    assert rad["radioactivity"].suspect.subject == "student-7b" and "curve" in rad
    attr = _load_result(ATTR)
    assert attr["error"] is None and attr["kind"] == "attribution"
    assert attr["attribution"].verdict == "gpt-3.5"


def test_console_indexes_the_previous_release_scan(tmp_path: Path) -> None:
    index = ScanIndex.load(Path(shutil.copytree(SCAN, tmp_path / "scan")))
    assert [c.campaign_id for c in index.campaigns] == ["camp-0123456789ab", "camp-ba9876543210"]
    assert index.by_campaign["camp-0123456789ab"]["account_id"].to_pylist() == [
        "acct-1",
        "acct-2é",
    ]
    assert index.campaign("camp-ba9876543210") is not None


def test_report_renders_the_previous_release_files() -> None:
    report = build_report(
        scan=read_scan(SCAN),
        store=None,
        radioactivity=read_radioactivity(RADIO),
        attribution=read_attribution(ATTR),
    )
    html = render_html(report)
    assert "camp-0123456789ab" in html and "student-7b" in html and "gpt-3.5" in html
    assert [s.campaign.campaign_id for s in report.campaigns] == [
        "camp-0123456789ab",
        "camp-ba9876543210",
    ]


def test_evaluation_reads_the_previous_release_scores(tmp_path: Path) -> None:
    labels = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                "account_id": ["acct-1", "acct-2é", "acct,3", "acct-4"],
                "campaign_id": ["c1", "c1", None, None],
                "population": ["campaign", "campaign", "hobbyist", "power_user"],
            }
        ),
        labels,
    )
    report = evaluate_scan(SCAN, labels, baselines=False)
    # flagged: acct-1, acct-2é (the labelled campaign) and acct-4 (a power user)
    assert report.ours.flagged == 3 and report.ours.recall == 1.0
    assert report.ours.precision == pytest.approx(2 / 3)
    assert report.ours.fpr_by_population["power_user"] == 1.0
    folder = Path(shutil.copytree(SCAN, tmp_path / "broken"))
    (folder / "account_scores.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(ResultFormatError, match=r"account_scores\.parquet"):
        evaluate_scan(folder, labels, baselines=False)
