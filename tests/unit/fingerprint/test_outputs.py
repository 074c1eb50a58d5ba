"""Reading outputs, probe sets and families files; every bad input names the problem."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError
from distillguard.fingerprint import load_probe_set, read_families, read_outputs
from distillguard.fingerprint.features import STYLE_FEATURES, style_vector


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_outputs_gz_and_null(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"prompt_id": 1, "instruction": "b", "output": None}) + "\n")
        fh.write(json.dumps({"prompt_id": 0, "instruction": "a", "output": "x"}) + "\n")
    out = read_outputs(path)
    assert out.name == "m"
    assert out.prompt_ids == (0, 1)
    assert out.texts == ("x", "")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"prompt_id": "0", "output": "x"}), "prompt_id"),
        (json.dumps({"prompt_id": True, "output": "x"}), "prompt_id"),
        (json.dumps({"prompt_id": 0}), "'output' is missing"),
        (json.dumps({"prompt_id": 0, "output": 3}), "'output' must be"),
        (json.dumps({"prompt_id": 0, "instruction": 1, "output": "x"}), "instruction"),
    ],
)
def test_read_outputs_bad_lines(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt_id": 9, "output": "ok"}) + "\n" + line + "\n")
    with pytest.raises(InputError) as err:
        read_outputs(path)
    assert needle in err.value.message
    assert "bad.jsonl:2" in err.value.message


def test_read_outputs_missing_empty_duplicate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_outputs(tmp_path / "nope.jsonl")
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no outputs"):
        read_outputs(empty)
    dup = _write(tmp_path / "d.jsonl", [{"prompt_id": 0, "output": "a"}] * 2)
    with pytest.raises(InputError, match="appears twice"):
        read_outputs(dup)
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError, match="cannot be read"):
        read_outputs(broken)


def test_shipped_probe_set() -> None:
    probes = load_probe_set("alpaca_eval")
    assert len(probes) == 805
    assert probes.prompt_ids == tuple(range(805))
    assert all(probes.instructions)


def test_custom_probe_set_bad(tmp_path: Path) -> None:
    good = _write(tmp_path / "p.jsonl", [{"prompt_id": 3, "instruction": "Say hi"}])
    assert load_probe_set(good).instructions == ("Say hi",)
    bad = _write(tmp_path / "q.jsonl", [{"prompt_id": 3, "instruction": ""}])
    with pytest.raises(InputError, match="instruction"):
        load_probe_set(bad)


def test_families_both_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "f.json"
    plain.write_text(json.dumps({"a": "fa", "b": "fb"}))
    fm = read_families(plain)
    assert fm.families == {"a": "fa", "b": "fb"}
    assert not fm.related("a", "b")
    lineage = tmp_path / "l.json"
    lineage.write_text(
        json.dumps(
            {
                "reference_models": {
                    "a": {"family": "fa", "provider": "p"},
                    "b": {"family": "fb", "provider": "p"},
                },
                "suspects": {},
            }
        )
    )
    fm2 = read_families(lineage)
    assert fm2.related("a", "b")  # same provider


@pytest.mark.parametrize("content", ["{", "[]", "{}", '{"a": 3}', '{"a": ""}'])
def test_families_bad(tmp_path: Path, content: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(InputError):
        read_families(path)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=400))
def test_style_vector_total(text: str) -> None:
    vec = style_vector(text)
    assert vec.shape == (len(STYLE_FEATURES),)
    assert bool((vec >= 0).all())
