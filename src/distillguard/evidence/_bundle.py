"""Evidence bundles: a zip that a third party verifies offline, without the provider's store.

A bundle (format ``distillguard/evidence-bundle/v1``) holds, in a canonical zip
(:mod:`distillguard.evidence._zip`)::

    manifest.json              every other file: path, SHA-256, size; bundle id, origin, key id
    manifest.sig               Ed25519 signature of manifest.json by the ledger key
    keys/jwks.json             the public keys (JWK Set, nothing secret)
    checkpoints/<size>.txt     the signed ledger checkpoints the proofs lead to
    exchanges/<n>.json         each cited exchange record with its salt and inclusion proof
    citations.json             which campaign cites which exchange
    results/scan/...           the scan's results (campaigns, every account's score)
    results/radioactivity.json, results/fingerprint.json   when given
    report.html                the report, when given
    README.txt                 how to verify

:func:`build_bundle` writes one from the store and the keyring, and puts the cited exchanges on
legal hold so that retention cannot erase them. :func:`verify_evidence_bundle` checks every part
with nothing but the zip (and, optionally, a trusted public key): the layout of the container,
every file's hash, the manifest's signature, every inclusion proof against its checkpoint and
every checkpoint's signature. Each problem names the member (and part of the container) that was
altered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from distillguard._internal.files import open_private
from distillguard._internal.timeutil import format_ts
from distillguard.errors import DistillGuardError, InputError
from distillguard.evidence._zip import Region, canonical_zip, layout, read_local_entry
from distillguard.keyring import KeyPurpose, Keyring, jwk_thumbprint
from distillguard.ledger import (
    Ledger,
    LedgerKey,
    key_id,
    public_key_of,
    verify_bundle,
    verify_checkpoint,
)
from distillguard.results import SCAN_FILES
from distillguard.store import Store

__all__ = [
    "EVIDENCE_BUNDLE_FORMAT",
    "BundleCheck",
    "BundleFile",
    "BundleProblem",
    "BundleSummary",
    "build_bundle",
    "verify_evidence_bundle",
]

logger = logging.getLogger(__name__)

#: The ``format`` member of an evidence bundle's manifest.
EVIDENCE_BUNDLE_FORMAT: Final = "distillguard/evidence-bundle/v1"
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
JWKS: Final = "keys/jwks.json"
CITATIONS: Final = "citations.json"
_PATH_RE: Final = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")

_README: Final = """DistillGuard evidence bundle ({fmt})

Verify it offline, with nothing but this file:

    distillguard verify-bundle BUNDLE.zip --public-key PROVIDER-KEYS.json

PROVIDER-KEYS.json is the provider's published JWK Set (`distillguard keys export-public`);
without --public-key the keys inside the bundle are used, which only proves that the bundle is
internally consistent, not who made it.

What is checked: the container's layout (every byte is accounted for), the SHA-256 of every
file against manifest.json, the Ed25519 signature of manifest.json (manifest.sig), the signature
of every checkpoint in checkpoints/, and for every record in exchanges/ that it matches its
ledger leaf and that its RFC 9162 inclusion proof leads to the root of a signed checkpoint.
See docs/evidence.md.
"""


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file listed in the manifest."""

    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class BundleSummary:
    """What :func:`build_bundle` wrote."""

    path: Path
    bundle_id: str
    kid: str
    files: tuple[BundleFile, ...]
    exchanges: int
    checkpoints: int
    holds: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "path": str(self.path),
            "bundle_id": self.bundle_id,
            "kid": self.kid,
            "files": len(self.files),
            "exchanges": self.exchanges,
            "checkpoints": self.checkpoints,
            "holds": self.holds,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True, slots=True)
class BundleProblem:
    """One thing wrong with a bundle, naming the member(s) and the part of the container."""

    members: tuple[str, ...]
    part: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"members": list(self.members), "part": self.part, "message": self.message}


Trust = Literal["given keys", "keys in the bundle"]


