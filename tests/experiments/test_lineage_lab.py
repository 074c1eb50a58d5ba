"""The lineage lab (experiments/lineage_lab): the tiny preset end to end on a corpus the test
writes itself, the source choice, the counting behind power and false accusations, and the
command line."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from experiments.lineage_lab import (
    LineageConfig,
    LineageResult,
    LineageRun,
    choose_sources,
    lineage_table,
    merge_results,
    read_lineage,
    run_lineage_lab,
)
from experiments.lineage_lab.__main__ import main as lab_main
from experiments.lineage_lab.lab import detokenize
from hypothesis import given
from hypothesis import strategies as st

from distillguard.errors import InputError

pytest.importorskip("torch")

_WORDS = [f"w{i}" for i in range(120)]
_OPENERS = [
    "sure ! here is",
    "certainly , the answer",
    "as an ai , i",
    "great question .",
    "in short ,",
    "well , let me",
    "the following is",
    "hello there !",
    "of course .",
]


def _corpus(root: Path, *, n_prompts: int = 80, teachers: int = 7, human: int = 2) -> Path:
    """A small AlpacaEval-layout corpus with a lineage.json: each source opens its answers with
    its own formula and prefers its own words."""
    out = root / "outputs"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    refs = {
        f"ref{i}": {"family": f"fam{i}", "provider": f"prov{i % (teachers - 1)}"}
        for i in range(teachers)
    }
    suspects: dict[str, dict[str, str | None]] = {
        f"human{j}": {"trained_on_outputs_of": None} for j in range(human)
    }
    suspects["student-x"] = {"trained_on_outputs_of": "fam0"}
    (root / "lineage.json").write_text(json.dumps({"reference_models": refs, "suspects": suspects}))
    for k, name in enumerate([*refs, *suspects]):
        pref = rng.permutation(len(_WORDS))[:20]
        with gzip.open(out / f"{name}.jsonl.gz", "wt", encoding="utf-8") as fh:
            for pid in range(n_prompts):
                words = [_WORDS[i] for i in rng.choice(pref, size=12)]
                text = f"{_OPENERS[k % len(_OPENERS)]} {' '.join(words)} ."
                rec = {
                    "prompt_id": pid,
                    "instruction": f"tell me about w{pid % 50} and w{pid % 7}",
                    "output": text,
                }
                fh.write(json.dumps(rec) + "\n")
    return out


def test_choose_sources_first_of_each_provider_and_human_data(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    names = sorted(p.name.removesuffix(".jsonl.gz") for p in corpus.glob("*.jsonl.gz"))
    teachers, own = choose_sources(corpus, names)
    # ref6 shares prov0 with ref0: the first of each provider only
    assert teachers == ["ref0", "ref1", "ref2", "ref3", "ref4", "ref5"]
    assert own == ["human0", "human1"]  # the documented student is neither


def test_choose_sources_without_lineage_file(tmp_path: Path) -> None:
    names = [f"s{i}" for i in range(9)]
    teachers, own = choose_sources(tmp_path / "nowhere", names)
    assert own == ["s6", "s7", "s8"] and teachers == names[:6]


def test_tiny_lab_end_to_end(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "data")
    config = LineageConfig.tiny()
    result = run_lineage_lab(config, out_dir=tmp_path / "out", corpus=corpus)
    assert result.teachers == ("ref0", "ref1", "ref2", "ref3", "ref4", "ref5")
    assert result.own_sources == ("human0", "human1")
    models = {r.model for r in result.runs}
    assert models == {
        "student-ref0-50%",
        "student-ref0-100%",
        "orphan-student-ref0-50%",
        "orphan-student-ref0-100%",
        "independent-human0",
        "independent-human1",
        *(f"holdout-ref{i}" for i in range(6)),
    }
    # per suspect: one attribute test and one teacher test per family; a held-out teacher, and
    # a student against the library without its teacher (orphan), against the other five
    assert len(result.runs) == 4 * (1 + 6) + (6 + 2) * (1 + 5)
    for r in result.runs:
        assert 0.0 <= r.p_value <= 1.0
        assert r.positive == (r.p_value < config.alpha) or r.test == "attribute"
    students = [r for r in result.runs if r.kind == "student"]
    assert {r.truth for r in students} == {"lab-ref0"}
    # null runs: every test of the independent, held-out and orphan models, and the students'
    # teacher tests of the other five families
    assert len(result.nulls()) == 2 * 7 + (6 + 2) * 6 + 2 * 5
    assert all(r.truth is None for r in result.runs if r.kind == "orphan")
    doc = json.loads((tmp_path / "out" / "lineage.json").read_text())
    assert doc["format"] == "distillguard-lineage-lab/1"
    assert doc["targets"]["all_null_runs"] == len(result.nulls())
    table = (tmp_path / "out" / "lineage.md").read_text()
    assert "| attribute | 50% |" in table and "null runs" in table


def _run(
    model: str,
    kind: str,
    truth: str | None,
    frac: float | None,
    test: str,
    target: str | None,
    p: float,
) -> LineageRun:
    return LineageRun(
        seed=0,
        model=model,
        kind=kind,
        truth=truth,
        fraction=frac,
        test=test,
        target=target,
        p_value=p,
        positive=target is not None and p < 0.01,
    )


def test_power_and_false_accusations_are_counted_by_the_truth() -> None:
    runs = [
        _run("s1", "student", "A", 0.1, "attribute", "A", 1e-4),  # hit
        _run("s2", "student", "A", 0.1, "attribute", "B", 1e-4),  # wrong family
        _run("s3", "student", "A", 0.03, "attribute", None, 0.2),  # miss, below 10%
        _run("s1", "student", "A", 0.1, "teacher", "A", 1e-3),  # hit
        _run("s1", "student", "A", 0.1, "teacher", "B", 1e-3),  # false: learned from A only
        _run("s2", "student", "A", 0.1, "teacher", "A", 0.5),  # miss
        _run("i1", "independent", None, None, "attribute", "B", 1e-3),  # false
        _run("i1", "independent", None, None, "teacher", "A", 0.4),
        _run("h1", "holdout", None, None, "attribute", None, 0.9),
    ]
    config = replace(LineageConfig.tiny(), fractions=(0.03, 0.1))
    result = LineageResult(
        config=config, runs=tuple(runs), teachers=(), own_sources=(), timings_s={}, corpus=""
    )
    assert result.power("attribute", 0.1) == (1, 2)
    assert result.power("teacher", 0.1) == (1, 2)
    assert result.power("attribute", 0.03) == (0, 1)
    assert result.wrong_family() == (1, 3)
    nulls = result.nulls()
    assert {(r.model, r.test, r.target) for r in nulls} == {
        ("s1", "teacher", "B"),
        ("i1", "attribute", "B"),
        ("i1", "teacher", "A"),
        ("h1", "attribute", None),
    }
    t = result.targets()
    assert t["attribute"]["power"] == 0.5 and not t["attribute"]["power_met"]
    assert t["teacher"]["false_accusations"] == 1 and t["teacher"]["null_runs"] == 2
    assert t["all_false_accusations"] == 2
    assert not t["teacher"]["false_met"]  # fewer than 50 null runs
    assert "1 of 2" in lineage_table(result)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=50, max_size=200))
def test_false_target_needs_50_runs_and_2_percent(ps: list[float]) -> None:
    runs = tuple(
        _run(f"i{i}", "independent", None, None, "teacher", "A", p) for i, p in enumerate(ps)
    )
    result = LineageResult(
        config=LineageConfig.tiny(), runs=runs, teachers=(), own_sources=(), timings_s={}, corpus=""
    )
    false = sum(p < 0.01 for p in ps)
    assert result.targets()["teacher"]["false_met"] == (false <= 0.02 * len(ps))


def test_detokenize_attaches_punctuation() -> None:
    assert detokenize(["sure", "!", "i", "'", "m", "claude", ",", "(", "an", "ai", ")", "."]) == (
        "sure! i'm claude, (an ai)."
    )


def test_config_rejects_nonsense() -> None:
    with pytest.raises(InputError):
        LineageConfig(fractions=(0.0, 1.0))
    with pytest.raises(InputError):
        LineageConfig(n_teachers=5)
    with pytest.raises(InputError):
        LineageConfig(seq_len=12, prompt_words=10)


def test_cli_rejects_an_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["--preset", "huge", "--json"]) == 4
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_results_read_back_and_merge(tmp_path: Path) -> None:
    runs = (
        _run("s1", "student", "A", 0.1, "attribute", "A", 1e-4),
        _run("i1", "independent", None, None, "teacher", "A", 0.4),
    )
    config = replace(LineageConfig.tiny(), seeds=(0,))
    part = LineageResult(
        config=config,
        runs=runs,
        teachers=("t",),
        own_sources=("h",),
        timings_s={"x": 1.0},
        corpus="",
    )
    other = replace(
        part,
        config=replace(config, seeds=(1,)),
        runs=tuple(replace(r, seed=1) for r in runs),
    )
    for name, res in (("a", part), ("b", other)):
        merge_results([res], out_dir=tmp_path / name)
    back = read_lineage(tmp_path / "a")
    assert back.runs == part.runs and back.config == part.config
    packed = tmp_path / "b.json.gz"
    packed.write_bytes(gzip.compress((tmp_path / "b" / "lineage.json").read_bytes()))
    merged = merge_results([back, read_lineage(packed)], out_dir=tmp_path / "m")
    assert merged.config.seeds == (0, 1) and len(merged.runs) == 4
    assert merged.timings_s == {"x": 2.0}
    assert (tmp_path / "m" / "lineage.md").is_file()
    with pytest.raises(InputError, match="twice"):
        merge_results([part, part])
    with pytest.raises(InputError, match="different configurations"):
        merge_results([part, replace(other, config=replace(other.config, alpha=0.05))])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError):
        read_lineage(tmp_path / "bad.json")


def test_rescored_doubles_p_values_without_an_identity_test() -> None:
    runs = (
        _run("s1", "student", "A", 0.1, "teacher", "A", 0.004),  # 0.008: still learned
        _run("s2", "student", "A", 0.1, "teacher", "A", 0.007),  # 0.014: no longer
        replace(_run("s3", "student", "A", 0.1, "attribute", "A", 0.006), top_family="A"),
        replace(_run("s4", "student", "A", 0.1, "teacher", "A", 0.007), p_identity=0.003),
    )
    result = LineageResult(
        config=LineageConfig.tiny(),
        runs=runs,
        teachers=(),
        own_sources=(),
        timings_s={},
        corpus="",
    )
    back = result.rescored(2.0)
    assert [r.positive for r in back.runs] == [True, False, False, True]
    assert back.runs[2].target is None and back.runs[2].p_value == pytest.approx(0.012)
    assert back.runs[3] == runs[3]  # a run with an identity test keeps its p-value
    assert result.rescored(1.0).runs == runs
    with pytest.raises(InputError):
        result.rescored(0.5)
