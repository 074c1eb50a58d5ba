"""One provenance check for any file: which of DistillGuard's signals it carries.

A :class:`ProvenanceChecker` holds what the tests need (the watermark keys, the text watermark
settings, the image configuration, the C2PA trust anchors, the significance level) and
:meth:`~ProvenanceChecker.check` runs, on one file, every test that applies to its kind:

* **text** (any UTF-8 file; JSONL/JSON/CSV/Parquet datasets pooled into one text), and the text
  of **PDF** and **DOCX** documents: the configured generation-time text watermark
  (``[watermark] scheme``) and the post-hoc lexical one (``cater``), under every key;
* **image**: the image watermark (blind, payload decoded) and the C2PA manifest;
* **video**: the video watermark pooled over all frames (payload decoded) and the C2PA
  manifest (MP4 and other ISO BMFF files).

Multiplicity: every watermark test of one file (schemes × keys) enters one Holm correction, so
the reported p-values are family-wise for the file: "some DistillGuard watermark is present".
The verdict line says what was found; absence of every signal is reported as "no signal", never
as proof that a file is not ours (a strong edit removes watermarks, any re-encoding drops C2PA).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from distillguard.config import ImageSettings, WatermarkSettings
from distillguard.errors import DistillGuardError, InputError
from distillguard.keyring import WatermarkKey
from distillguard.provenance._media import (
    MAX_TEXT_BYTES,
    MediaKind,
    document_text,
    is_dataset,
    sniff,
)

__all__ = [
    "FORMAT",
    "IMAGE_SCHEME",
    "VIDEO_SCHEME",
    "FileProvenance",
    "ProvenanceChecker",
    "Signal",
    "account_payload",
    "verdict",
]

logger = logging.getLogger(__name__)

#: The ``format`` of :meth:`FileProvenance.to_dict`, for readers (the evidence report).
FORMAT = "distillguard-provenance/v1"
#: Scheme names of the pixel watermarks (the image one is the name the C2PA assertion uses).
IMAGE_SCHEME = "distillguard-image-wm-v1"
VIDEO_SCHEME = "distillguard-video-wm-v1"

SignalKind = Literal["watermark", "c2pa"]


@dataclass(frozen=True)
class Signal:
    """One signal tested in a file.

    Attributes:
        kind: ``watermark`` or ``c2pa``.
        scheme: the watermark scheme (``kgw``, ``cater``, :data:`IMAGE_SCHEME`, ...) or ``c2pa``.
        present: the watermark was found at the checker's level (family-wise over the file's
            tests), or the manifest is ``trusted`` (its chain ends at one of our trust anchors:
            a merely ``valid`` manifest may have been signed by anyone).
        key_id: the watermark key of the best test, or the key named in the C2PA manifest.
        p_value: the Holm-adjusted p-value of the scheme's best key (watermarks only).
        payload: the decoded payload (pixel watermarks, only when found).
        state: the C2PA state (``absent``, ``invalid``, ``valid``, ``trusted``).
        detail: the underlying test's or manifest's fields.
        accounts: the candidate accounts whose payload (:func:`account_payload` under the key
            that found the mark) equals the decoded one; None when no candidates were given.
    """

    kind: SignalKind
    scheme: str
    present: bool
    key_id: str | None = None
    p_value: float | None = None
    payload: int | None = None
    state: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    accounts: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "scheme": self.scheme,
            "present": self.present,
            "key_id": self.key_id,
            "p_value": self.p_value,
            "payload": self.payload,
            "accounts": None if self.accounts is None else list(self.accounts),
            "state": self.state,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class FileProvenance:
    """What :meth:`ProvenanceChecker.check` found in one file.

    Attributes:
        file: the path as given.
        media: the kind read from the file's signature (``text``, ``image``, ``video``, ``pdf``,
            ``docx``, ``unknown``).
        sha256, size: of the file's bytes (so that a report can cite exactly this file).
        signals: every signal tested, present or not.
        p_value: the smallest adjusted watermark p-value (None when no watermark was tested).
        verdict: one line for people.
        alpha: the level the watermark tests were judged at.
        error: ``{"code", "message"}`` when the file could not be checked.
    """

    file: str
    media: MediaKind
    sha256: str | None
    size: int | None
    signals: tuple[Signal, ...]
    p_value: float | None
    verdict: str
    alpha: float
    error: dict[str, str] | None = None

    @property
    def found(self) -> bool:
        """Some signal of ours is present (a watermark, or a trusted manifest)."""
        return any(s.present for s in self.signals)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``format`` :data:`FORMAT`)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "file": self.file,
            "media": self.media,
            "sha256": self.sha256,
            "size": self.size,
            "found": self.found,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "verdict": self.verdict,
            "signals": [s.to_dict() for s in self.signals],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


TextDetector = tuple[str, str, Callable[[str], Any]]


def _holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


class ProvenanceChecker:
    """Tests files for every DistillGuard signal that applies to their kind.

    Args:
        keys: the watermark keys to try (every key of the keyring, retired ones included).
        watermark: the text watermark settings (``[watermark]``); the configured scheme and
            ``cater`` are tested.
        image: the image settings (``[image]``: watermark bits and strength).
        trust_anchors_pem: PEM trust anchors for C2PA (None: a valid manifest is ``valid``, not
            ``trusted``).
        alpha: significance level of the watermark tests (family-wise per file).
        accounts: candidate account ids: a decoded payload is mapped back to those whose
            :func:`account_payload` it equals (a 16-bit pointer: among ``n`` candidates about
            ``n / 65536`` match by chance).

    Raises:
        InputError: no key, or ``alpha`` outside (0, 1).
    """

    def __init__(
        self,
        keys: Sequence[WatermarkKey],
        *,
        watermark: WatermarkSettings | None = None,
        image: ImageSettings | None = None,
        trust_anchors_pem: str | None = None,
        alpha: float = 1e-3,
        accounts: Sequence[str] | None = None,
    ) -> None:
        if not keys:
            raise InputError("the provenance check needs at least one watermark key")
        if not 0.0 < alpha < 1.0:
            raise InputError(f"alpha must be in (0, 1), got {alpha}")
        self.keys = list(keys)
        self.watermark = watermark or WatermarkSettings()
        self.image = image or ImageSettings()
        self.trust_anchors_pem = trust_anchors_pem
        self.alpha = alpha
        self.accounts = None if accounts is None else list(dict.fromkeys(accounts))
        self._text: list[TextDetector] | None = None

    # ------------------------------------------------------------------ the one entry point

    def check(self, path: Path) -> FileProvenance:
        """Check one file; errors of the file (unreadable, corrupt, missing extra) are reported
        in the result, not raised."""
        media: MediaKind = "unknown"
        digest: str | None = None
        size: int | None = None
        try:
            media = sniff(path)
            digest, size = _digest(path)
            if media in ("text", "pdf", "docx"):
                text = self._read_text(path, media)
                signals = self._text_signals(text)
            elif media == "image":
                signals = self._image_signals(path)
            elif media == "video":
                signals = self._video_signals(path)
            else:
                raise InputError(
                    f"{path}: not a text, image, video, PDF or DOCX file",
                    hint="the file's first bytes match no supported signature",
                )
        except DistillGuardError as exc:
            return FileProvenance(
                file=str(path),
                media=media,
                sha256=digest,
                size=size,
                signals=(),
                p_value=None,
                verdict=f"not checked: {exc.message}",
                alpha=self.alpha,
                error={"code": exc.code, "message": exc.message},
            )
        signals = [self._with_accounts(s) for s in signals]
        tested = [s.p_value for s in signals if s.p_value is not None]
        return FileProvenance(
            file=str(path),
            media=media,
            sha256=digest,
            size=size,
            signals=tuple(signals),
            p_value=min(tested) if tested else None,
            verdict=verdict(signals, alpha=self.alpha),
            alpha=self.alpha,
        )

    def _with_accounts(self, signal: Signal) -> Signal:
        if self.accounts is None or signal.kind != "watermark" or signal.payload is None:
            return signal
        key = next((k for k in self.keys if k.kid == signal.key_id), None)
        if key is None:
            return signal
        matches = tuple(a for a in self.accounts if account_payload(key, a) == signal.payload)
        return replace(signal, accounts=matches)

    # ------------------------------------------------------------------ text

    def _read_text(self, path: Path, media: MediaKind) -> str:
        if media in ("pdf", "docx"):
            return document_text(path, media)
        if is_dataset(path):
            from distillguard.watermark import iter_records

            texts: list[str] = []
            total = 0
            try:
                for _, text in iter_records(path):
                    if text is None:
                        continue
                    texts.append(text)
                    total += len(text)
                    if total > MAX_TEXT_BYTES:
                        break
            except DistillGuardError:
                raise
            except (ValueError, KeyError, TypeError, OSError) as exc:  # incl. UnicodeDecodeError
                raise InputError(f"{path}: not a readable dataset ({exc})") from None
            return "\n\n".join(texts)[:MAX_TEXT_BYTES]
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_TEXT_BYTES)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        return raw.decode("utf-8", errors="replace")

    def _text_detectors(self) -> list[TextDetector]:
        if self._text is None:
            from distillguard.watermark import (
                CaterConfig,
                CaterWatermark,
                build_scheme,
                load_tokenizer,
            )

            detectors: list[TextDetector] = []
            tokenizer = load_tokenizer(self.watermark.tokenizer)
            for key in self.keys:
                scheme = build_scheme(self.watermark, key)
                detectors.append(
                    (self.watermark.scheme, key.kid, _token_detector(scheme, tokenizer))
                )
            for key in self.keys:
                cater = CaterWatermark(CaterConfig(), key=key)
                detectors.append(("cater", key.kid, cater.detect))
            self._text = detectors
        return self._text

    def _text_signals(self, text: str) -> list[Signal]:
        detectors = self._text_detectors()
        results = [run(text) for _, _, run in detectors]
        adjusted = _holm([float(r.p_value) for r in results])
        signals: list[Signal] = []
        for scheme in dict.fromkeys(name for name, _, _ in detectors):
            idx = [i for i, (name, _, _) in enumerate(detectors) if name == scheme]
            best = min(idx, key=lambda i: adjusted[i])
            result = results[best]
            detail = result.to_dict()
            detail["tests"] = len(results)
            detail["correction"] = "holm"
            payload = detail.get("details", {}).get("payload")
            signals.append(
                Signal(
                    kind="watermark",
                    scheme=scheme,
                    present=adjusted[best] <= self.alpha,
                    key_id=detectors[best][1],
                    p_value=adjusted[best],
                    payload=payload if isinstance(payload, int) else None,
                    detail=detail,
                )
            )
        return signals

    # ------------------------------------------------------------------ image

    def _image_signals(self, path: Path) -> list[Signal]:
        from distillguard.image import ImageWatermarkConfig, inspect_image

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        config = ImageWatermarkConfig(
            payload_bits=self.image.payload_bits,
            sync_bits=self.image.sync_bits,
            strength=self.image.strength,
        )
        report = inspect_image(
            data,
            keys=self.keys,
            config=config,
            alpha=self.alpha,
            trust_anchors_pem=self.trust_anchors_pem,
            name=str(path),
        )
        det = report.detection.to_dict()
        det["keys_tried"] = report.keys_tried
        mark = Signal(
            kind="watermark",
            scheme=IMAGE_SCHEME,
            present=report.detected,
            key_id=report.detection.kid,
            p_value=report.detection.p_value,
            payload=det["payload"] if report.detected else None,
            detail=det,
        )
        return [mark, _c2pa_signal(report.manifest.to_dict())]

    # ------------------------------------------------------------------ video

    def _video_signals(self, path: Path) -> list[Signal]:
        from distillguard.video import inspect_video

        report = inspect_video(
            path, keys=self.keys, alpha=self.alpha, trust_anchors_pem=self.trust_anchors_pem
        )
        det = report.detection.to_dict()
        det["keys_tried"] = report.keys_tried
        mark = Signal(
            kind="watermark",
            scheme=VIDEO_SCHEME,
            present=report.detected,
            key_id=report.detection.kid,
            p_value=report.detection.p_value,
            payload=report.detection.payload if report.detected else None,
            detail=det,
        )
        return [mark, _c2pa_signal(report.manifest.to_dict())]


def account_payload(key: WatermarkKey, account_id: str, *, bits: int = 16) -> int:
    """The payload the gateway embeds for ``account_id`` under ``key``: a keyed hash of the
    account id (HMAC-SHA-256 of ``payload:`` + id, first 8 bytes, ``bits`` bits), the same as
    :func:`distillguard.gateway.policy.payload_for` (tested equal)."""
    digest = hmac.new(key.secret, b"payload:" + account_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (1 << bits)


def _token_detector(scheme: Any, tokenizer: Any) -> Callable[[str], Any]:
    def run(text: str) -> Any:
        return scheme.detect(tokenizer.encode(text))

    return run


def _c2pa_signal(manifest: dict[str, Any]) -> Signal:
    state = str(manifest["state"])
    return Signal(
        kind="c2pa",
        scheme="c2pa",
        present=state == "trusted",
        key_id=manifest.get("watermark_kid"),
        state=state,
        detail=manifest,
    )


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sha.hexdigest(), size


def verdict(signals: Sequence[Signal], *, alpha: float) -> str:
    """One line for people: which signals are present, with the payload, key and p-value."""
    marks = [s for s in signals if s.kind == "watermark"]
    found = [s for s in marks if s.present]
    manifest = next((s for s in signals if s.kind == "c2pa"), None)
    parts: list[str] = []
    for s in found:
        text = f"watermark {s.scheme} (key {s.key_id}"
        if s.payload is not None:
            text += f", payload {s.payload}"
        if s.accounts is not None:
            text += f", accounts {', '.join(s.accounts) or 'none of the candidates'}"
        parts.append(text + f", p = {s.p_value:.1e})")
    if manifest is not None and manifest.state == "trusted":
        parts.append(f"C2PA manifest trusted (signer {manifest.detail.get('signer')})")
    tail = ""
    if manifest is not None and manifest.state == "valid":
        tail = (
            f"; a valid C2PA manifest signed by {manifest.detail.get('signer')!r}, not checked"
            " against trust anchors"
        )
    if manifest is not None and manifest.state == "invalid":
        codes = ", ".join(manifest.detail.get("failures") or []) or "failed"
        tail = f"; C2PA manifest present but INVALID ({codes})"
    if parts:
        return "DistillGuard signals: " + "; ".join(parts) + tail
    best = min((s.p_value for s in marks if s.p_value is not None), default=None)
    tested = ", ".join(dict.fromkeys(s.scheme for s in marks))
    line = f"no DistillGuard signal (watermarks {tested} not found at {alpha:g}"
    if best is not None:
        line += f", smallest p = {best:.2g}"
    line += ")"
    if manifest is not None and manifest.state == "absent":
        line += "; no C2PA manifest"
    return line + tail