@dataclass(frozen=True)
class BundleCheck:
    """The outcome of :func:`verify_evidence_bundle`: ``ok`` only when ``problems`` is empty."""

    path: Path
    problems: tuple[BundleProblem, ...]
    trust: Trust
    bundle_id: str | None = None
    origin: str | None = None
    kid: str | None = None
    created_at: str | None = None
    files_verified: int = 0
    exchanges_verified: int = 0
    checkpoints_verified: int = 0
    exchange_ids: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "ok": self.ok,
            "path": str(self.path),
            "bundle_id": self.bundle_id,
            "origin": self.origin,
            "kid": self.kid,
            "created_at": self.created_at,
            "trust": self.trust,
            "files_verified": self.files_verified,
            "exchanges_verified": self.exchanges_verified,
            "checkpoints_verified": self.checkpoints_verified,
            "problems": [p.to_dict() for p in self.problems],
        }


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- building ---------------------------------------------------------------------------------


def build_bundle(
    *,
    out: Path,
    store: Store,
    keyring: Keyring,
    exchange_ids: Sequence[str],
    citations: Mapping[str, Sequence[str]],
    scan_dir: Path | None = None,
    results: Mapping[str, Path] | None = None,
    report_html: bytes | None = None,
    origin: str | None = None,
    hold: bool = True,
    actor: str = "distillguard-evidence",
    now: datetime | None = None,
) -> BundleSummary:
    """Write an evidence bundle to ``out``.

    Args:
        out: the zip file to write (replaced if it exists).
        store: the store holding the cited exchanges and the ledger.
        keyring: signs the manifest (and a new checkpoint if none covers the cited records).
        exchange_ids: the cited exchanges; each gets an inclusion proof.
        citations: campaign id -> the exchange ids it cites (written to ``citations.json``).
        scan_dir: the scan's output folder; its result files are included.
        results: more result files by name (``radioactivity``, ``fingerprint``), included as
            ``results/<name>.json``.
        report_html: the report, included as ``report.html``.
        origin: the ledger's origin (default: the ledger default).
        hold: put the cited exchanges on legal hold (reason: this bundle's id).
        actor: who places the holds.
        now: the bundle's creation time (default: now).

    Raises:
        InputError: an exchange is unknown, erased or not in the ledger; a result file is
            missing.
    """
    from distillguard.privacy import LegalHolds

    when = (now or datetime.now(UTC)).astimezone(UTC)
    bundle_id = f"bundle-{uuid.uuid4().hex[:16]}"
    ledger = Ledger.open(store) if origin is None else Ledger.open(store, origin=origin)
    key = keyring.signing_key(KeyPurpose.LEDGER)
    ids = list(dict.fromkeys(exchange_ids))
    files: list[tuple[str, bytes]] = []
    # a checkpoint that covers every cited leaf
    latest = ledger.latest_checkpoint()
    sizes = []
    for exchange_id in ids:
        needed = ledger.needed_size(exchange_id)  # its leaf and its erasures' tombstones
        if needed is None:
            raise InputError(f"cited exchange {exchange_id!r} is not in the ledger")
        sizes.append(needed)
    if ids and (latest is None or latest.size < max(sizes)):
        ledger.publish_checkpoint(key, timestamp=when)
    checkpoint = ledger.latest_checkpoint()
    notes: dict[str, int] = {}
    records: dict[str, str] = {}
    for number, exchange_id in enumerate(ids, start=1):
        proof = ledger.prove(exchange_id, checkpoint=checkpoint)
        name = f"exchanges/{number:05d}.json"
        files.append((name, _json(proof.to_dict())))
        records[exchange_id] = name
        notes.setdefault(proof.checkpoint, len(notes))
    for note in notes:
        size = note.split("\n", 2)[1]
        files.append((f"checkpoints/{size}.txt", note.encode()))
    files.append(
        (
            CITATIONS,
            _json(
                {
                    "campaigns": {c: list(v) for c, v in citations.items()},
                    "records": records,
                }
            ),
        )
    )
    if scan_dir is not None:
        for name in SCAN_FILES:
            path = scan_dir / name
            if path.is_file():
                files.append((f"results/scan/{name}", path.read_bytes()))
    for name, path in sorted((results or {}).items()):
        try:
            files.append((f"results/{name}.json", path.read_bytes()))
        except OSError as exc:
            raise InputError(f"cannot read result file {path}: {exc.strerror}") from None
    if report_html is not None:
        files.append(("report.html", report_html))
    files.append(("README.txt", _README.format(fmt=EVIDENCE_BUNDLE_FORMAT).encode()))
    files.append((JWKS, _json(keyring.public_jwks())))
    entries = tuple(BundleFile(path=n, sha256=_sha256(d), size=len(d)) for n, d in files)
    manifest = _json(
        {
            "format": EVIDENCE_BUNDLE_FORMAT,
            "bundle_id": bundle_id,
            "created_at": format_ts(when),
            "origin": ledger.origin,
            "kid": key.kid,
            "exchanges": len(ids),
            "files": [e.to_dict() for e in entries],
        }
    )
    signature = _json(
        {
            "alg": "EdDSA",
            "kid": key.kid,
            "signature": base64.b64encode(key.sign(manifest)).decode(),
        }
    )
    blob = canonical_zip([(MANIFEST, manifest), (SIGNATURE, signature), *files])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open_private(tmp) as fh:  # exchange content: owner-only (0600)
        fh.write(blob)
    tmp.replace(out)
    placed = 0
    if hold and ids:
        placed = len(
            LegalHolds(store).place_many(
                scope="exchange",
                targets=ids,
                reason=f"cited by evidence bundle {bundle_id}",
                actor=actor,
                now=when,
            )
        )
    logger.info("wrote evidence bundle %s (%d exchanges, %d bytes)", bundle_id, len(ids), len(blob))
    return BundleSummary(
        path=out,
        bundle_id=bundle_id,
        kid=key.kid,
        files=entries,
        exchanges=len(ids),
        checkpoints=len(notes),
        holds=placed,
        size_bytes=len(blob),
    )


