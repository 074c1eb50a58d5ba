"""Reference libraries spread over several folders (``alpaca_eval_dev`` and ``alpaca_eval_more``).

:func:`reference_files` pairs every model named in the (merged) families map with its outputs
file, searching each folder; :func:`load_references` reads them, with their fingerprints (cached
when a :class:`~distillguard.fingerprint.cache.FingerprintCache` is given) and identity profiles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from distillguard.errors import InputError
from distillguard.fingerprint.cache import FingerprintCache
from distillguard.fingerprint.features import Fingerprint, FingerprintOptions, compute_fingerprint
from distillguard.fingerprint.identity import IdentityProfile, identity_profile
from distillguard.fingerprint.outputs import (
    FamilyMap,
    ModelOutputs,
    merge_families,
    model_name_of,
    read_families,
    read_outputs,
)

__all__ = ["ReferenceSet", "load_references", "read_families_files", "reference_files"]

logger = logging.getLogger(__name__)


def read_families_files(paths: Sequence[Path]) -> FamilyMap:
    """Read and merge several families files (a model named in two must agree)."""
    return merge_families([read_families(Path(p)) for p in paths])


def reference_files(
    folders: Sequence[Path], families: FamilyMap, *, exclude: Sequence[Path] = ()
) -> dict[str, Path]:
    """``{model: outputs file}`` for every model of ``families``, found in one of ``folders``.

    A file in ``exclude`` (the suspect's own) is left out; its model then needs no other file.

    Raises:
        InputError: a folder is missing, a model has no outputs file or has one in two folders.
    """
    skip = {Path(p).resolve() for p in exclude}
    found: dict[str, Path] = {}
    excluded: set[str] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder of reference outputs")
        for path in sorted(folder.iterdir()):
            if not path.name.endswith((".jsonl", ".jsonl.gz")):
                continue
            name = model_name_of(path)
            if path.resolve() in skip:
                excluded.add(name)
                continue
            if name not in families.families:
                continue
            if name in found:
                raise InputError(
                    f"reference {name!r} has outputs in two folders: {found[name]} and {path}",
                    hint="keep one copy",
                )
            found[name] = path
    missing = sorted(set(families.families) - set(found) - excluded)
    if missing:
        raise InputError(
            f"the families files name models with no outputs in "
            f"{', '.join(str(f) for f in folders)}: {', '.join(missing)}",
            hint="remove them from the families file or add their outputs",
        )
    return found


@dataclass(frozen=True)
class ReferenceSet:
    """The references' outputs, fingerprints and identity profiles, in the same order."""

    outputs: tuple[ModelOutputs, ...]
    fingerprints: tuple[Fingerprint, ...]
    identity: dict[str, IdentityProfile]


def load_references(
    files: dict[str, Path],
    *,
    options: FingerprintOptions,
    cache: FingerprintCache | None = None,
    on_model: Callable[[str], None] | None = None,
) -> ReferenceSet:
    """Read every reference, compute (or load from ``cache``) its fingerprint and identity."""
    outputs: list[ModelOutputs] = []
    fps: list[Fingerprint] = []
    identity: dict[str, IdentityProfile] = {}
    for name, path in sorted(files.items()):
        if cache is None:
            out = read_outputs(path, name=name)
            fp = compute_fingerprint(out, options=options)
        else:
            out, fp = cache.fingerprint_file(path, options=options, name=name)
        outputs.append(out)
        fps.append(fp)
        identity[name] = identity_profile(out)
        if on_model is not None:
            on_model(name)
    logger.info("loaded %d reference models", len(fps))
    return ReferenceSet(outputs=tuple(outputs), fingerprints=tuple(fps), identity=identity)
