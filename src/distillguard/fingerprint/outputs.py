"""Model outputs on a probe set, probe sets, and the families file.

A model's outputs are a JSONL file (optionally gzip-compressed), one object a line with
``prompt_id`` (an integer), ``instruction`` (the probe) and ``output`` (the model's answer, or
``null`` where it has none); other fields (``dataset``...) are ignored. This is the layout of
``shared/data/alpaca_eval_dev/outputs/``.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from distillguard.errors import InputError

__all__ = [
    "SHIPPED_PROBE_SETS",
    "FamilyMap",
    "ModelOutputs",
    "ProbeSet",
    "load_probe_set",
    "merge_families",
    "model_name_of",
    "read_families",
    "read_outputs",
]

logger = logging.getLogger(__name__)

#: Probe sets shipped with DistillGuard (name -> file in ``distillguard/fingerprint/data``).
SHIPPED_PROBE_SETS: Mapping[str, str] = {
    "alpaca_eval": "alpaca_eval.jsonl.gz",
    "identity": "identity_probes.jsonl",
}


def model_name_of(path: Path) -> str:
    """The model name a file stands for: its name without ``.jsonl.gz`` / ``.jsonl`` / ``.json``."""
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".json.gz", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _open_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: no such file", hint="check the path of the outputs file")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc


@dataclass(frozen=True)
class ProbeSet:
    """Probes (instructions) with stable integer ids."""

    name: str
    prompt_ids: tuple[int, ...]
    instructions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.prompt_ids)


@dataclass(frozen=True)
class ModelOutputs:
    """One model's answers to a probe set, sorted by prompt id; ``""`` where it gave none."""

    name: str
    prompt_ids: tuple[int, ...]
    instructions: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(self, prompt_ids: Sequence[int]) -> ModelOutputs:
        """The outputs for ``prompt_ids`` (each must be present), in that order."""
        index = {pid: i for i, pid in enumerate(self.prompt_ids)}
        rows = [index[pid] for pid in prompt_ids]
        return ModelOutputs(
            name=self.name,
            prompt_ids=tuple(prompt_ids),
            instructions=tuple(self.instructions[i] for i in rows),
            texts=tuple(self.texts[i] for i in rows),
            source=self.source,
        )


def _parse_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}:{lineno}: expected a JSON object")
    return obj


def read_outputs(path: Path, *, name: str | None = None) -> ModelOutputs:
    """Read a model's outputs file; raises :class:`InputError` naming the file, line and field."""
    path = Path(path)
    by_id: dict[int, tuple[str, str]] = {}
    for lineno, line in enumerate(_open_lines(path), start=1):
        if not line.strip():
            continue
        obj = _parse_line(path, lineno, line)
        pid = obj.get("prompt_id")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise InputError(f"{path}:{lineno}: field 'prompt_id' must be an integer")
        instruction = obj.get("instruction", "")
        if not isinstance(instruction, str):
            raise InputError(f"{path}:{lineno}: field 'instruction' must be a string")
        if "output" not in obj:
            raise InputError(f"{path}:{lineno}: field 'output' is missing")
        output = obj["output"]
        if output is not None and not isinstance(output, str):
            raise InputError(f"{path}:{lineno}: field 'output' must be a string or null")
        if pid in by_id:
            raise InputError(f"{path}:{lineno}: prompt_id {pid} appears twice")
        by_id[pid] = (instruction, output or "")
    if not by_id:
        raise InputError(f"{path}: no outputs in the file")
    ids = sorted(by_id)
    return ModelOutputs(
        name=name or model_name_of(path),
        prompt_ids=tuple(ids),
        instructions=tuple(by_id[i][0] for i in ids),
        texts=tuple(by_id[i][1] for i in ids),
        source=str(path),
    )


def load_probe_set(name_or_path: str | Path) -> ProbeSet:
    """A shipped probe set by name (``alpaca_eval``) or a custom JSONL(.gz) file of probes.

    A custom file has one object a line with ``prompt_id`` (integer) and ``instruction``.
    """
    key = str(name_or_path)
    if key in SHIPPED_PROBE_SETS:
        ref = resources.files("distillguard.fingerprint").joinpath("data", SHIPPED_PROBE_SETS[key])
        with resources.as_file(ref) as file:
            path = Path(file)
            lines = _open_lines(path)
        set_name = key
    else:
        path = Path(name_or_path)
        lines = _open_lines(path)
        set_name = model_name_of(path)
    probes: dict[int, str] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        obj = _parse_line(path, lineno, line)
        pid, instruction = obj.get("prompt_id"), obj.get("instruction")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise InputError(f"{path}:{lineno}: field 'prompt_id' must be an integer")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(f"{path}:{lineno}: field 'instruction' must be a non-empty string")
        if pid in probes:
            raise InputError(f"{path}:{lineno}: prompt_id {pid} appears twice")
        probes[pid] = instruction
    if not probes:
        raise InputError(f"{path}: the probe set is empty")
    ids = sorted(probes)
    return ProbeSet(
        name=set_name, prompt_ids=tuple(ids), instructions=tuple(probes[i] for i in ids)
    )


@dataclass(frozen=True)
class FamilyMap:
    """Which family (and, where known, which provider) each reference model belongs to."""

    families: Mapping[str, str]
    providers: Mapping[str, str]
    released: Mapping[str, str] = field(default_factory=dict)

    def related(self, a: str, b: str) -> bool:
        """Whether two references may share lineage: same family or same known provider."""
        if self.families[a] == self.families[b]:
            return True
        pa, pb = self.providers.get(a), self.providers.get(b)
        return pa is not None and pa == pb


def read_families(path: Path) -> FamilyMap:
    """Read a families file: ``{stem: family}`` or lineage.json's ``{"reference_models": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such families file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("reference_models"), dict):
        data = data["reference_models"]
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty object mapping model names to families")
    families: dict[str, str] = {}
    providers: dict[str, str] = {}
    released: dict[str, str] = {}
    for stem, value in data.items():
        if isinstance(value, str):
            family = value
        elif isinstance(value, dict) and isinstance(value.get("family"), str):
            family = value["family"]
            provider = value.get("provider")
            if isinstance(provider, str) and provider:
                providers[stem] = provider
            when = value.get("released")
            if isinstance(when, str) and when:
                released[stem] = when
        else:
            raise InputError(
                f"{path}: entry {stem!r} must be a family name or an object with a 'family'"
            )
        if not family.strip():
            raise InputError(f"{path}: entry {stem!r} has an empty family")
        families[stem] = family
    return FamilyMap(families=families, providers=providers, released=released)


def merge_families(maps: Sequence[FamilyMap]) -> FamilyMap:
    """One map from several (e.g. the two reference splits); a model named twice must agree."""
    if not maps:
        raise InputError("no families file given")
    families: dict[str, str] = {}
    providers: dict[str, str] = {}
    released: dict[str, str] = {}
    for fm in maps:
        for name, family in fm.families.items():
            if families.get(name, family) != family:
                raise InputError(
                    f"model {name!r} has two families: {families[name]!r} and {family!r}",
                    hint="the families files disagree; fix one of them",
                )
            families[name] = family
        for name, provider in fm.providers.items():
            if providers.get(name, provider) != provider:
                raise InputError(
                    f"model {name!r} has two providers: {providers[name]!r}, {provider!r}"
                )
            providers[name] = provider
        released.update(fm.released)
    return FamilyMap(families=families, providers=providers, released=released)