# -- verification -----------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[BundleProblem] = []

    def add(self, members: str | Sequence[str] | None, part: str, message: str) -> None:
        if members is None:
            names: tuple[str, ...] = ()
        elif isinstance(members, str):
            names = (members,)
        else:
            names = tuple(members)
        self.items.append(BundleProblem(members=names, part=part, message=message))


def _jwks_keys(data: bytes) -> list[tuple[str, Ed25519PublicKey]]:
    """Ledger-purpose Ed25519 keys of a JWK Set (unusable entries are skipped)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    entries = doc.get("keys") if isinstance(doc, dict) else None
    out: list[tuple[str, Ed25519PublicKey]] = []
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("purpose") not in (None, "ledger"):
            continue
        x = jwk.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            continue
        out.append((jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x}), key))
    return out


def _parse_manifest(data: bytes, problems: _Problems) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        problems.add(MANIFEST, "data", f"manifest.json is not valid JSON ({exc})")
        return None
    if not isinstance(doc, dict) or doc.get("format") != EVIDENCE_BUNDLE_FORMAT:
        problems.add(MANIFEST, "data", f"manifest.json is not an {EVIDENCE_BUNDLE_FORMAT} manifest")
        return None
    files = doc.get("files")
    if not isinstance(files, list):
        problems.add(MANIFEST, "data", "manifest.json has no 'files' list")
        return None
    seen: set[str] = {MANIFEST, SIGNATURE}
    for i, entry in enumerate(files):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and _PATH_RE.match(entry["path"]) is not None
            and ".." not in entry["path"].split("/")
            and isinstance(entry.get("sha256"), str)
            and _HEX64.match(entry["sha256"]) is not None
            and type(entry.get("size")) is int
            and entry["size"] >= 0
        )
        if not ok:
            problems.add(MANIFEST, "data", f"manifest.json: files[{i}] is malformed")
            return None
        if entry["path"] in seen:
            problems.add(MANIFEST, "data", f"manifest.json lists {entry['path']!r} twice")
            return None
        seen.add(entry["path"])
    return doc


def _crc_ok(blob: bytes, offset: int, data: bytes) -> bool:
    import zlib

    stored = int.from_bytes(blob[offset + 14 : offset + 18], "little")
    return stored == zlib.crc32(data) & 0xFFFFFFFF


def _compare_layout(
    blob: bytes,
    expected: bytes,
    regions: list[Region],
    problems: _Problems,
    *,
    altered: set[str],
) -> None:
    """Name every region whose bytes differ from the canonical layout.

    Members in ``altered`` (their data fails its hash) are already named: their headers differ
    only by the CRC-32 of the altered data and are not reported again.
    """
    n = min(len(blob), len(expected))
    a = np.frombuffer(blob, dtype=np.uint8, count=n)
    b = np.frombuffer(expected, dtype=np.uint8, count=n)
    diff = np.flatnonzero(a != b)
    starts = np.array([r.start for r in regions], dtype=np.int64)
    hit = sorted(set(np.searchsorted(starts, diff, side="right").tolist()))
    for i in hit:
        region = regions[i - 1]
        if region.part == "data" or region.member in altered:
            continue  # data is checked against the manifest's hashes
        problems.add(
            region.member,
            region.part,
            f"{region.describe()} differs from the canonical layout (bytes were changed)",
        )
    if len(blob) != len(expected):
        problems.add(
            None,
            "length",
            f"the file is {len(blob)} bytes, the manifest implies {len(expected)} "
            "(bytes were added or removed)",
        )


def _name_added_members(blob: bytes, listed: set[str], problems: _Problems) -> None:
    """Name every member of the zip that the manifest does not list (a file added to it).

    The local entries are walked from the start (an entry inserted anywhere among them is
    found) and the central directory is read as any ZIP reader would (an entry added there
    only, which extraction tools would show, is found too).
    """
    found: dict[str, str] = {}
    offset = 0
    while True:
        try:
            name, _, offset = read_local_entry(blob, offset)
        except ValueError:
            break
        if name not in listed:
            found.setdefault(name, "local header")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        names = []
    for name in names:
        if name not in listed:
            found.setdefault(name, "central directory")
    for name, part in found.items():
        problems.add(
            name,
            part,
            f"member {name!r} is not listed in the signed manifest: a file was added to the bundle",
        )


def verify_evidence_bundle(
    path: Path, *, public_keys: Sequence[LedgerKey] | None = None
) -> BundleCheck:
    """Verify an evidence bundle offline; every problem found is listed and named.

    Args:
        path: the bundle (zip).
        public_keys: trusted Ed25519 ledger public keys (e.g. from the provider's published JWK
            Set). Without them the bundle's own ``keys/jwks.json`` is used: the bundle is then
            shown to be internally consistent, not to come from the provider.

    Raises:
        InputError: the file cannot be read.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read bundle {path}: {exc.strerror}") from None
    trust: Trust = "given keys" if public_keys is not None else "keys in the bundle"
    problems = _Problems()
    # 1. the manifest and its signature: the first two entries
    try:
        name, manifest_bytes, after = read_local_entry(blob, 0)
        if name != MANIFEST:
            raise ValueError(f"the first entry is {name!r}")
    except ValueError as exc:
        problems.add(MANIFEST, "local header", f"manifest.json cannot be found ({exc})")
        return BundleCheck(path=path, problems=tuple(problems.items), trust=trust)
    try:
        name, signature_bytes, _ = read_local_entry(blob, after)
        if name != SIGNATURE:
            raise ValueError(f"the second entry is {name!r}")
    except ValueError as exc:
        problems.add(SIGNATURE, "local header", f"manifest.sig cannot be found ({exc})")
        signature_bytes = b""
    manifest = _parse_manifest(manifest_bytes, problems)
    if manifest is None:
        return BundleCheck(path=path, problems=tuple(problems.items), trust=trust)
    files = [
        BundleFile(path=e["path"], sha256=e["sha256"], size=e["size"]) for e in manifest["files"]
    ]
    members = [(MANIFEST, len(manifest_bytes)), (SIGNATURE, len(signature_bytes))]
    members += [(f.path, f.size) for f in files]
    regions = layout(members)
    # 2. every file's bytes where the manifest says they are, against its hash
    data: dict[str, bytes] = {MANIFEST: manifest_bytes, SIGNATURE: signature_bytes}
    data_regions = {r.member: r for r in regions if r.part == "data"}
    verified = 0
    for f in files:
        region = data_regions[f.path]
        chunk = blob[region.start : region.end]
        data[f.path] = chunk
        if len(chunk) != f.size:
            problems.add(f.path, "data", f"member {f.path!r} is truncated")
        elif _sha256(chunk) != f.sha256:
            problems.add(f.path, "data", f"member {f.path!r}: SHA-256 differs from the manifest")
        else:
            verified += 1
    # 3. the container's layout, byte for byte, and any member the manifest does not list
    expected = canonical_zip([(name, data[name]) for name, _ in members])
    altered = {m for p in problems.items if p.part == "data" for m in p.members}
    _compare_layout(blob, expected, regions, problems, altered=altered)
    _name_added_members(blob, {name for name, _ in members}, problems)
    # 4. the manifest's signature
    if public_keys is not None:
        keys = [(key_id(public_key_of(k)), public_key_of(k)) for k in public_keys]
    else:
        keys = _jwks_keys(data.get(JWKS, b""))
        if not keys:
            problems.add(JWKS, "data", "keys/jwks.json holds no usable Ed25519 ledger key")
    signer = _check_signature(manifest_bytes, signature_bytes, keys, blob, problems)
    # 5. checkpoints and inclusion proofs
    # Given keys keep their time bound (a retired key verifies only what it signed before).
    ledger_keys: list[LedgerKey] = (
        list(public_keys) if public_keys is not None else [k for _, k in keys]
    )
    origin = manifest.get("origin") if isinstance(manifest.get("origin"), str) else None
    notes: dict[str, str] = {}
    checkpoints_ok = 0
    for f in files:
        if not f.path.startswith("checkpoints/"):
            continue
        text = data[f.path].decode("utf-8", errors="replace")
        notes[text] = f.path
        try:
            verify_checkpoint(text, public_keys=ledger_keys, origin=origin)
            checkpoints_ok += 1
        except DistillGuardError as exc:
            problems.add(f.path, "data", f"checkpoint {f.path!r}: {exc.message}")
    exchanges_ok = 0
    exchange_ids: list[str] = []
    for f in files:
        if not f.path.startswith("exchanges/"):
            continue
        try:
            doc = orjson.loads(data[f.path])
            result = verify_bundle(doc, public_keys=ledger_keys, origin=origin)
        except orjson.JSONDecodeError:
            problems.add(f.path, "data", f"record {f.path!r} is not valid JSON")
            continue
        except DistillGuardError as exc:
            problems.add(f.path, "data", f"record {f.path!r}: {exc.message}")
            continue
        if doc.get("checkpoint") not in notes:
            problems.add(
                f.path, "data", f"record {f.path!r} cites a checkpoint that is not in the bundle"
            )
            continue
        exchanges_ok += 1
        if result.exchange_id is not None:
            exchange_ids.append(result.exchange_id)
    if manifest.get("exchanges") != sum(f.path.startswith("exchanges/") for f in files):
        problems.add(MANIFEST, "data", "manifest.json: the exchange count does not match")
    return BundleCheck(
        path=path,
        problems=tuple(problems.items),
        trust=trust,
        bundle_id=manifest.get("bundle_id") if isinstance(manifest.get("bundle_id"), str) else None,
        origin=origin,
        kid=signer,
        created_at=manifest.get("created_at")
        if isinstance(manifest.get("created_at"), str)
        else None,
        files_verified=verified,
        exchanges_verified=exchanges_ok,
        checkpoints_verified=checkpoints_ok,
        exchange_ids=tuple(exchange_ids),
    )


