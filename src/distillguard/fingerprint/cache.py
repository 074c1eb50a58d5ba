"""On-disk cache of fingerprints, keyed by the outputs file's content and the feature options.

Computing the features of 22 reference models takes most of an attribution's time; the cache
makes every later suspect cost one fingerprint. An entry's key is the SHA-256 of the outputs file's
bytes, the model name, the :class:`~distillguard.fingerprint.features.FingerprintOptions` and a
feature-code version, so an edited file, other options or new feature code never reuse a stale
entry. Entries are ``.npz`` files (no pickle); an unreadable entry is logged, ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from distillguard.errors import InputError
from distillguard.fingerprint.features import (
    STYLE_FEATURES,
    Fingerprint,
    FingerprintOptions,
    compute_fingerprint,
)
from distillguard.fingerprint.outputs import ModelOutputs, read_outputs

__all__ = [
    "FEATURE_VERSION",
    "FingerprintCache",
    "decode_fingerprint",
    "default_cache_dir",
    "encode_fingerprint",
]

logger = logging.getLogger(__name__)

#: Bumped whenever feature extraction changes, so that old cache entries are not reused.
FEATURE_VERSION = "fp1"
_SPARSE = ("opening_counts", "char_counts", "phrase_df")


def default_cache_dir() -> Path:
    """``fingerprints`` in the per-user cache folder: ``$XDG_CACHE_HOME/distillguard/fingerprints``
    (``~/.cache/...`` when unset) on Linux; see :func:`distillguard.config.default_cache_dir`."""
    from distillguard.config import default_cache_dir as user_cache_dir

    return user_cache_dir() / "fingerprints"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    return h.hexdigest()


def encode_fingerprint(fp: Fingerprint, *, sep: str = "_", compressed: bool = False) -> bytes:
    """A fingerprint as ``.npz`` bytes (no pickle): sparse matrices as ``<name><sep>data``,
    ``indices``, ``indptr`` and ``shape`` arrays. The cache uses ``"_"``, uncompressed; the
    reference library ``"."``, compressed."""
    arrays: dict[str, Any] = {"prompt_ids": np.asarray(fp.prompt_ids, dtype=np.int64)}
    for key in _SPARSE:
        m = sp.csr_matrix(getattr(fp, key))
        arrays[f"{key}{sep}data"] = m.data
        arrays[f"{key}{sep}indices"] = m.indices
        arrays[f"{key}{sep}indptr"] = m.indptr
        arrays[f"{key}{sep}shape"] = np.asarray(m.shape, dtype=np.int64)
    arrays["style"] = fp.style
    if fp.embeddings is not None:
        arrays["embeddings"] = fp.embeddings
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def decode_fingerprint(
    data: bytes, *, name: str, options: FingerprintOptions, sep: str = "_"
) -> Fingerprint:
    """The inverse of :func:`encode_fingerprint` (same ``sep``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:

        def csr(key: str) -> sp.csr_matrix:
            shape = tuple(int(x) for x in z[f"{key}{sep}shape"])
            return sp.csr_matrix(
                (z[f"{key}{sep}data"], z[f"{key}{sep}indices"], z[f"{key}{sep}indptr"]),
                shape=shape,
            )

        return Fingerprint(
            name=name,
            prompt_ids=tuple(int(x) for x in z["prompt_ids"]),
            opening_counts=csr("opening_counts"),
            char_counts=csr("char_counts"),
            phrase_df=csr("phrase_df"),
            style=np.asarray(z["style"], dtype=np.float32),
            embeddings=(
                np.asarray(z["embeddings"], dtype=np.float32) if "embeddings" in z.files else None
            ),
            options=options,
        )


def _decode(data: bytes, *, name: str, options: FingerprintOptions) -> Fingerprint:
    fp = decode_fingerprint(data, name=name, options=options)
    style, emb, prompt_ids = fp.style, fp.embeddings, fp.prompt_ids
    n = len(prompt_ids)
    if (
        style.shape != (n, len(STYLE_FEATURES))
        or fp.opening_counts.shape[0] != n
        or fp.char_counts.shape[0] != n
        or (emb is not None and emb.shape[0] != n)
        or (options.embeddings and emb is None)
    ):
        raise ValueError("cache entry has inconsistent shapes")
    return fp


@dataclass(frozen=True)
class FingerprintCache:
    """A folder of cached fingerprints (created on first write).

    Attributes:
        directory: where the entries live.
    """

    directory: Path

    def key(self, path: Path, *, name: str, options: FingerprintOptions) -> str:
        """The cache key of ``path``'s fingerprint under ``name`` and ``options``."""
        emb = "emb" if options.embeddings else "noemb"
        text = f"{FEATURE_VERSION}|{options.key()}|{emb}|{name}|{_file_digest(Path(path))}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _entry(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def get(self, key: str, *, name: str, options: FingerprintOptions) -> Fingerprint | None:
        """The cached fingerprint for ``key``, or ``None`` (missing or unreadable entry)."""
        entry = self._entry(key)
        if not entry.is_file():
            return None
        try:
            return _decode(entry.read_bytes(), name=name, options=options)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            logger.warning("ignoring unreadable fingerprint cache entry %s: %s", entry.name, exc)
            return None

    def put(self, key: str, fingerprint: Fingerprint) -> None:
        """Store ``fingerprint`` under ``key`` (atomic rename; a failed write is only logged)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(encode_fingerprint(fingerprint))
            Path(tmp).replace(self._entry(key))
        except OSError as exc:
            logger.warning("fingerprint cache not written in %s: %s", self.directory, exc)

    def fingerprint_file(
        self, path: Path, *, options: FingerprintOptions, name: str | None = None
    ) -> tuple[ModelOutputs, Fingerprint]:
        """Read ``path`` and return its outputs and fingerprint, computing it only on a miss."""
        outputs = read_outputs(Path(path), name=name)
        key = self.key(path, name=outputs.name, options=options)
        cached = self.get(key, name=outputs.name, options=options)
        if cached is not None and cached.prompt_ids == outputs.prompt_ids:
            logger.debug("fingerprint cache hit for %s", outputs.name)
            return outputs, cached
        fp = compute_fingerprint(outputs, options=options)
        self.put(key, fp)
        return outputs, fp
