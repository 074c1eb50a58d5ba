"""Analyst feedback: verdicts in the store, refitting the combiner, scanning with the model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from distillguard.errors import ConfigurationError, InputError
from distillguard.monitor import ScanConfig, scan
from distillguard.monitor.feedback import (
    feedback_figures,
    fit_from_labels,
    labels_from_file,
    load_labels,
    record_label,
)
from distillguard.monitor.lofo import labelled_scan
from distillguard.store import Store


def test_verdicts_latest_counts_and_history_stays(store: Store) -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    record_label(store, "a1", "campaign", actor="ana", note="cell", at=t0)
    record_label(store, "a2", "legitimate", actor="ana", at=t0 + timedelta(seconds=1))
    record_label(store, "a1", "legitimate", actor="bo", note="lab", at=t0 + timedelta(seconds=2))
    latest = load_labels(store)
    assert [(x.account_id, x.verdict, x.actor) for x in latest] == [
        ("a1", "legitimate", "bo"),
        ("a2", "legitimate", "ana"),
    ]
    assert [x.verdict for x in load_labels(store, history=True)] == [
        "campaign",
        "legitimate",
        "legitimate",
    ]
    with pytest.raises(InputError):
        record_label(store, "a3", "suspicious", actor="ana")
    with pytest.raises(InputError):
        record_label(store, "", "campaign", actor="ana")


def test_labels_from_files(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"account_id": ["a", "b"], "verdict": ["campaign", "legitimate"]}),
        tmp_path / "v.parquet",
    )
    assert labels_from_file(tmp_path / "v.parquet") == {"a": True, "b": False}
    pacsv.write_csv(
        pa.table({"account_id": ["a", "b"], "campaign_id": ["c1", None]}), tmp_path / "l.csv"
    )
    assert labels_from_file(tmp_path / "l.csv") == {"a": True, "b": False}
    pq.write_table(
        pa.table({"account_id": ["a"], "verdict": ["perhaps"]}), tmp_path / "bad.parquet"
    )
    with pytest.raises(InputError):
        labels_from_file(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "nocol.parquet")
    with pytest.raises(InputError):
        labels_from_file(tmp_path / "nocol.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError):
        labels_from_file(tmp_path / "garbage.parquet")


def test_refit_and_scan_with_the_model(tiny_log: Path, tmp_path: Path) -> None:
    result = scan(tiny_log, config=ScanConfig(keep_detail=True))
    assert result.detail is not None
    truth = labels_from_file(tiny_log / "labels.parquet")
    model = fit_from_labels(result.detail, truth | {"not-scanned": True})
    (tmp_path / "model.json").write_text(model.to_json())
    out = tmp_path / "scan"
    refit = scan(tiny_log, out=out, config=ScanConfig(model=tmp_path / "model.json"))
    ids = refit.accounts["account_id"].to_pylist()
    flagged = np.asarray(refit.accounts["flagged"].to_numpy(zero_copy_only=False))
    y = np.array([truth[a] for a in ids])
    assert (flagged & y).sum() >= 0.9 * y.sum()  # in-distribution: the verdicts it was fitted on
    assert (flagged & ~y).sum() <= 0.01 * (~y).sum()
    campaigns = json.loads((out / "campaigns.json").read_text())
    assert campaigns and all(set(c["accounts"]) <= set(ids) for c in campaigns)
    with pytest.raises(ConfigurationError):
        fit_from_labels(result.detail, {ids[0]: True, ids[1]: False})


def test_feedback_figures_hold_out_the_labelled_accounts(tiny_log: Path) -> None:
    s = labelled_scan(tiny_log, generator="sim", baselines=False)
    fig = feedback_figures([s], fraction=0.2, seed=1)
    assert fig.labelled + fig.evaluated == len(s)
    for d in ("refitted", "scan"):
        assert 0 <= fig.precision[d] <= 1 and 0 <= fig.recall[d] <= 1
    with pytest.raises(ConfigurationError):
        feedback_figures([s], fraction=1.5)


def test_tune_and_scan_from_the_command_line(tiny_log: Path, tmp_path: Path) -> None:
    from distillguard.cli.main import main

    model = tmp_path / "m.json"
    labels = str(tiny_log / "labels.parquet")
    assert main(["--quiet", "tune", str(tiny_log), "--labels", labels, "--out", str(model)]) == 0
    assert json.loads(model.read_text())["format"] == "distillguard-combiner-v1"
    out = tmp_path / "scan"
    rc = main(["--quiet", "scan", str(tiny_log), "--model", str(model), "--out", str(out)])
    assert rc == 0 and (out / "account_scores.parquet").exists()
    model.write_text("{}")
    rc = main(["--quiet", "scan", str(tiny_log), "--model", str(model), "--out", str(out)])
    assert rc == 3  # a configuration problem, not a crash
