"""Attribution on the real AlpacaEval development folder, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from distillguard.cli.main import main
from distillguard.fingerprint import (
    FamilyMap,
    Fingerprint,
    compute_fingerprint,
    read_families,
    read_outputs,
)
from distillguard.fingerprint.attribution import attribute
from distillguard.fingerprint.baseline import naive_baseline

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "alpaca_eval_dev"
N_PROMPTS = 400  # a prefix of the probe set keeps the test fast; the benchmark uses all 805

_skip_no_data = pytest.mark.skipif(
    not (DATA / "lineage.json").is_file(), reason=f"dev data folder absent: {DATA}"
)


def needs_data(fn: Any) -> Any:
    """Real-data tests: skipped without the folder, and marked slow (about 2 CPU-minutes)."""
    return pytest.mark.slow(_skip_no_data(fn))


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    lineage = json.loads((DATA / "lineage.json").read_text())
    outputs = {
        name: read_outputs(DATA / "outputs" / f"{name}.jsonl.gz").subset(list(range(N_PROMPTS)))
        for name in [*lineage["reference_models"], *lineage["suspects"]]
    }
    fps = {name: compute_fingerprint(out) for name, out in outputs.items()}
    return {
        "lineage": lineage,
        "families": read_families(DATA / "lineage.json"),
        "outputs": outputs,
        "fps": fps,
    }


def _refs(dev: dict[str, Any]) -> list[Fingerprint]:
    return [dev["fps"][r] for r in dev["lineage"]["reference_models"]]


@needs_data
def test_alpaca_names_its_teacher(dev: dict[str, Any]) -> None:
    result = attribute(dev["fps"]["alpaca-7b"], _refs(dev), dev["families"], alpha=0.01)
    assert result.verdict == "text-davinci-003"
    assert result.ranking[0].p_value < 0.01
    assert result.explanation["shared_habits"]


@needs_data
def test_heldout_references_get_no_verdict(dev: dict[str, Any]) -> None:
    """Each reference, with its own family and provider removed, is an unrelated suspect."""
    fm: FamilyMap = dev["families"]
    verdicts = []
    for name in dev["lineage"]["reference_models"]:
        keep = [f for f in _refs(dev) if not fm.related(f.name, name)]
        sub = FamilyMap({f.name: fm.families[f.name] for f in keep}, fm.providers)
        verdicts.append(attribute(dev["fps"][name], keep, sub, alpha=0.01).verdict)
    # 22 tests at a 1% family-wise rate: more than one false verdict would be far off nominal
    assert sum(v is not None for v in verdicts) <= 1


@needs_data
@pytest.mark.xfail(reason="target not met yet: see docs/fingerprint.md, results", strict=False)
def test_dev_targets_all_eight(dev: dict[str, Any]) -> None:
    wrong = {}
    for name, meta in dev["lineage"]["suspects"].items():
        verdict = attribute(dev["fps"][name], _refs(dev), dev["families"], alpha=0.01).verdict
        if verdict != meta["trained_on_outputs_of"]:
            wrong[name] = verdict
    assert not wrong


@needs_data
def test_baseline_always_accuses(dev: dict[str, Any]) -> None:
    refs = [dev["outputs"][r] for r in dev["lineage"]["reference_models"]]
    for name in dev["lineage"]["suspects"]:
        base = naive_baseline(dev["outputs"][name], refs, dev["families"])
        assert base.family in dev["families"].families.values()


FAST_PROMPTS = 200


@_skip_no_data
def test_fast_real_data_cli_with_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distilled and an independent suspect on 200 real prompts, through the CLI and the cache.

    The first run fingerprints the references into the cache; the second suspect reuses them.
    """
    import distillguard.fingerprint.cache as cache_mod
    from distillguard.fingerprint.library import write_outputs_file

    lineage = json.loads((DATA / "lineage.json").read_text())
    refs = tmp_path / "refs"
    refs.mkdir()
    ids = list(range(FAST_PROMPTS))
    for name in [*lineage["reference_models"], "alpaca-7b", "humpback-llama-65b"]:
        out = read_outputs(DATA / "outputs" / f"{name}.jsonl.gz").subset(ids)
        folder = refs if name in lineage["reference_models"] else tmp_path
        target = folder / f"{name}.jsonl.gz"
        write_outputs_file(target, out)
    fam = tmp_path / "families.json"
    fam.write_text(json.dumps({"reference_models": lineage["reference_models"]}))
    cache = tmp_path / "cache"
    base = ["--references", str(refs), "--families", str(fam), "--cache-dir", str(cache)]
    code, doc = _run(
        [*base, "--suspect", str(tmp_path / "alpaca-7b.jsonl.gz"), "--alpha", "0.01"], capsys
    )
    assert code == 0
    assert doc["verdict"] == "text-davinci-003"
    assert doc["ranking"][0]["p_value"] < 0.01
    assert doc["explanation"]["shared_habits"]
    phrases = doc["explanation"]["shared_phrases"]
    assert phrases and all(p["suspect_rate"] > p["others_rate"] for p in phrases)
    assert len(list(cache.glob("*.npz"))) == len(lineage["reference_models"])

    computed: list[str] = []
    real = compute_fingerprint

    def counting(outputs: Any, **kwargs: Any) -> Any:
        computed.append(outputs.name)
        return real(outputs, **kwargs)

    monkeypatch.setattr(cache_mod, "compute_fingerprint", counting)
    code, doc = _run(
        [*base, "--suspect", str(tmp_path / "humpback-llama-65b.jsonl.gz"), "--alpha", "0.01"],
        capsys,
    )
    assert code == 0
    assert doc["verdict"] is None
    assert computed == []  # every reference came from the cache


