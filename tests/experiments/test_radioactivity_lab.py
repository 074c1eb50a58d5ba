"""The radioactivity lab (experiments/): the tiny preset end to end, the table, the targets, the
helpers and its command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from experiments.radioactivity_lab import LabConfig, LabResult, LabRun, lab_table, run_lab
from experiments.radioactivity_lab.__main__ import main as lab_main
from experiments.radioactivity_lab.lab import _cut
from hypothesis import given
from hypothesis import strategies as st

from distillguard.errors import InputError

pytest.importorskip("torch")


def _run(seed: int, model: str, frac: float | None, mode: str, key: str, p: float) -> LabRun:
    return LabRun(
        seed=seed,
        model=model,
        fraction=frac,
        mode=mode,
        key=key,
        p_value=p,
        n_scored=1000,
        green_fraction=0.3,
    )


def test_tiny_lab_end_to_end(tmp_path: Path) -> None:
    config = replace(LabConfig.tiny(), null_keys=2)
    result = run_lab(config, out_dir=tmp_path)
    assert result.json_path is not None and result.plot_path is not None
    assert result.plot_path.stat().st_size > 1000
    doc = json.loads(result.json_path.read_text())
    assert doc["format"] == "distillguard-radioactivity-lab/1"
    # every model in both modes under the teacher's key; null models under every extra key,
    # watermarked students under one extra key
    models = {r.model for r in result.runs}
    assert models == {"student-0%", "student-100%", "independent"}
    expected = 2 * 2 * (1 + config.null_keys) + 1 * 2 * 2
    assert len(result.runs) == expected
    assert len(result.null_runs()) == 2 * 2 * (1 + config.null_keys) + 2
    for r in result.runs:
        assert 0.0 <= r.p_value <= 1.0
        assert r.n_scored > 0
    # every model is tested with a log: the prompts of its watermarked answers (the 100%
    # student: all 40), a random 10% log for the null models
    logs = {r.model: r.logged_prompts for r in result.runs}
    assert logs == {"student-0%": 4, "independent": 4, "student-100%": 40}
    open_main = [r for r in result.runs if r.mode == "open" and r.key == "watermark"]
    assert all(r.n_scored > 20 for r in open_main)
    table = (tmp_path / "lab.md").read_text()
    assert "student-100%" in table and "null runs:" in table


def test_table_per_seed_and_targets() -> None:
    runs = []
    for seed, (p5, p10c) in enumerate([(1e-7, 1e-4), (1e-6, 2e-3), (1e-9, 1e-5)]):
        runs += [
            _run(seed, "student-5%", 0.05, "open", "watermark", p5),
            _run(seed, "student-10%", 0.1, "open", "watermark", p5 / 10),
            _run(seed, "student-10%", 0.1, "closed", "watermark", p10c),
            _run(seed, "student-0%", 0.0, "open", "watermark", 0.5),
        ]
    runs += [_run(0, "independent", None, "open", f"other-{i}", 0.2) for i in range(50)]
    runs.append(_run(1, "independent", None, "closed", "other-0", 0.004))
    result = LabResult(
        config=replace(LabConfig.tiny(), seeds=(0, 1, 2)),
        runs=tuple(runs),
        curves=(),
        timings_s={},
        corpus="x",
    )
    t = result.targets()
    assert t["open_5pct_worst_p"] == pytest.approx(1e-6)
    assert t["open_5pct_met"] is True
    assert t["closed_10pct_worst_p"] == pytest.approx(2e-3)
    assert t["closed_10pct_met"] is False
    assert t["null_runs"] == 3 + 51
    assert t["null_rejections_at_0.01"] == 1
    assert t["null_met"] is True  # 1 of 54 <= 2%
    table = lab_table(result)
    assert "| seed 0 | seed 1 | seed 2 |" in table
    assert "| student-10% | closed | 1.0e-04 | 2.0e-03 | 1.0e-05 |" in table
    assert "target < 1e-3: not met" in table


def test_config_rejects_bad_values() -> None:
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), fractions=(0.0, 1.5))
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), closed_prompts="anything")
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), seeds=())
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), read_samples=0)
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), probes="everything")
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), read_temperature=0.0)
    with pytest.raises(InputError):
        replace(LabConfig.tiny(), null_log_fraction=0.0)


@given(
    prompt=st.lists(st.integers(3, 50), min_size=1, max_size=6),
    body=st.lists(st.integers(0, 50), max_size=20),
)
def test_cut_stops_at_first_end_of_text(prompt: list[int], body: list[int]) -> None:
    out = _cut([*prompt, *body], len(prompt))
    assert list(out[: len(prompt)]) == prompt
    tail = list(out[len(prompt) :])
    stops = [i for i, x in enumerate(body) if x in (1, 2)]
    if stops:
        assert tail == [*body[: stops[0]], 2]
    else:
        assert tail == body
    assert not np.isin(out[len(prompt) : -1], [1, 2]).any()


def test_workers_run_seeds_in_processes_and_merge(tmp_path: Path) -> None:
    config = replace(LabConfig.tiny(), seeds=(3, 4), null_keys=0, fractions=(0.0,))
    result = run_lab(config, out_dir=tmp_path, workers=2)
    assert {r.seed for r in result.runs} == {3, 4}
    # per seed: student-0% and independent, two modes, the teacher's key only
    assert len(result.runs) == 2 * 2 * 2
    assert {"seed3_total", "seed4_total", "total"} <= set(result.timings_s)
    assert "| seed 3 | seed 4 |" in (tmp_path / "lab.md").read_text()


def test_command_line_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m experiments.radioactivity_lab`` (was ``distillguard lab``)."""
    capsys.readouterr()
    out = tmp_path / "lab"
    assert lab_main(["--preset", "tiny", "--first-seed", "2", "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert Path(data["plot"]).read_bytes()[:4] == b"\x89PNG"
    lab = json.loads(Path(data["json"]).read_text())
    assert {r["mode"] for r in lab["runs"]} == {"open", "closed"}
    assert {r["seed"] for r in lab["runs"]} == {2}
    assert {"student-0%", "student-100%", "independent"} <= {r["model"] for r in lab["runs"]}
    assert "| model |" in Path(data["table"]).read_text()
    assert lab_main(["--preset", "nope", "--json"]) == 4
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert lab_main(["--no-such-option"]) == 2
