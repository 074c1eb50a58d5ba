"""Conformance: every RFC 6962 test vector of transparency-dev/merkle verifies as it says."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from distillguard.errors import ProofError
from distillguard.ledger import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[4] / "shared" / "data" / "rfc6962_vectors"
if not VECTORS.is_dir():  # the repository may be checked out elsewhere than /work/main
    VECTORS = Path("/work/shared/data/rfc6962_vectors")


def _files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _b64(value: Any) -> bytes:
    return base64.b64decode(value) if value is not None else b""


def _proof(data: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in data.get("proof") or []]


def _ids(files: list[Path]) -> list[str]:
    return [str(f.relative_to(VECTORS)) for f in files]


INCLUSION = _files("inclusion")
CONSISTENCY = _files("consistency")


def test_vectors_present() -> None:
    assert len(INCLUSION) > 50
    assert len(CONSISTENCY) > 50


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    data = json.loads(path.read_text())

    def run() -> None:
        verify_inclusion(
            leaf_hash=_b64(data["leafHash"]),
            index=data["leafIdx"],
            size=data["treeSize"],
            proof=_proof(data),
            root=_b64(data["root"]),
        )

    if data["wantErr"]:
        with pytest.raises(ProofError):
            run()
    else:
        run()


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    data = json.loads(path.read_text())

    def run() -> None:
        verify_consistency(
            size1=data["size1"],
            size2=data["size2"],
            proof=_proof(data),
            root1=_b64(data["root1"]),
            root2=_b64(data["root2"]),
        )

    if data["wantErr"]:
        with pytest.raises(ProofError):
            run()
    else:
        run()
