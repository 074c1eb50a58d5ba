"""What kind of file a suspect is, and the text of a document.

:func:`sniff` reads a file's first bytes (its signature) and falls back on the suffix only for
plain text; :func:`document_text` extracts the text of a DOCX (the standard library's ZIP and
XML readers, with size limits) or a PDF (``pypdf``, optional).
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

from distillguard.errors import DependencyMissingError, InputError

__all__ = ["MAX_TEXT_BYTES", "MediaKind", "document_text", "is_dataset", "sniff"]

logger = logging.getLogger(__name__)

MediaKind = Literal["text", "image", "video", "pdf", "docx", "unknown"]

#: Largest text (a text file, or the text extracted from a document) that is tested, in bytes.
MAX_TEXT_BYTES = 16 * 1024 * 1024
#: Largest uncompressed ``word/document.xml`` read from a DOCX (a ZIP bomb stops here).
MAX_DOCX_XML = 64 * 1024 * 1024
#: Largest number of PDF pages read.
MAX_PDF_PAGES = 2000

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DATASET_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def sniff(path: Path) -> MediaKind:
    """The kind of ``path`` from its leading bytes (signatures of PNG, JPEG, GIF, WebP, TIFF,
    BMP, ISO BMFF (MP4, MOV, M4V), Matroska/WebM, AVI, MPEG-TS, PDF and DOCX), else ``text`` for
    UTF-8 without NUL bytes (and Parquet by suffix), else ``unknown``.

    Raises:
        InputError: the file cannot be read.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
        return "image"
    if head[:6] in (b"GIF87a", b"GIF89a") or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "image" if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1") else "video"
    if head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "video"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "docx" if _is_docx(path) else "unknown"
    if path.suffix.lower() == ".parquet" and head.startswith(b"PAR1"):
        return "text"
    if b"\x00" in head:
        return "unknown"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the end of a full 4096-byte window is still text
        if len(head) < 4096 or exc.start < len(head) - 4:
            return "unknown"
    return "text"


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False


def is_dataset(path: Path) -> bool:
    """A dataset file (JSONL, JSON, CSV, Parquet) whose records' texts are tested together."""
    return path.suffix.lower() in _DATASET_SUFFIXES


def document_text(path: Path, kind: MediaKind) -> str:
    """The text of a DOCX (paragraphs of the main document, one a line) or a PDF (its pages'
    text, in order), at most :data:`MAX_TEXT_BYTES`.

    Raises:
        InputError: a corrupt, encrypted or oversized document; DependencyMissingError: a PDF
            without ``pypdf`` installed.
    """
    if kind == "docx":
        return _docx_text(path)
    if kind == "pdf":
        return _pdf_text(path)
    raise InputError(f"{path}: not a document ({kind})")


def _docx_text(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > MAX_DOCX_XML:
                raise InputError(
                    f"{path}: word/document.xml is {info.file_size} bytes uncompressed, "
                    f"more than {MAX_DOCX_XML}"
                )
            with archive.open(info) as fh:
                xml = fh.read(MAX_DOCX_XML + 1)
    except InputError:
        raise
    except (
        OSError,
        KeyError,
        zipfile.BadZipFile,
        ValueError,
        EOFError,
        zlib.error,
        NotImplementedError,  # an unsupported compression method
        RuntimeError,  # an encrypted member
    ) as exc:
        raise InputError(f"{path}: not a readable DOCX ({exc})") from None
    if len(xml) > MAX_DOCX_XML:
        raise InputError(f"{path}: word/document.xml is larger than {MAX_DOCX_XML} bytes")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        # WordprocessingML never declares a DTD; refusing one rules out entity expansion
        raise InputError(f"{path}: word/document.xml declares a DTD, refused")
    paragraphs: list[str] = []
    current: list[str] = []
    try:
        for event, elem in ElementTree.iterparse(io.BytesIO(xml), events=("start", "end")):
            if event == "start":
                continue
            if elem.tag == f"{_W}t" and elem.text:
                current.append(elem.text)
            elif elem.tag == f"{_W}tab":
                current.append("\t")
            elif elem.tag in (f"{_W}br", f"{_W}cr"):
                current.append("\n")
            elif elem.tag == f"{_W}p":
                paragraphs.append("".join(current))
                current = []
                elem.clear()
    except ElementTree.ParseError as exc:
        raise InputError(f"{path}: word/document.xml is not well-formed XML ({exc})") from None
    if current:
        paragraphs.append("".join(current))
    return _cap("\n".join(paragraphs))


def _pdf_text(path: Path) -> str:
    try:
        import pypdf  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError:
        raise DependencyMissingError(
            "reading the text of a PDF needs pypdf",
            hint="pip install 'distillguard[documents]' (or pip install pypdf)",
        ) from None
    pages: list[str] = []
    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            raise InputError(f"{path}: the PDF is encrypted")
        for index, page in enumerate(reader.pages):
            if index >= MAX_PDF_PAGES:
                logger.warning("%s: only the first %d pages are read", path, MAX_PDF_PAGES)
                break
            pages.append(page.extract_text() or "")
            if sum(len(p) for p in pages) > MAX_TEXT_BYTES:
                break
    except InputError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...)
        raise InputError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from None
    return _cap("\n".join(pages))


def _cap(text: str) -> str:
    return text[:MAX_TEXT_BYTES]
