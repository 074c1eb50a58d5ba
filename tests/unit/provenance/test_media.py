"""File kinds from signatures, and the text of DOCX and PDF documents (bad input included)."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from distillguard.errors import DependencyMissingError, InputError
from distillguard.provenance import _media, document_text, sniff

FIXTURE = [HealthCheck.function_scoped_fixture]
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_bytes(paragraphs: list[str], *, xml: bytes | None = None) -> bytes:
    """A minimal WordprocessingML document (what Word and LibreOffice read)."""
    body = "".join(f'<w:p><w:r><w:t xml:space="preserve">{p}</w:t></w:r></w:p>' for p in paragraphs)
    doc = (
        xml
        or (
            f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
        ).encode()
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"/>',
        )
        z.writestr("word/document.xml", doc)
    return out.getvalue()


def pdf_bytes(lines: list[str]) -> bytes:
    """A minimal one-page PDF (Helvetica, one text line per entry; ASCII text without
    parentheses or backslashes), built by hand with a correct cross-reference table."""
    ops = "".join(f"({line}) Tj T* " for line in lines)
    content = f"BT /F1 10 Tf 12 TL 36 800 Td {ops}ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (image_bytes("PNG"), "image"),
        (image_bytes("JPEG"), "image"),
        (image_bytes("WEBP"), "image"),
        (image_bytes("TIFF"), "image"),
        (image_bytes("GIF"), "image"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video"),
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00", "image"),
        (b"\x1a\x45\xdf\xa3" + b"\x00" * 40, "video"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video"),
        ((b"\x47" + b"\x00" * 187) * 3, "video"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
        (docx_bytes(["hello"]), "docx"),
        (b"PK\x03\x04 not a zip", "unknown"),
        ("Plain text, with accents: é ü ß.".encode(), "text"),
        (b"\xff\xfe\x00t\x00e", "unknown"),
        (b"", "text"),
    ],
)
def test_sniff_signatures(tmp_path: Path, data: bytes, kind: str) -> None:
    path = tmp_path / "f.bin"  # the suffix is never what decides
    path.write_bytes(data)
    assert sniff(path) == kind


def test_sniff_utf8_cut_by_the_window(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(("a" * 4095 + "é" * 10).encode())  # é straddles byte 4096
    assert sniff(path) == "text"


def test_sniff_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        sniff(tmp_path / "missing")


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE)
@given(data=st.binary(max_size=600))
def test_sniff_never_fails_on_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x"
    path.write_bytes(data)
    assert sniff(path) in ("text", "image", "video", "pdf", "docx", "unknown")


def test_docx_text(tmp_path: Path) -> None:
    path = tmp_path / "a.docx"
    path.write_bytes(docx_bytes(["First paragraph.", "Second &amp; last."]))
    assert sniff(path) == "docx"
    assert document_text(path, "docx") == "First paragraph.\nSecond & last."


def test_docx_tabs_breaks_and_runs(tmp_path: Path) -> None:
    xml = (
        f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>a</w:t><w:tab/><w:t>b</w:t>'
        "</w:r><w:r><w:br/><w:t>c</w:t></w:r></w:p></w:body></w:document>"
    ).encode()
    path = tmp_path / "b.docx"
    path.write_bytes(docx_bytes([], xml=xml))
    assert document_text(path, "docx") == "a\tb\nc"


def test_docx_refuses_dtd_and_bad_xml(tmp_path: Path) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        + f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p>'.encode()
        + b"</w:body></w:document>"
    )
    path = tmp_path / "c.docx"
    path.write_bytes(docx_bytes([], xml=bomb))
    with pytest.raises(InputError, match="DTD"):
        document_text(path, "docx")
    path.write_bytes(docx_bytes([], xml=b"<w:document><unclosed>"))
    with pytest.raises(InputError, match="well-formed"):
        document_text(path, "docx")


def test_docx_truncated_and_oversized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = docx_bytes(["x" * 5000])
    path = tmp_path / "d.docx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        document_text(path, "docx")
    path.write_bytes(data)
    monkeypatch.setattr(_media, "MAX_DOCX_XML", 1000)
    with pytest.raises(InputError, match="uncompressed"):
        document_text(path, "docx")


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE)
@given(xml=st.binary(max_size=400))
def test_docx_arbitrary_document_xml(tmp_path: Path, xml: bytes) -> None:
    path = tmp_path / "h.docx"
    path.write_bytes(docx_bytes([], xml=xml or b" "))
    with contextlib.suppress(InputError):
        assert isinstance(document_text(path, "docx"), str)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_docx_corrupted_bytes(tmp_path: Path, cut: int, flip: int) -> None:
    data = bytearray(docx_bytes(["some words here"] * 20))
    data[cut % len(data)] ^= flip
    path = tmp_path / "k.docx"
    path.write_bytes(bytes(data))
    with contextlib.suppress(InputError):
        assert isinstance(document_text(path, "docx"), str)


def test_pdf_without_pypdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_pypdf(name: str, *args: object, **kwargs: object) -> object:
        if name == "pypdf":
            raise ModuleNotFoundError("No module named 'pypdf'", name="pypdf")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pypdf)
    path = tmp_path / "a.pdf"
    path.write_bytes(b"%PDF-1.7\n")
    with pytest.raises(DependencyMissingError, match="pypdf"):
        document_text(path, "pdf")


def test_pdf_text_built_by_hand(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    path = tmp_path / "h.pdf"
    path.write_bytes(pdf_bytes(["First line of the memo", "second line here"]))
    assert sniff(path) == "pdf"
    text = document_text(path, "pdf")
    assert "First line of the memo" in text and "second line here" in text


@pytest.mark.parametrize("cut", [0.9, 0.5, 0.1])
def test_pdf_truncated_is_input_error(tmp_path: Path, cut: float) -> None:
    pytest.importorskip("pypdf")
    data = pdf_bytes(["some words here"] * 20)
    path = tmp_path / "t.pdf"
    path.write_bytes(data[: int(len(data) * cut)])
    with contextlib.suppress(InputError):  # pypdf may recover part of a truncated file
        assert isinstance(document_text(path, "pdf"), str)
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    with pytest.raises(InputError):
        document_text(path, "pdf")


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_pdf_corrupted_bytes(tmp_path: Path, cut: int, flip: int) -> None:
    pytest.importorskip("pypdf")
    data = bytearray(pdf_bytes(["some words here"] * 20))
    data[cut % len(data)] ^= flip
    path = tmp_path / "k.pdf"
    path.write_bytes(bytes(data))
    with contextlib.suppress(InputError):
        assert isinstance(document_text(path, "pdf"), str)


def test_pdf_text_and_corrupt_pdf(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    weasyprint = pytest.importorskip("weasyprint")
    path = tmp_path / "r.pdf"
    weasyprint.HTML(string="<p>Provenance of a report, page one.</p>").write_pdf(path)
    assert "Provenance of a report" in document_text(path, "pdf")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError):
        document_text(path, "pdf")


def test_not_a_document(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        document_text(tmp_path / "x", "image")
