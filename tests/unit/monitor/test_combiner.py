"""The fitted combiner and the held-out-family evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import ConfigurationError
from distillguard.monitor import ScanConfig, ScanResult, scan
from distillguard.monitor.combiner import (
    FEATURE_NAMES,
    GROUP_KINDS,
    Combiner,
    _group_evidence,
    account_matrix,
    fit_combiner,
    flag_threshold,
)
from distillguard.monitor.lofo import LabelledScan, labelled_scan, leave_one_family_out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(0, 1, allow_nan=False)),
        min_size=1,
        max_size=300,
    ),
    st.sampled_from([0.0, 0.002, 0.01, 0.1, 0.5]),
)
def test_threshold_keeps_every_family_at_or_below_alpha(
    rows: list[tuple[str, float]], alpha: float
) -> None:
    fams = [r[0] for r in rows]
    scores = np.array([r[1] for r in rows])
    t = flag_threshold(scores, fams, alpha=alpha)
    assert t >= 0.5
    for f in set(fams):
        s = scores[np.array(fams) == f]
        assert (s >= t).sum() <= int(np.floor(alpha * len(s)))


def _separable(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    y = np.zeros(n, dtype=bool)
    y[: n // 4] = True
    x[y, 0] += 6.0  # elicitation evidence
    x[y, 7] += 6.0  # payment group
    fams = ["camp-a" if i % 2 else "camp-b" for i in range(n // 4)]
    fams += ["legit-a" if i % 3 else "legit-b" for i in range(n - n // 4)]
    return x, y, fams


def test_fit_separates_and_respects_alpha_on_training_legitimate_families() -> None:
    x, y, fams = _separable()
    m = fit_combiner(x, y, fams, alpha=0.01)
    flags = m.flags(x)
    assert flags[y].mean() > 0.95
    fam = np.array(fams)
    for f in ("legit-a", "legit-b"):
        sel = fam == f
        assert flags[sel].mean() <= 0.01
    w = m.weights()
    assert w["elicit_logp"] > 0 and w["log_payment_group"] > 0


def test_fit_is_deterministic() -> None:
    x, y, fams = _separable()
    assert fit_combiner(x, y, fams).to_json() == fit_combiner(x, y, fams).to_json()


def test_fit_needs_both_classes() -> None:
    x, y, fams = _separable()
    with pytest.raises(ConfigurationError):
        fit_combiner(x[~y], y[~y], [f for f, t in zip(fams, y, strict=True) if not t])


def test_json_round_trip(tmp_path: Path) -> None:
    x, y, fams = _separable()
    m = fit_combiner(x, y, fams)
    p = tmp_path / "model.json"
    p.write_text(m.to_json())
    back = Combiner.load(p)
    assert np.array_equal(back.score(x), m.score(x))
    assert back.threshold == m.threshold and back.trained_on == m.trained_on


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(coef=d["coef"][:-1]),
        lambda d: d.update(scale=[0.0] * len(d["scale"])),
        lambda d: d.update(names=list(reversed(d["names"]))),
        lambda d: d.pop("intercept"),
        lambda d: d.update(center=["x"] * len(d["center"])),
    ],
)
def test_malformed_models_are_refused(mutate: object) -> None:
    x, y, fams = _separable()
    d = json.loads(fit_combiner(x, y, fams).to_json())
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ConfigurationError):
        Combiner.from_json(json.dumps(d))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_garbage_is_refused_not_crashed(text: str) -> None:
    with pytest.raises(ConfigurationError):
        Combiner.from_json(text)


def test_group_evidence_counts_the_other_members_only() -> None:
    # accounts 0-3 share a card; 1-3 elicit in 5 of 20 sampled requests, 0 never; 4 is alone
    keys = pa.table(
        {
            "acct": pa.array([0, 1, 2, 3, 4], pa.int64()),
            "kind": pa.array(["payment"] * 5),
            "gkey": pa.array(["card", "card", "card", "card", "other"]),
        }
    )
    k = np.array([0, 5, 5, 5, 20], dtype=float)
    n = np.array([20, 20, 20, 20, 20], dtype=float)
    ev, size = _group_evidence(keys, k, n, p0=0.02, n=5)
    assert ev["payment"][0] > 8  # its three card-mates elicit 15 of 60 (base rate 2%)
    assert 3 < ev["payment"][1] < ev["payment"][0]  # two mates: 10 of 40 (itself excluded)
    assert ev["payment"][4] == 0 and size["payment"][4] == 0  # a group of one is no group
    assert size["payment"][0] == pytest.approx(2.0)
    for kind in GROUP_KINDS:
        if kind != "payment":
            assert not ev[kind].any()


def test_account_matrix_of_a_scan(tiny_log: Path, tiny_scan: ScanResult) -> None:
    assert tiny_scan.detail is None  # not kept unless asked
    result = scan(tiny_log, config=ScanConfig(keep_detail=True))
    assert result.detail is not None
    x = account_matrix(result.detail)
    assert x.shape == (len(result.detail.features), len(FEATURE_NAMES))
    assert np.isfinite(x).all()


def test_leave_one_family_out_scores_every_family_with_a_model_that_never_saw_it(
    tiny_log: Path,
) -> None:
    s = labelled_scan(tiny_log, generator="sim", baselines=False)
    families = set(s.family.tolist())
    assert len(families) >= 3 and s.y.any() and (~s.y).any()
    # a second copy of the campaign family under another name, so that holding one out still
    # leaves campaign accounts to fit on
    fam2 = np.array([f + "-copy" if y else f for f, y in zip(s.family, s.y, strict=True)])
    twin = LabelledScan(
        name="twin",
        generator="sim",
        account_id=s.account_id,
        x=s.x,
        y=s.y,
        family=fam2,
        flags=s.flags,
    )
    report = leave_one_family_out([s, twin])
    assert set(report.thresholds) == families | set(fam2.tolist())
    assert {f.family for f in report.families} == set(report.thresholds)
    assert 0 <= report.precision["combiner"] <= 1 and report.recall["combiner"] > 0.5
    assert "family" in report.table()
