"""C2PA manifests in MP4 and the one-call API (protect_video / inspect_video)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.errors import ImageFormatError, InputError
from distillguard.image import make_test_credentials, sign_manifest, verify_manifest
from distillguard.keyring import WatermarkKey
from distillguard.provenance import VIDEO_SCHEME as PROVENANCE_VIDEO_SCHEME
from distillguard.provenance import ProvenanceChecker
from distillguard.video import (
    VIDEO_SCHEME,
    embed_and_sign,
    inspect_video,
    protect_video,
    reencode,
    synthetic_video,
)


def make_key(seed: int) -> WatermarkKey:
    secret = np.random.default_rng(seed).bytes(32)
    return WatermarkKey(kid=f"wm-vid-{seed}", created_at=datetime.now(UTC), secret=secret)


def test_protect_inspect_reencode_tamper(tmp_path: Path) -> None:
    key, other = make_key(31), make_key(32)
    creds = make_test_credentials(Ed25519PrivateKey.generate())
    clip = tmp_path / "clip.mp4"
    synthetic_video(clip, seed=8, seconds=5.5, width=320, height=192)
    out = protect_video(clip.read_bytes(), payload=4242, key=key, credentials=creds.credentials)
    signed = tmp_path / "signed.mp4"
    signed.write_bytes(out)
    report = inspect_video(signed, keys=[other, key], trust_anchors_pem=creds.ca_pem)
    assert report.detected and report.detection.payload == 4242 and report.keys_tried == 2
    assert report.manifest.state == "trusted" and report.manifest.watermark_kid == key.kid
    assert report.to_dict()["c2pa"]["state"] == "trusted"
    # the provenance check sees both signals of the same file
    prov = ProvenanceChecker([key], trust_anchors_pem=creds.ca_pem).check(signed)
    assert prov.media == "video" and prov.found and PROVENANCE_VIDEO_SCHEME == VIDEO_SCHEME
    assert [s.present for s in prov.signals] == [True, True]
    assert "payload 4242" in prov.verdict and "C2PA manifest trusted" in prov.verdict
    # a re-encoding drops the manifest; the watermark stays
    upload = tmp_path / "upload.mp4"
    reencode(signed, upload, crf=23)
    again = inspect_video(upload, keys=[key], trust_anchors_pem=creds.ca_pem)
    assert again.detected and again.manifest.state == "absent"
    # one flipped byte in the media data breaks the BMFF hash
    raw = bytearray(out)
    mdat = raw.find(b"mdat")
    raw[mdat + 5000] ^= 0xFF
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(raw))
    status = verify_manifest(tampered, trust_anchors_pem=creds.ca_pem)
    assert status.state == "invalid" and any("bmffHash" in f for f in status.failures)
    # the clean clip: nothing, and no payload shown
    clean = inspect_video(clip, keys=[key])
    assert not clean.detected and clean.detection.payload is None
    assert clean.manifest.state == "absent"


def test_refusals(tmp_path: Path) -> None:
    key = make_key(33)
    creds = make_test_credentials(Ed25519PrivateKey.generate())
    with pytest.raises(InputError):
        protect_video(b"not a video at all", payload=1, key=key)
    clip = tmp_path / "clip.mp4"
    synthetic_video(clip, seed=9, seconds=1.0, width=160, height=128)
    with pytest.raises(InputError, match="MP4"):
        embed_and_sign(clip, tmp_path / "x.mkv", payload=1, key=key, credentials=creds.credentials)
    with pytest.raises(ImageFormatError, match="MP4"):
        sign_manifest(b"\x00" * 64, credentials=creds.credentials, mime="video/mp4")
    with pytest.raises(ImageFormatError):
        sign_manifest(b"\x00" * 64, credentials=creds.credentials, mime="video/webm")
    with pytest.raises(InputError):
        inspect_video(clip, keys=[])
    # a Matroska file is not read for C2PA here: absent, the watermark test still runs
    mkv = tmp_path / "c.mkv"
    embed_and_sign(clip, mkv, payload=5, key=key)
    assert inspect_video(mkv, keys=[key]).manifest.state == "absent"
