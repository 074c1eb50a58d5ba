"""One provenance check for any file: which of DistillGuard's signals it carries.

:class:`ProvenanceChecker` tests a text (or dataset), an image, a video, a PDF or a DOCX for
every signal that applies: the text watermarks (configured scheme and ``cater``), the image and
video watermarks (payload decoded), and the C2PA manifest with its trust state. All watermark
tests of one file share one Holm correction; :class:`FileProvenance` gives every signal, the
smallest p-value and a one-line verdict, and ``to_dict()`` a JSON form (format
:data:`FORMAT`) that an evidence report can cite by the file's SHA-256.

Example::

    from distillguard.provenance import ProvenanceChecker

    checker = ProvenanceChecker(ring.watermark_keys(), trust_anchors_pem=ca_pem)
    result = checker.check(Path("suspect.png"))
    result.found, result.verdict, [s.to_dict() for s in result.signals]

``distillguard provenance FILE...`` is the command. See ``docs/multimodal.md``.
"""

from __future__ import annotations

from distillguard.provenance._check import (
    FORMAT,
    IMAGE_SCHEME,
    VIDEO_SCHEME,
    FileProvenance,
    ProvenanceChecker,
    Signal,
    account_payload,
    verdict,
)
from distillguard.provenance._media import MediaKind, document_text, sniff

__all__ = [
    "FORMAT",
    "IMAGE_SCHEME",
    "VIDEO_SCHEME",
    "FileProvenance",
    "MediaKind",
    "ProvenanceChecker",
    "Signal",
    "account_payload",
    "document_text",
    "sniff",
    "verdict",
]
