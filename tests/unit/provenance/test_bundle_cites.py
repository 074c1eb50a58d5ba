"""An evidence bundle can carry provenance results: the file's SHA-256, signals and verdict."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from distillguard.evidence import build_bundle, verify_evidence_bundle
from distillguard.evidence.testing import build_world
from distillguard.image import protect_image, synthetic_image
from distillguard.keyring import Keyring
from distillguard.provenance import FORMAT, ProvenanceChecker
from distillguard.store import open_store
from tests.unit.provenance.test_check import KEY


def test_bundle_carries_provenance_results(tmp_path: Path) -> None:
    world = build_world(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")
    out = io.BytesIO()
    Image.fromarray(synthetic_image(seed=9, width=256, height=256)).save(out, format="PNG")
    suspect = tmp_path / "suspect.png"
    suspect.write_bytes(protect_image(out.getvalue(), payload=77, key=KEY))
    result = ProvenanceChecker([KEY]).check(suspect)
    report = tmp_path / "provenance.json"
    report.write_text(json.dumps({"results": [result.to_dict()]}))
    ring = Keyring.load(world.keyring_path)
    with open_store(world.store_url) as store:
        build_bundle(
            out=tmp_path / "evidence.zip",
            store=store,
            keyring=ring,
            exchange_ids=[],
            citations={},
            results={"provenance": report},
            hold=False,
        )
    check = verify_evidence_bundle(tmp_path / "evidence.zip")
    assert check.ok, check.problems
    with zipfile.ZipFile(tmp_path / "evidence.zip") as bundle:
        cited = json.loads(bundle.read("results/provenance.json"))["results"][0]
    assert cited["format"] == FORMAT and cited["found"]
    assert cited["sha256"] == hashlib.sha256(suspect.read_bytes()).hexdigest()
    assert cited["signals"][0]["payload"] == 77
    assert np.isclose(cited["p_value"], result.p_value or 1.0)
