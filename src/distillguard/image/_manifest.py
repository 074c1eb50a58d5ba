"""C2PA manifests on image outputs: sign with the provider's key, verify on suspect images.

A C2PA manifest is a signed statement embedded in the file ("this image was produced by an AI
model of provider X, at time T"), hard-bound to the exact bytes by a hash. It is signed with an
Ed25519 key (the provider's) and carries an X.509 certificate chain for that key; a verifier
trusts the manifest when the chain ends at a trust anchor it knows. Re-encoding, cropping or a
screenshot strips or breaks the manifest: that is what the invisible watermark is for. Both are
applied, watermark first, so the manifest covers the watermarked pixels.

Certificates. C2PA requires an X.509 end-entity certificate for the signing key (not a CA, with
the ``digitalSignature`` key usage and an extended key usage such as ``emailProtection``). A
provider plugs in its real certificate with :meth:`ManifestCredentials.from_pem`: the PEM chain
(leaf first, then intermediates) issued by a CA for its Ed25519 key. For tests, demos and private
deployments, :func:`make_test_credentials` creates a throw-away CA and a leaf certificate for a
given key (for instance the keyring's signing key) at run time; give the CA certificate to
:func:`verify_manifest` as a trust anchor.

Example::

    creds = make_test_credentials(ring.signing_key(KeyPurpose.LEDGER).private_key)
    signed = sign_manifest(marked_png, credentials=creds.credentials, watermark_kid=key.kid)
    status = verify_manifest(signed, trust_anchors_pem=creds.ca_pem)
    status.state   # "trusted"
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from distillguard import __version__
from distillguard.errors import (
    ConfigurationError,
    DependencyMissingError,
    ImageFormatError,
    SignatureError,
)
from distillguard.image._codec import decode_image, mime_type

__all__ = [
    "WATERMARK_ASSERTION",
    "ManifestCredentials",
    "ManifestState",
    "ManifestStatus",
    "SelfSignedCredentials",
    "make_test_credentials",
    "sign_manifest",
    "verify_manifest",
]

logger = logging.getLogger(__name__)

#: Label of DistillGuard's own assertion: which watermark key and scheme marked the pixels.
WATERMARK_ASSERTION = "org.distillguard.watermark"
_TRAINED_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

ManifestState = Literal["absent", "invalid", "valid", "trusted"]


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:  # pragma: no cover - c2pa-python is a runtime dependency
        raise DependencyMissingError(
            "C2PA support needs the c2pa-python package", hint="pip install c2pa-python"
        ) from exc
    return c2pa


@dataclass(frozen=True)
class ManifestCredentials:
    """What signs a manifest: an Ed25519 private key and its certificate chain (PEM, leaf first).

    ``repr`` hides the key. ``tsa_url`` optionally names an RFC 3161 time-stamp authority
    (needs network access when signing).
    """

    private_key: Ed25519PrivateKey = field(repr=False)
    certificate_chain_pem: str
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        try:
            certs = x509.load_pem_x509_certificates(self.certificate_chain_pem.encode())
        except ValueError as exc:
            raise ConfigurationError(f"invalid certificate chain: {exc}") from None
        leaf_key = certs[0].public_key()
        mine = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if (
            not hasattr(leaf_key, "public_bytes")
            or leaf_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            != mine
        ):
            raise ConfigurationError(
                "the first certificate of the chain is not for this signing key",
                hint="put the leaf certificate of the Ed25519 signing key first",
            )

    @classmethod
    def from_pem(
        cls,
        *,
        chain_path: Path,
        key_path: Path | None = None,
        private_key: Ed25519PrivateKey | None = None,
        tsa_url: str | None = None,
    ) -> ManifestCredentials:
        """Load a provider's certificate chain, with its key from a PEM file or given directly.

        Raises:
            ConfigurationError: missing or unreadable files, a non-Ed25519 key, or a chain whose
                leaf certificate is not for the key.
        """
        try:
            chain = chain_path.read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read certificate chain {chain_path}: {exc}") from None
        if private_key is None:
            if key_path is None:
                raise ConfigurationError("a C2PA signing key is needed (key file or keyring key)")
            try:
                loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigurationError(f"cannot read signing key {key_path}: {exc}") from None
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigurationError(f"{key_path}: the C2PA signing key must be Ed25519")
            private_key = loaded
        return cls(private_key=private_key, certificate_chain_pem=chain, tsa_url=tsa_url)


@dataclass(frozen=True)
class SelfSignedCredentials:
    """Throw-away credentials from :func:`make_test_credentials` and the CA to trust them."""

    credentials: ManifestCredentials
    ca_pem: str


def make_test_credentials(
    private_key: Ed25519PrivateKey | None = None,
    *,
    organization: str = "DistillGuard test provider",
    valid_days: int = 90,
) -> SelfSignedCredentials:
    """Create a self-signed test CA and a C2PA-conformant leaf certificate for ``private_key``.

    For tests, demos and private deployments only: verifiers trust these manifests only when
    given ``ca_pem`` as a trust anchor. With no key, a fresh one is generated.
    """
    leaf_key = private_key or Ed25519PrivateKey.generate()
    ca_key = Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} test CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    no_usage: dict[str, bool] = {
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, None)
    )
    leaf_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} content signer"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_usage),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, None)
    )
    pem = serialization.Encoding.PEM
    chain = (leaf.public_bytes(pem) + ca.public_bytes(pem)).decode()
    return SelfSignedCredentials(
        credentials=ManifestCredentials(private_key=leaf_key, certificate_chain_pem=chain),
        ca_pem=ca.public_bytes(pem).decode(),
    )


def _context(c2pa: Any, *, trust_anchors_pem: str | None) -> Any:
    settings: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors_pem:
        settings["verify"] = {"verify_trust": True}
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    else:
        settings["verify"] = {"verify_trust": False}
    return c2pa.Context.from_dict(settings)


def sign_manifest(
    image_bytes: bytes,
    *,
    credentials: ManifestCredentials,
    title: str = "model output",
    watermark_kid: str | None = None,
    model: str | None = None,
    mime: str | None = None,
    watermark_scheme: str = "distillguard-image-wm-v1",
) -> bytes:
    """Embed a signed C2PA manifest in a JPEG or PNG image, or (``mime="video/mp4"``) an MP4
    video; returns the new file bytes.

    The manifest says the image was created by a trained algorithmic model (IPTC digital source
    type), names DistillGuard as claim generator and, when ``watermark_kid`` is given, carries an
    ``org.distillguard.watermark`` assertion with the watermark key id and scheme (never the
    payload, which names an account).

    An MP4 is hard-bound by the C2PA BMFF hash (``assertion.bmffHash``), so the manifest also
    breaks on any change of the file; ``watermark_scheme`` names the video watermark there.

    Raises:
        ImageFormatError: not a JPEG or PNG image, or not an MP4 when ``mime`` says so;
            SignatureError: the C2PA library refused to sign (for instance a certificate that
            does not meet the C2PA profile).
    """
    c2pa = _c2pa()
    if mime is None:
        decoded = decode_image(image_bytes)
        mime = mime_type(decoded.format)
        if mime not in ("image/jpeg", "image/png"):
            raise ImageFormatError(f"C2PA signing supports JPEG and PNG here, not {decoded.format}")
    elif mime != "video/mp4":
        raise ImageFormatError(f"C2PA signing of {mime!r} is not supported (video/mp4 is)")
    elif image_bytes[4:8] != b"ftyp":
        raise ImageFormatError("not an MP4 file (no ftyp box at its start)")
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": _TRAINED_MEDIA}
    if model:
        action["softwareAgent"] = {"name": model}
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions", "data": {"actions": [action]}}]
    if watermark_kid is not None:
        assertions.append(
            {
                "label": WATERMARK_ASSERTION,
                "data": {"scheme": watermark_scheme, "kid": watermark_kid},
            }
        )
    manifest = {
        "claim_generator_info": [{"name": "distillguard", "version": __version__}],
        "title": title,
        "format": mime,
        "assertions": assertions,
    }
    key = credentials.private_key
    try:
        signer = c2pa.Signer.from_callback(
            key.sign,
            c2pa.C2paSigningAlg.ED25519,
            credentials.certificate_chain_pem,
            credentials.tsa_url,
        )
        context = _context(c2pa, trust_anchors_pem=None)
        dest = io.BytesIO()
        with signer, c2pa.Builder(json.dumps(manifest), context=context) as builder:
            builder.sign(signer, mime, io.BytesIO(image_bytes), dest)
    except c2pa.C2paError as exc:
        raise SignatureError(
            f"C2PA signing failed: {exc}",
            hint="check that the certificate chain meets the C2PA certificate profile",
        ) from None
    logger.debug("signed C2PA manifest (%s, %d bytes)", mime, len(dest.getvalue()))
    return dest.getvalue()


@dataclass(frozen=True)
class ManifestStatus:
    """The C2PA manifest of an image, as verified.

    ``state``: ``absent`` (no manifest), ``invalid`` (a signature, hash or certificate check
    failed: ``failures`` lists the C2PA status codes), ``valid`` (signature and content hash
    verify, certificate not checked against trust anchors), ``trusted`` (valid and the chain
    ends at a given trust anchor).
    """

    state: ManifestState
    failures: tuple[str, ...] = ()
    signer: str | None = None
    issuer: str | None = None
    algorithm: str | None = None
    claim_generator: str | None = None
    watermark_kid: str | None = None
    title: str | None = None

    @property
    def ok(self) -> bool:
        """True when the manifest is valid or trusted."""
        return self.state in ("valid", "trusted")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "state": self.state,
            "failures": list(self.failures),
            "signer": self.signer,
            "issuer": self.issuer,
            "algorithm": self.algorithm,
            "claim_generator": self.claim_generator,
            "watermark_kid": self.watermark_kid,
            "title": self.title,
        }


def _open_stream(data: bytes | Path) -> io.BufferedIOBase:
    if isinstance(data, Path):
        return data.open("rb")
    return io.BytesIO(data)


def verify_manifest(
    image_bytes: bytes | Path, *, trust_anchors_pem: str | None = None
) -> ManifestStatus:
    """Read and verify the C2PA manifest of an image (JPEG, PNG, WebP, ...) or a video (MP4 and
    other ISO BMFF files); a :class:`~pathlib.Path` is streamed from disk instead of read whole.

    Without ``trust_anchors_pem`` the signature and hashes are checked but not the certificate
    chain's trust (state ``valid`` at best); with it, a chain ending at one of the PEM anchors
    gives ``trusted`` and any other chain ``invalid``.
    """
    c2pa = _c2pa()
    try:
        context = _context(c2pa, trust_anchors_pem=trust_anchors_pem)
        with (
            _open_stream(image_bytes) as stream,
            c2pa.Reader(None, stream, context=context) as reader,
        ):
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    except OSError as exc:
        name = str(image_bytes) if isinstance(image_bytes, Path) else "image"
        raise ImageFormatError(f"cannot read {name}: {exc.strerror or exc}") from None
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return ManifestStatus(state="absent")
        return ManifestStatus(state="invalid", failures=(f"read: {exc}",))
    failures = tuple(
        str(item.get("code"))
        for item in (results.get("activeManifest") or {}).get("failure", [])
        if isinstance(item, dict)
    )
    sig = active.get("signature_info") or {}
    generator = None
    info = active.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        generator = f"{info[0].get('name')} {info[0].get('version', '')}".strip()
    kid = None
    for assertion in active.get("assertions") or []:
        if isinstance(assertion, dict) and assertion.get("label") == WATERMARK_ASSERTION:
            data = assertion.get("data") or {}
            kid = data.get("kid") if isinstance(data, dict) else None
    normalized: ManifestState
    if failures or state in (None, "Invalid"):
        normalized = "invalid"
    elif state == "Trusted":
        normalized = "trusted"
    else:
        normalized = "valid" if not trust_anchors_pem else "invalid"
    return ManifestStatus(
        state=normalized,
        failures=failures,
        signer=sig.get("common_name"),
        issuer=sig.get("issuer"),
        algorithm=sig.get("alg"),
        claim_generator=generator,
        watermark_kid=kid,
        title=active.get("title"),
    )
