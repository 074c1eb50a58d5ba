"""C2PA manifests: signing with an Ed25519 key and a run-time test CA, verification, tampering."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray
from PIL import Image

from distillguard.errors import ConfigurationError, ImageFormatError, InputError
from distillguard.image import (
    ManifestCredentials,
    SelfSignedCredentials,
    detect_image,
    inspect_image,
    make_test_credentials,
    protect_image,
    sign_manifest,
    verify_manifest,
    watermark_image,
)
from distillguard.keyring import WatermarkKey

from .conftest import encode, make_key


@pytest.fixture(scope="module")
def creds() -> SelfSignedCredentials:
    return make_test_credentials(Ed25519PrivateKey.generate(), organization="Acme AI")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_sign_and_verify(
    creds: SelfSignedCredentials, key: WatermarkKey, photo: NDArray[np.uint8], fmt: str
) -> None:
    marked = watermark_image(encode(photo, fmt), payload=99, key=key)
    signed = sign_manifest(
        marked, credentials=creds.credentials, watermark_kid=key.kid, model="acme-1"
    )
    assert Image.open(io.BytesIO(signed)).format == fmt
    plain = verify_manifest(signed)
    assert plain.state == "valid" and plain.ok
    assert plain.algorithm == "Ed25519"
    assert plain.issuer == "Acme AI"
    assert plain.watermark_kid == key.kid
    assert plain.claim_generator is not None and plain.claim_generator.startswith("distillguard")
    trusted = verify_manifest(signed, trust_anchors_pem=creds.ca_pem)
    assert trusted.state == "trusted"
    # The manifest does not disturb the watermark.
    assert detect_image(signed, key=key, claimed_payload=99).bit_accuracy == 1.0


def test_other_anchor_is_untrusted(creds: SelfSignedCredentials, photo: NDArray[np.uint8]) -> None:
    signed = sign_manifest(encode(photo), credentials=creds.credentials)
    other = make_test_credentials()
    status = verify_manifest(signed, trust_anchors_pem=other.ca_pem)
    assert status.state == "invalid"
    assert "signingCredential.untrusted" in status.failures


def test_absent_manifest(photo: NDArray[np.uint8]) -> None:
    status = verify_manifest(encode(photo))
    assert status.state == "absent" and not status.ok


def test_tampered_pixels_invalidate(creds: SelfSignedCredentials, photo: NDArray[np.uint8]) -> None:
    signed = bytearray(sign_manifest(encode(photo), credentials=creds.credentials))
    # Flip a byte of the compressed pixel data near the end (before the IEND chunk).
    signed[-200] ^= 0x55
    status = verify_manifest(bytes(signed))
    assert status.state == "invalid"
    assert any("mismatch" in f or "hash" in f.lower() for f in status.failures)


def test_reencoding_strips_manifest_but_not_watermark(
    creds: SelfSignedCredentials, key: WatermarkKey, photo: NDArray[np.uint8]
) -> None:
    signed = sign_manifest(
        watermark_image(encode(photo), payload=12, key=key), credentials=creds.credentials
    )
    reencoded = encode(np.asarray(Image.open(io.BytesIO(signed)).convert("RGB")), "JPEG")
    assert verify_manifest(reencoded).state == "absent"
    assert detect_image(reencoded, key=key).payload == 12


def test_chain_must_match_key(creds: SelfSignedCredentials) -> None:
    with pytest.raises(ConfigurationError, match="not for this signing key"):
        ManifestCredentials(
            private_key=Ed25519PrivateKey.generate(),
            certificate_chain_pem=creds.credentials.certificate_chain_pem,
        )
    with pytest.raises(ConfigurationError, match="invalid certificate chain"):
        ManifestCredentials(private_key=Ed25519PrivateKey.generate(), certificate_chain_pem="x")


def test_from_pem_files(tmp_path: Path, photo: NDArray[np.uint8]) -> None:
    private = Ed25519PrivateKey.generate()
    test = make_test_credentials(private)
    chain = tmp_path / "chain.pem"
    chain.write_text(test.credentials.certificate_chain_pem)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loaded = ManifestCredentials.from_pem(chain_path=chain, key_path=key_file)
    assert "private_key" not in repr(loaded)
    signed = sign_manifest(encode(photo), credentials=loaded)
    assert verify_manifest(signed, trust_anchors_pem=test.ca_pem).state == "trusted"
    with pytest.raises(ConfigurationError):
        ManifestCredentials.from_pem(chain_path=tmp_path / "missing.pem", key_path=key_file)
    with pytest.raises(ConfigurationError):
        ManifestCredentials.from_pem(chain_path=chain)


def test_unsupported_format(creds: SelfSignedCredentials, photo: NDArray[np.uint8]) -> None:
    with pytest.raises(ImageFormatError):
        sign_manifest(encode(photo, "WEBP"), credentials=creds.credentials)
    with pytest.raises(ImageFormatError):
        sign_manifest(b"garbage", credentials=creds.credentials)


def test_protect_then_inspect_with_rotated_keys(
    creds: SelfSignedCredentials, photo: NDArray[np.uint8]
) -> None:
    old, new = make_key(40), make_key(41)
    out = protect_image(encode(photo), payload=321, key=old, credentials=creds.credentials)
    report = inspect_image(out, keys=[new, old], trust_anchors_pem=creds.ca_pem)
    assert report.detected and report.keys_tried == 2
    assert report.detection.kid == old.kid and report.detection.payload == 321
    # Two keys tried: the p-value is the best key's times two (Bonferroni).
    single = inspect_image(out, keys=[old])
    assert report.detection.p_value == pytest.approx(2 * single.detection.p_value)
    assert report.manifest.state == "trusted"
    assert report.to_dict()["c2pa"]["watermark_kid"] == old.kid
    clean = inspect_image(encode(photo), keys=[new, old])
    assert not clean.detected and clean.manifest.state == "absent"
    with pytest.raises(InputError):
        inspect_image(out, keys=[])
