"""Behavioural fingerprints, probe sets, canary facts and lineage attribution.

See ``docs/fingerprint.md``. The judged entry point is :func:`attribute` (and the CLI's
``distillguard fingerprint attribute``).
"""

from __future__ import annotations

from distillguard.fingerprint.attribution import (
    CHANNELS,
    AttributionResult,
    FamilyScore,
    attribute,
    similarity_matrices,
)
from distillguard.fingerprint.features import (
    Fingerprint,
    FingerprintOptions,
    compute_fingerprint,
    embeddings_available,
)
from distillguard.fingerprint.outputs import (
    FamilyMap,
    ModelOutputs,
    ProbeSet,
    load_probe_set,
    read_families,
    read_outputs,
)

__all__ = [
    "CHANNELS",
    "AttributionResult",
    "FamilyMap",
    "FamilyScore",
    "Fingerprint",
    "FingerprintOptions",
    "ModelOutputs",
    "ProbeSet",
    "attribute",
    "compute_fingerprint",
    "embeddings_available",
    "load_probe_set",
    "read_families",
    "read_outputs",
    "similarity_matrices",
]
