"""Reference libraries: build, list, load (hash-checked), and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from distillguard.cli.main import app, main
from distillguard.errors import InputError, VerificationError
from distillguard.fingerprint import compute_fingerprint, load_probe_set, read_outputs
from distillguard.fingerprint.library import (
    LIBRARY_FORMAT_VERSION,
    build_library,
    load_library,
    probe_set_digest,
)

STYLES = {
    "alpha": "Sure! Here is a short answer about {t}.\n\n- point one\n- point two",
    "beta": "## {t}\n\n1. First, consider {t}.\n2. Then conclude.",
    "gamma": "I think {t} is interesting. Let me know if you need more help!",
    "delta": "**{t}**: a brief note. In conclusion, {t} matters.",
    "epsilon": "As an AI language model, I can say that {t} is broad.",
}


def _probes(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "probes.jsonl"
    rows = [{"prompt_id": i, "instruction": f"Tell me about topic {i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _refs(tmp_path: Path, n: int = 12) -> tuple[Path, Path]:
    folder = tmp_path / "outputs"
    folder.mkdir()
    for name, tmpl in STYLES.items():
        rows = [
            {
                "prompt_id": i,
                "instruction": f"Tell me about topic {i}.",
                "output": tmpl.format(t=f"topic {i}") if i != 3 or name != "gamma" else None,
            }
            for i in range(n)
        ]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "unlisted.jsonl").write_text(
        json.dumps({"prompt_id": 0, "instruction": "x", "output": "y"}) + "\n"
    )
    families = tmp_path / "families.json"
    families.write_text(
        json.dumps(
            {
                "reference_models": {
                    "alpha": {"family": "A", "provider": "pa"},
                    "beta": {"family": "B"},
                    "delta": {"family": "C"},
                    "epsilon": {"family": "D"},
                    "gamma": {"family": "A", "provider": "pa"},
                }
            }
        )
    )
    return folder, families


def test_build_and_load_roundtrip(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path)
    probes = _probes(tmp_path)
    lib = build_library(
        outputs_dir=folder, families=families, out=tmp_path / "lib", probe_set=probes
    )
    assert [m.name for m in lib.models] == ["alpha", "beta", "delta", "epsilon", "gamma"]
    assert lib.probe_set_sha256 == probe_set_digest(load_probe_set(probes))
    assert lib.n_prompts == 12
    gamma = lib.model("gamma")
    assert (gamma.n_outputs, gamma.n_missing) == (11, 1)
    assert gamma.provider == "pa" and lib.model("beta").provider is None
    # Stored outputs are in the alpaca_eval layout and read back by the existing reader.
    out = read_outputs(lib.outputs_dir / "beta.jsonl.gz")
    assert out.texts == read_outputs(folder / "beta.jsonl").texts
    assert lib.outputs("alpha").texts[0].startswith("Sure!")
    # The stored fingerprint equals the one recomputed from the stored outputs.
    stored = lib.fingerprint("alpha")
    fresh = compute_fingerprint(lib.outputs("alpha"), options=lib.options)
    assert stored.prompt_ids == fresh.prompt_ids
    assert (stored.opening_counts != fresh.opening_counts).nnz == 0
    assert (stored.char_counts != fresh.char_counts).nnz == 0
    assert np.array_equal(stored.style, fresh.style)
    # Content addressing: the object's name is its SHA-256.
    for m in lib.models:
        assert m.fingerprint_path == f"objects/{m.fingerprint_sha256}.npz"
    fam = lib.family_map()
    assert fam.related("alpha", "gamma") and not fam.related("alpha", "beta")
    again = load_library(tmp_path / "lib")
    assert again.library_id == lib.library_id
    assert again.to_dict()["format_version"] == LIBRARY_FORMAT_VERSION


def test_outputs_files_are_reproducible(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path)
    probes = _probes(tmp_path)
    a = build_library(outputs_dir=folder, families=families, out=tmp_path / "a", probe_set=probes)
    b = build_library(outputs_dir=folder, families=families, out=tmp_path / "b", probe_set=probes)
    assert [m.outputs_sha256 for m in a.models] == [m.outputs_sha256 for m in b.models]


def test_tampered_library_is_refused(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path)
    lib = build_library(
        outputs_dir=folder, families=families, out=tmp_path / "lib", probe_set=_probes(tmp_path)
    )
    target = lib.path / lib.model("beta").outputs_path
    target.write_bytes(target.read_bytes() + b"\x00")
    with pytest.raises(VerificationError, match=r"beta\.jsonl\.gz"):
        load_library(lib.path)
    (lib.path / lib.model("alpha").fingerprint_path).unlink()
    target.unlink()
    with pytest.raises(VerificationError, match="missing"):
        load_library(lib.path)


def test_bad_manifests(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path)
    lib = build_library(
        outputs_dir=folder, families=families, out=tmp_path / "lib", probe_set=_probes(tmp_path)
    )
    manifest = lib.path / "manifest.json"
    good = json.loads(manifest.read_text())
    with pytest.raises(InputError, match="no manifest"):
        load_library(tmp_path)
    for bad, needle in [
        ("{nope", "not valid JSON"),
        (json.dumps({"format": "other"}), "not a DistillGuard"),
        (json.dumps({**good, "format_version": 99}), "format version 99"),
        (json.dumps({**good, "models": "x"}), "'models'"),
        (json.dumps({**good, "feature_config": {"opening_words": 1}}), "malformed"),
        (json.dumps({**good, "models": [{"name": "x"}]}), "malformed"),
    ]:
        manifest.write_text(bad)
        with pytest.raises(InputError, match=needle):
            load_library(lib.path)
    evil = dict(good)
    evil["models"] = [{**good["models"][0], "outputs_path": "../../etc/passwd"}]
    manifest.write_text(json.dumps(evil))
    with pytest.raises(InputError, match="leaves the library"):
        load_library(lib.path)


def test_build_bad_inputs(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path)
    probes = _probes(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        build_library(outputs_dir=tmp_path / "nope", families=families, out=tmp_path / "l")
    fam2 = tmp_path / "f2.json"
    fam2.write_text(json.dumps({"alpha": "A", "zeta": "Z"}))
    with pytest.raises(InputError, match="zeta"):
        build_library(outputs_dir=folder, families=fam2, out=tmp_path / "l", probe_set=probes)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt_id": 0, "instruction": "Something else"}) + "\n")
    with pytest.raises(InputError, match=r"another probe set"):
        build_library(outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=other)
    disjoint = tmp_path / "disjoint.jsonl"
    disjoint.write_text(json.dumps({"prompt_id": 500, "instruction": "Unseen"}) + "\n")
    with pytest.raises(InputError, match="answers none"):
        build_library(outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=disjoint)
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"prompt_id": "zero", "instruction": "x"}\n')
    with pytest.raises(InputError, match="prompt_id"):
        build_library(
            outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=malformed
        )
    assert not (tmp_path / "l").exists()
    build_library(outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=probes)
    with pytest.raises(InputError, match="not empty"):
        build_library(outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=probes)
    build_library(
        outputs_dir=folder, families=families, out=tmp_path / "l", probe_set=probes, overwrite=True
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".l.")]


def test_cli_build_list_and_attribute_on_library(tmp_path: Path) -> None:
    folder, families = _refs(tmp_path, n=40)
    probes = _probes(tmp_path, n=40)
    runner = CliRunner()
    lib = tmp_path / "lib"
    res = runner.invoke(
        app,
        [
            "--json",
            "fingerprint",
            "build",
            "--outputs",
            str(folder),
            "--families",
            str(families),
            "--out",
            str(lib),
            "--probe-set",
            str(probes),
        ],
    )
    assert res.exit_code == 0, res.output
    built = json.loads(res.stdout)
    assert [m["name"] for m in built["models"]] == ["alpha", "beta", "delta", "epsilon", "gamma"]
    res = runner.invoke(app, ["--json", "fingerprint", "list", str(lib)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["library_id"] == built["library_id"]
    res = runner.invoke(app, ["fingerprint", "list", str(lib)])
    assert res.exit_code == 0 and "gamma" in res.stdout
    # The library's outputs folder and families file feed the attribution command as is.
    res = runner.invoke(
        app,
        [
            "--json",
            "fingerprint",
            "attribute",
            "--references",
            str(lib / "outputs"),
            "--families",
            str(lib / "families.json"),
            "--suspect",
            str(folder / "beta.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ranking" in json.loads(res.stdout)
    assert main(["fingerprint", "list", str(tmp_path)]) == 4
