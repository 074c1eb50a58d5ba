"""`fingerprint attribute` over several reference folders and families files, with --teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillguard.cli.main import app, main
from distillguard.errors import InputError
from distillguard.fingerprint import load_probe_set
from distillguard.fingerprint.references import read_families_files, reference_files

from .test_teacher import STYLES, _texts


def _write(path: Path, family: str, seed: int, **kw: object) -> None:
    out = _texts(family, seed=seed, **kw)  # type: ignore[arg-type]
    with path.open("w", encoding="utf-8") as fh:
        for pid, text in zip(out.prompt_ids, out.texts, strict=True):
            fh.write(json.dumps({"prompt_id": pid, "instruction": "q", "output": text}) + "\n")


@pytest.fixture()
def splits(tmp_path: Path) -> tuple[list[Path], list[Path], Path]:
    """Two folders: the first holds four families, the second the other three."""
    folders, fam_files = [], []
    for part, fams in enumerate((list(STYLES)[:4], list(STYLES)[4:])):
        folder = tmp_path / f"split{part}"
        (folder / "outputs").mkdir(parents=True)
        lineage: dict[str, dict[str, str]] = {}
        for k, fam in enumerate(fams):
            for v in range(2):
                name = f"{fam}{v}"
                _write(folder / "outputs" / f"{name}.jsonl", fam, seed=10 * k + v + 100 * part)
                _, provider, date = STYLES[fam]
                lineage[name] = {"family": fam, "provider": provider, "released": date}
        (folder / "lineage.json").write_text(json.dumps({"reference_models": lineage}))
        folders.append(folder / "outputs")
        fam_files.append(folder / "lineage.json")
    suspect = tmp_path / "student.jsonl"
    _write(suspect, "eps", seed=99, mix="tutor", share=0.6)
    return folders, fam_files, suspect


def _args(folders: list[Path], fam_files: list[Path], suspect: Path) -> list[str]:
    args = ["--json", "fingerprint", "attribute", "--no-cache", "--suspect", str(suspect)]
    for f in folders:
        args += ["--references", str(f)]
    for f in fam_files:
        args += ["--families", str(f)]
    return args


def test_two_splits_and_teacher(splits: tuple[list[Path], list[Path], Path]) -> None:
    folders, fam_files, suspect = splits
    runner = CliRunner()
    res = runner.invoke(app, [*_args(folders, fam_files, suspect), "--teacher", "tutor"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len({r["reference"] for r in doc["ranking"]}) == len(STYLES)  # both folders used
    assert doc["verdict"] == "tutor" and doc["provider_verdict"] == "acme"
    assert doc["teacher"]["learned_from_teacher"] is True
    assert doc["teacher"]["learned_from_provider"] is True
    assert "identity" in doc["channels"]
    assert doc["explanation"]["identity"]["suspect_sentences"]
    # the first folder alone lacks the tutor's rivals of the second: still runs, fewer families
    res = runner.invoke(app, _args(folders[:1], fam_files[:1], suspect))
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["ranking"]) == 4


def test_one_folder_without_the_others_models_is_an_error(
    splits: tuple[list[Path], list[Path], Path],
) -> None:
    folders, fam_files, suspect = splits
    assert main(_args(folders[:1], fam_files, suspect)) == 4  # split1's models have no outputs


def test_a_model_in_two_folders_is_an_error(splits: tuple[list[Path], list[Path], Path]) -> None:
    folders, fam_files, _ = splits
    (folders[1] / "tutor0.jsonl").write_bytes((folders[0] / "tutor0.jsonl").read_bytes())
    with pytest.raises(InputError, match="two folders"):
        reference_files(folders, read_families_files(fam_files))


def test_conflicting_families_are_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"m": "x"}))
    b.write_text(json.dumps({"m": "y"}))
    with pytest.raises(InputError, match="two families"):
        read_families_files([a, b])


def test_identity_probe_set_is_multilingual() -> None:
    probes = load_probe_set("identity")
    assert len(probes) >= 50
    text = " ".join(probes.instructions)
    for marker in ("Who are you?", "你是谁", "Qui es-tu", "¿Quién eres?", "Wer bist du?", "cutoff"):
        assert marker in text