def _check_signature(
    manifest: bytes,
    signature_doc: bytes,
    keys: Sequence[tuple[str, Ed25519PublicKey]],
    blob: bytes,
    problems: _Problems,
) -> str | None:
    """Verify manifest.sig over manifest.json; returns the signer's key id."""
    try:
        doc = orjson.loads(signature_doc)
        signature = base64.b64decode(doc["signature"], validate=True)
        kid = doc["kid"]
        if doc.get("alg") != "EdDSA" or not isinstance(kid, str):
            raise ValueError("not an EdDSA signature")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error):
        problems.add(SIGNATURE, "data", "manifest.sig is malformed")
        return None
    for candidate_kid, key in keys:
        try:
            key.verify(signature, manifest)
        except InvalidSignature:
            continue
        if candidate_kid != kid:
            problems.add(SIGNATURE, "data", f"manifest.sig names key {kid!r}, signed by another")
        return candidate_kid
    # name the altered one when a CRC-32 tells which (an accidental change leaves it stale)
    sig_offset = read_local_entry(blob, 0)[2]
    altered = [
        name
        for name, offset, content in (
            (MANIFEST, 0, manifest),
            (SIGNATURE, sig_offset, signature_doc),
        )
        if not _crc_ok(blob, offset, content)
    ]
    problems.add(
        altered or [MANIFEST, SIGNATURE],
        "data",
        "the manifest signature does not verify with "
        + ("the given keys" if keys else "any key")
        + ": manifest.json or manifest.sig was altered, or another key signed it",
    )
    return None
