"""A stored, versioned reference library: reference models' outputs and fingerprints on a probe set.

Layout of a library folder (see ``docs/fingerprint.md``, "Reference library")::

    LIBRARY_DIR/
      manifest.json          format version, probe set (name, id, SHA-256), feature options,
                             DistillGuard version, creation time, one entry per model
      families.json          the lineage.json layout: {"reference_models": {stem: {...}}}
      outputs/<stem>.jsonl.gz  each model's outputs in the alpaca_eval layout, so that
                             ``fingerprint attribute --references LIBRARY_DIR/outputs`` works
      objects/<sha256>.npz   content-addressed fingerprint features (name = SHA-256 of the bytes)

Every file the manifest names carries its SHA-256; :func:`load_library` checks them all, so a
library that was altered after it was built is refused with the file named.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillguard.errors import InputError, VerificationError
from distillguard.fingerprint.cache import decode_fingerprint, encode_fingerprint
from distillguard.fingerprint.features import Fingerprint, FingerprintOptions, compute_fingerprint
from distillguard.fingerprint.outputs import (
    SHIPPED_PROBE_SETS,
    FamilyMap,
    ModelOutputs,
    ProbeSet,
    load_probe_set,
    model_name_of,
    read_families,
    read_outputs,
)

__all__ = [
    "LIBRARY_FORMAT",
    "LIBRARY_FORMAT_VERSION",
    "LibraryModel",
    "ReferenceLibrary",
    "build_library",
    "load_library",
    "probe_datasets",
    "probe_set_digest",
    "write_outputs_file",
]

logger = logging.getLogger(__name__)

#: The ``format`` field of a library manifest.
LIBRARY_FORMAT = "distillguard-fingerprint-library"
#: The manifest format version this code writes and reads.
LIBRARY_FORMAT_VERSION = 1


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def probe_set_digest(probes: ProbeSet) -> str:
    """SHA-256 of the probe set's canonical form (sorted ``[prompt_id, instruction]`` pairs)."""
    canon = json.dumps(
        [[pid, text] for pid, text in zip(probes.prompt_ids, probes.instructions, strict=True)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _distillguard_version() -> str:
    try:
        from importlib.metadata import version

        return version("distillguard")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def write_outputs_file(
    path: Path, outputs: ModelOutputs, *, datasets: Mapping[int, str] | None = None
) -> None:
    """Write ``outputs`` as a gzip JSONL file in the alpaca_eval layout, byte-reproducibly.

    Rows are ``prompt_id``, ``dataset``, ``instruction``, ``output`` in prompt-id order; the
    gzip header carries no time or name, so the same outputs always give the same bytes.
    """
    lines = []
    for pid, instruction, text in zip(
        outputs.prompt_ids, outputs.instructions, outputs.texts, strict=True
    ):
        row = {
            "prompt_id": pid,
            "dataset": (datasets or {}).get(pid, ""),
            "instruction": instruction,
            "output": text,
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def _save_fingerprint(fp: Fingerprint) -> bytes:
    return encode_fingerprint(fp, sep=".", compressed=True)


def _load_fingerprint(data: bytes, *, name: str, options: FingerprintOptions) -> Fingerprint:
    return decode_fingerprint(data, name=name, options=options, sep=".")


@dataclass(frozen=True)
class LibraryModel:
    """One reference model of a library, as its manifest entry describes it.

    Attributes:
        name: the model's stem (file name without ``.jsonl.gz``).
        family: its lineage family.
        provider: who made it, where known.
        outputs_path: its outputs file, relative to the library folder.
        outputs_sha256: SHA-256 of that file.
        fingerprint_path: its fingerprint features, relative to the library folder.
        fingerprint_sha256: SHA-256 of that file (also its name).
        n_outputs: probes with a non-empty answer.
        n_missing: probes of the probe set with no answer.
    """

    name: str
    family: str
    provider: str | None
    outputs_path: str
    outputs_sha256: str
    fingerprint_path: str
    fingerprint_sha256: str
    n_outputs: int
    n_missing: int

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return asdict(self)


@dataclass(frozen=True)
class ReferenceLibrary:
    """A loaded (and hash-checked) reference library; see :func:`load_library`.

    Attributes:
        path: the library folder.
        probe_set_name, probe_set_sha256, n_prompts: the probe set the references answered.
        options: the feature options the fingerprints were computed with.
        created_at: when the library was built.
        distillguard_version: the version that built it.
        models: the references, in name order.
        library_id: SHA-256 of the manifest file (changes whenever anything in it changes).
    """

    path: Path
    probe_set_name: str
    probe_set_sha256: str
    n_prompts: int
    options: FingerprintOptions
    created_at: datetime
    distillguard_version: str
    models: tuple[LibraryModel, ...]
    library_id: str

    @property
    def outputs_dir(self) -> Path:
        """The folder of outputs files (give it to ``fingerprint attribute --references``)."""
        return self.path / "outputs"

    @property
    def families_path(self) -> Path:
        """The families file (give it to ``fingerprint attribute --families``)."""
        return self.path / "families.json"

    def family_map(self) -> FamilyMap:
        """Families and providers of the references."""
        return FamilyMap(
            families={m.name: m.family for m in self.models},
            providers={m.name: m.provider for m in self.models if m.provider},
        )

    def model(self, name: str) -> LibraryModel:
        """The entry of reference ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise InputError(f"{self.path}: no reference model named {name!r}")

    def outputs(self, name: str) -> ModelOutputs:
        """Reference ``name``'s outputs."""
        return read_outputs(self.path / self.model(name).outputs_path, name=name)

    def all_outputs(self) -> list[ModelOutputs]:
        """Every reference's outputs, in name order."""
        return [self.outputs(m.name) for m in self.models]

    def fingerprint(self, name: str) -> Fingerprint:
        """Reference ``name``'s stored fingerprint (not recomputed)."""
        m = self.model(name)
        data = (self.path / m.fingerprint_path).read_bytes()
        return _load_fingerprint(data, name=name, options=self.options)

    def fingerprints(self) -> list[Fingerprint]:
        """Every reference's stored fingerprint, in name order."""
        return [self.fingerprint(m.name) for m in self.models]

    def to_dict(self) -> dict[str, Any]:
        """JSON summary (what ``fingerprint list`` prints)."""
        return {
            "path": str(self.path),
            "library_id": self.library_id,
            "format_version": LIBRARY_FORMAT_VERSION,
            "probe_set": {
                "name": self.probe_set_name,
                "sha256": self.probe_set_sha256,
                "prompts": self.n_prompts,
            },
            "feature_config": asdict(self.options),
            "created_at": self.created_at.isoformat(),
            "distillguard_version": self.distillguard_version,
            "models": [m.to_dict() for m in self.models],
        }


def probe_datasets(name_or_path: str | Path) -> dict[int, str]:
    """``prompt_id -> dataset`` where the probe file names one (shipped sets do)."""
    from importlib import resources

    key = str(name_or_path)
    try:
        if key in SHIPPED_PROBE_SETS:
            ref = resources.files("distillguard.fingerprint").joinpath(
                "data", SHIPPED_PROBE_SETS[key]
            )
            raw = ref.read_bytes()
        else:
            raw = Path(name_or_path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError):
        return {}
    found: dict[int, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("dataset"), str):
            pid = obj.get("prompt_id")
            if isinstance(pid, int) and not isinstance(pid, bool):
                found[pid] = obj["dataset"]
    return found


def _align(outputs: ModelOutputs, probes: ProbeSet, *, path: Path) -> tuple[ModelOutputs, int]:
    """The outputs on exactly the probe set's prompts ("" where missing) and the missing count."""
    by_id = dict(
        zip(outputs.prompt_ids, zip(outputs.instructions, outputs.texts, strict=True), strict=True)
    )
    texts: list[str] = []
    missing = 0
    for pid, instruction in zip(probes.prompt_ids, probes.instructions, strict=True):
        row = by_id.get(pid)
        if row is None or not row[1].strip():
            missing += 1
            texts.append("")
            continue
        if row[0].strip() and row[0].strip() != instruction.strip():
            raise InputError(
                f"{path}: prompt_id {pid} has instruction {row[0][:60]!r}, the probe set "
                f"{probes.name!r} has {instruction[:60]!r}",
                hint="the outputs were made on another probe set; pass it with --probe-set",
            )
        texts.append(row[1])
    if missing == len(probes):
        raise InputError(
            f"{path}: answers none of the {len(probes)} prompts of probe set {probes.name!r}",
            hint="pass the probe set these outputs were made on with --probe-set",
        )
    aligned = ModelOutputs(
        name=outputs.name,
        prompt_ids=probes.prompt_ids,
        instructions=probes.instructions,
        texts=tuple(texts),
        source=outputs.source,
    )
    return aligned, missing


def build_library(
    *,
    outputs_dir: Path,
    families: Path,
    out: Path,
    probe_set: str | Path = "alpaca_eval",
    options: FingerprintOptions | None = None,
    overwrite: bool = False,
    on_model: Callable[[str], None] | None = None,
) -> ReferenceLibrary:
    """Build a reference library in ``out`` from the outputs files in ``outputs_dir``.

    Every model that ``families`` names must have an outputs file (``<stem>.jsonl[.gz]``) in
    ``outputs_dir``; files of other models are ignored. Outputs are restricted to the probe set's
    prompts (a prompt with no answer counts as missing; an instruction that differs from the
    probe set's is an error). The library is written to a temporary folder next to ``out`` and
    moved into place, so a failed build leaves nothing half-written.

    Args:
        outputs_dir: folder of reference outputs in the alpaca_eval layout.
        families: ``{stem: family}`` or the lineage.json layout.
        out: the library folder to create.
        probe_set: a shipped probe set name or a custom JSONL file of probes.
        options: feature options (default :class:`FingerprintOptions`).
        overwrite: replace an existing library in ``out``.
        on_model: called with each model's name once it is done (progress).

    Raises:
        InputError: missing folder or files, malformed outputs/probes/families, ``out`` exists.
    """
    outputs_dir, families, out = Path(outputs_dir), Path(families), Path(out)
    options = options or FingerprintOptions()
    if not outputs_dir.is_dir():
        raise InputError(f"{outputs_dir}: not a folder of reference outputs")
    occupied = out.is_file() or (out.is_dir() and any(out.iterdir()))
    if occupied and not overwrite:
        raise InputError(
            f"{out}: already exists and is not empty", hint="choose another folder or --force"
        )
    fam = read_families(families)
    probes = load_probe_set(probe_set)
    datasets = probe_datasets(probe_set)
    files: dict[str, Path] = {}
    for p in sorted(outputs_dir.iterdir()):
        if p.name.endswith((".jsonl", ".jsonl.gz")) and model_name_of(p) in fam.families:
            files.setdefault(model_name_of(p), p)
    missing = sorted(set(fam.families) - set(files))
    if missing:
        raise InputError(
            f"{families}: names models with no outputs in {outputs_dir}: {', '.join(missing)}",
            hint="remove them from the families file or add their outputs",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "outputs").mkdir()
        (tmp / "objects").mkdir()
        entries: list[LibraryModel] = []
        for name in sorted(files):
            aligned, n_missing = _align(
                read_outputs(files[name], name=name), probes, path=files[name]
            )
            if n_missing:
                logger.warning("%s: %d of %d probes have no answer", name, n_missing, len(probes))
            out_rel = f"outputs/{name}.jsonl.gz"
            write_outputs_file(tmp / out_rel, aligned, datasets=datasets)
            blob = _save_fingerprint(compute_fingerprint(aligned, options=options))
            digest = hashlib.sha256(blob).hexdigest()
            fp_rel = f"objects/{digest}.npz"
            (tmp / fp_rel).write_bytes(blob)
            entries.append(
                LibraryModel(
                    name=name,
                    family=fam.families[name],
                    provider=fam.providers.get(name),
                    outputs_path=out_rel,
                    outputs_sha256=_sha256_file(tmp / out_rel),
                    fingerprint_path=fp_rel,
                    fingerprint_sha256=digest,
                    n_outputs=len(probes) - n_missing,
                    n_missing=n_missing,
                )
            )
            if on_model is not None:
                on_model(name)
        reference_models: dict[str, dict[str, str]] = {}
        for e in entries:
            reference_models[e.name] = {"family": e.family}
            if e.provider:
                reference_models[e.name]["provider"] = e.provider
        (tmp / "families.json").write_text(
            json.dumps({"reference_models": reference_models}, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        manifest = {
            "format": LIBRARY_FORMAT,
            "format_version": LIBRARY_FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "distillguard_version": _distillguard_version(),
            "probe_set": {
                "name": probes.name,
                "sha256": probe_set_digest(probes),
                "prompts": len(probes),
            },
            "feature_config": asdict(options),
            "families_sha256": _sha256_file(tmp / "families.json"),
            "models": [e.to_dict() for e in entries],
        }
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built reference library %s (%d models)", out, len(entries))
    return load_library(out)


def _field(manifest: Mapping[str, Any], key: str, kind: type, *, where: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    return value


def load_library(path: Path, *, verify: bool = True) -> ReferenceLibrary:
    """Load the library in ``path``, checking the manifest and (``verify``) every file's SHA-256.

    Raises:
        InputError: no library there, a malformed manifest, or a format version this code does
            not read.
        VerificationError: a file named by the manifest is missing or does not match its hash.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(
            f"{path}: not a reference library (no manifest.json)",
            hint="build one with `distillguard fingerprint build`",
        )
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != LIBRARY_FORMAT:
        raise InputError(f"{manifest_path}: not a DistillGuard fingerprint library manifest")
    version = _field(manifest, "format_version", int, where=manifest_path)
    if version != LIBRARY_FORMAT_VERSION:
        raise InputError(
            f"{manifest_path}: library format version {version}, this DistillGuard reads "
            f"{LIBRARY_FORMAT_VERSION}",
            hint="rebuild the library with this version",
        )
    probe = _field(manifest, "probe_set", dict, where=manifest_path)
    config = _field(manifest, "feature_config", dict, where=manifest_path)
    models_raw = _field(manifest, "models", list, where=manifest_path)
    try:
        options = FingerprintOptions(**config)
        created_at = datetime.fromisoformat(str(manifest["created_at"]))
        models = tuple(LibraryModel(**m) for m in models_raw)
        probe_name, probe_sha, n_prompts = (
            str(probe["name"]),
            str(probe["sha256"]),
            int(probe["prompts"]),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"{manifest_path}: malformed manifest ({exc})") from exc
    if verify:
        checks = [("families.json", str(manifest.get("families_sha256", "")))]
        for m in models:
            checks.append((m.outputs_path, m.outputs_sha256))
            checks.append((m.fingerprint_path, m.fingerprint_sha256))
        for rel, expected in checks:
            file = path / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise InputError(f"{manifest_path}: path {rel!r} leaves the library folder")
            if not file.is_file():
                raise VerificationError(f"{path}: {rel} is missing (named by the manifest)")
            if _sha256_file(file) != expected:
                raise VerificationError(
                    f"{path}: {rel} does not match the SHA-256 in the manifest (altered)"
                )
    return ReferenceLibrary(
        path=path,
        probe_set_name=probe_name,
        probe_set_sha256=probe_sha,
        n_prompts=n_prompts,
        options=options,
        created_at=created_at,
        distillguard_version=str(manifest.get("distillguard_version", "unknown")),
        models=tuple(sorted(models, key=lambda m: m.name)),
        library_id=hashlib.sha256(raw).hexdigest(),
    )