MORE = REPO.parent / "shared" / "data" / "alpaca_eval_more"


@pytest.mark.slow  # 34 reference fingerprints: 30-100 s on the shared 2-core VM
@pytest.mark.skipif(not (MORE / "lineage.json").is_file(), reason=f"absent: {MORE}")
@_skip_no_data
def test_both_splits_with_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both reference splits (34 models) through the CLI on 200 prompts, with --teacher."""
    from distillguard.fingerprint.library import write_outputs_file

    ids = list(range(FAST_PROMPTS))
    args = ["--cache-dir", str(tmp_path / "cache")]
    n_families = set()
    for split in (DATA, MORE):
        lineage = json.loads((split / "lineage.json").read_text())
        folder = tmp_path / split.name
        folder.mkdir()
        for name in [*lineage["reference_models"], *lineage["suspects"]]:
            out = read_outputs(split / "outputs" / f"{name}.jsonl.gz").subset(ids)
            write_outputs_file(folder / f"{name}.jsonl.gz", out)
        n_families |= {m["family"] for m in lineage["reference_models"].values()}
        args += ["--references", str(folder), "--families", str(split / "lineage.json")]
    suspect = tmp_path / "alpaca_eval_more" / "alpaca-7b-neft.jsonl.gz"
    code, doc = _run([*args, "--suspect", str(suspect), "--teacher", "text-davinci-003"], capsys)
    assert code == 0
    assert len(doc["ranking"]) == len(n_families)
    assert {"verdict", "provider_verdict", "provider_ranking", "teacher"} <= set(doc)
    assert "identity" in doc["channels"] and "identity" in doc["explanation"]
    teacher = doc["teacher"]
    assert teacher["provider"] == "openai" and isinstance(teacher["learned_from_teacher"], bool)
    null = teacher["family"]["null"]
    # before text-davinci-003 (2022-11-28) only Cohere's model; the rest: documented providers
    assert null["cohere"].startswith("released 2022-11-08")
    assert all(r.startswith("documented provider") for m, r in null.items() if m != "cohere")
    assert not any(m.startswith(("gpt", "text_davinci")) for m in null)


# ---- the CLI on small synthetic data ---------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI runs without --cache-dir write their fingerprint cache under tmp_path, not $HOME."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


_STYLES = {
    "alpha": "Sure! Here is the answer:\n\n1. {w}\n2. {w} again\n\nHope this helps!",
    "beta": "## {w}\n\n- **{w}** matters\n- more on {w}",
    "gamma": "The {w} is a thing; it is known (as {w}).",
    "delta": "As an AI, I think {w} — perhaps — is fine? {w}?",
    "eps": "{w}. {w}. {w}.",
}


def _write_model(path: Path, style: str, n: int = 40, start: int = 0) -> None:
    words = ["apple", "river", "stone", "cloud", "music", "paper", "green", "light"]
    lines = []
    for i in range(start, start + n):
        w = f"{words[i % len(words)]} {words[(i * 3) % len(words)]}"
        text = _STYLES[style].format(w=w)
        lines.append(json.dumps({"prompt_id": i, "instruction": f"q{i}", "output": text}))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, Path]:
    refs = tmp_path / "refs"
    refs.mkdir()
    families = {}
    for style in _STYLES:
        for version in (1, 2):
            _write_model(refs / f"{style}{version}.jsonl", style)
            families[f"{style}{version}"] = style
    fam_file = tmp_path / "families.json"
    fam_file.write_text(json.dumps(families))
    suspect = tmp_path / "suspect.jsonl"
    _write_model(suspect, "beta")
    return refs, fam_file, suspect


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = main(["--json", "fingerprint", "attribute", *args])
    out = capsys.readouterr().out
    return code, orjson.loads(out) if out.strip() else None


def test_cli_attribute_json(
    tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    refs, fam, suspect = tiny
    args = ["--references", str(refs), "--families", str(fam), "--suspect", str(suspect)]
    code, doc = _run([*args, "--alpha", "0.01", "--baseline"], capsys)
    assert code == 0
    assert set(doc) >= {"verdict", "ranking", "baseline"}
    assert {r["family"] for r in doc["ranking"]} == set(_STYLES)
    assert doc["ranking"][0]["family"] == "beta"
    for r in doc["ranking"]:
        assert 0.0 <= r["p_value"] <= 1.0


def test_cli_unknown_stem(
    tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    refs, fam, suspect = tiny
    data = json.loads(fam.read_text())
    data["ghost-model"] = "alpha"
    fam.write_text(json.dumps(data))
    code, doc = _run(
        ["--references", str(refs), "--families", str(fam), "--suspect", str(suspect)], capsys
    )
    assert code == 4
    assert "ghost-model" in doc["message"]


def test_cli_mismatched_prompts(
    tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refs, fam, _ = tiny
    other = tmp_path / "other.jsonl"
    _write_model(other, "beta", start=1000)
    code, doc = _run(
        ["--references", str(refs), "--families", str(fam), "--suspect", str(other)], capsys
    )
    assert code == 4
    assert "prompt ids" in doc["message"]


def test_cli_missing_and_malformed(
    tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refs, fam, _ = tiny
    code, doc = _run(
        [
            "--references",
            str(refs),
            "--families",
            str(fam),
            "--suspect",
            str(tmp_path / "no.jsonl"),
        ],
        capsys,
    )
    assert code == 4
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": 0, "output": "x"}\n{oops\n')
    code, doc = _run(
        ["--references", str(refs), "--families", str(fam), "--suspect", str(bad)], capsys
    )
    assert code == 4
    assert "bad.jsonl:2" in doc["message"]
