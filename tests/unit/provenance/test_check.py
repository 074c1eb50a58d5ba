"""ProvenanceChecker: every signal of every kind of file, bad files, and exact p-values."""

from __future__ import annotations

import io
import json
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from distillguard.image import make_test_credentials, protect_image, synthetic_image
from distillguard.keyring import WatermarkKey
from distillguard.provenance import FORMAT, IMAGE_SCHEME, ProvenanceChecker, verdict
from distillguard.provenance._check import _holm
from distillguard.watermark import (
    CaterConfig,
    CaterWatermark,
    KGWConfig,
    KGWWatermark,
    WordTokenizer,
)
from distillguard.watermark._scheme import softmax
from tests.unit.provenance.test_media import docx_bytes, pdf_bytes

VOCAB = [f"word{i}" for i in range(400)]


def make_key(seed: int) -> WatermarkKey:
    secret = np.random.default_rng(seed).bytes(32)
    return WatermarkKey(kid=f"wm-prov-{seed}", created_at=datetime.now(UTC), secret=secret)


KEY = make_key(11)
OTHER = make_key(12)


def marked_text(key: WatermarkKey, n: int, seed: int) -> str:
    """Words from a synthetic LM over VOCAB, KGW-marked (word tokenizer)."""
    wm = KGWWatermark(KGWConfig(), key=key)
    tok = WordTokenizer()
    ids = np.array([tok.word_id(w) for w in VOCAB])
    rng = np.random.default_rng(seed)
    out = ["word0"]
    for _ in range(n):
        logits = wm.process_candidates([tok.word_id(out[-1])], ids, rng.normal(size=len(VOCAB)))
        out.append(VOCAB[int(rng.choice(len(VOCAB), p=softmax(logits)))])
    return " ".join(out)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def creds() -> object:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return make_test_credentials(Ed25519PrivateKey.generate())


def test_text_kgw_found_with_key_and_holm(tmp_path: Path) -> None:
    path = tmp_path / "answer.txt"
    path.write_text(marked_text(KEY, 250, seed=1))
    result = ProvenanceChecker([OTHER, KEY]).check(path)
    assert result.media == "text" and result.found
    kgw = next(s for s in result.signals if s.scheme == "kgw")
    assert kgw.present and kgw.key_id == KEY.kid and kgw.p_value is not None
    assert kgw.detail["tests"] == 4  # two keys × (kgw, cater)
    assert kgw.p_value >= kgw.detail["p_value"]  # adjusted at least the raw one
    assert "watermark kgw" in result.verdict and KEY.kid in result.verdict
    cater = next(s for s in result.signals if s.scheme == "cater")
    assert not cater.present
    doc = result.to_dict()
    assert doc["format"] == FORMAT and json.loads(json.dumps(doc)) == doc
    assert doc["sha256"] and doc["size"] == path.stat().st_size


def test_text_post_hoc_scheme_and_clean_text(tmp_path: Path) -> None:
    text = (
        "However, this method often helps people. We typically use a simple approach, "
        "and the main benefits are obvious. Additionally, it is important to begin early. "
    ) * 6
    marked = CaterWatermark(CaterConfig(), key=KEY).embed(text).text
    (tmp_path / "m.md").write_text(marked)
    (tmp_path / "c.md").write_text(text)
    checker = ProvenanceChecker([KEY])
    found = checker.check(tmp_path / "m.md")
    assert found.found and [s.scheme for s in found.signals if s.present] == ["cater"]
    clean = checker.check(tmp_path / "c.md")
    assert not clean.found and clean.verdict.startswith("no DistillGuard signal")


def test_dataset_records_pooled(tmp_path: Path) -> None:
    rows = [{"output": marked_text(KEY, 60, seed=s)} for s in range(5)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ProvenanceChecker([KEY]).check(path)
    assert result.media == "text" and result.found
    assert next(s for s in result.signals if s.scheme == "kgw").detail["n_tokens"] > 250


def test_docx_text_checked(tmp_path: Path) -> None:
    path = tmp_path / "memo.docx"
    path.write_bytes(docx_bytes([marked_text(KEY, 250, seed=3)]))
    result = ProvenanceChecker([KEY]).check(path)
    assert result.media == "docx" and result.found


def test_pdf_text_checked(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    words = marked_text(KEY, 250, seed=5).split()
    lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
    path = tmp_path / "memo.pdf"
    path.write_bytes(pdf_bytes(lines))
    result = ProvenanceChecker([KEY]).check(path)
    assert result.media == "pdf" and result.error is None and result.found
    kgw = next(s for s in result.signals if s.scheme == "kgw")
    assert kgw.present and kgw.key_id == KEY.kid
    clean = tmp_path / "clean.pdf"
    clean.write_bytes(
        pdf_bytes([" ".join(f"word{i}" for i in range(j, j + 10)) for j in range(25)])
    )
    assert not ProvenanceChecker([KEY]).check(clean).found


def test_corrupt_pdf_is_an_error_row(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    data = pdf_bytes([marked_text(KEY, 40, seed=7)])
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    result = ProvenanceChecker([KEY]).check(path)
    assert result.media == "pdf" and result.error is not None
    assert result.error["code"].startswith("DG2") and not result.found
    assert result.verdict.startswith("not checked")
    path.write_bytes(data[: len(data) // 3])
    result = ProvenanceChecker([KEY]).check(path)  # an error row or a partial read; never raises
    assert result.media == "pdf" and (result.error is not None or not result.found)


def test_image_watermark_and_trusted_manifest(tmp_path: Path, creds: object) -> None:
    pixels = synthetic_image(seed=4, width=384, height=320)
    signed = protect_image(
        png(pixels),
        payload=4242,
        key=KEY,
        credentials=creds.credentials,  # type: ignore[attr-defined]
    )
    (tmp_path / "signed.png").write_bytes(signed)
    checker = ProvenanceChecker([KEY], trust_anchors_pem=creds.ca_pem)  # type: ignore[attr-defined]
    result = checker.check(tmp_path / "signed.png")
    mark, manifest = result.signals
    assert mark.scheme == IMAGE_SCHEME and mark.present and mark.payload == 4242
    assert manifest.state == "trusted" and manifest.present and manifest.key_id == KEY.kid
    assert "payload 4242" in result.verdict and "C2PA manifest trusted" in result.verdict
    # without trust anchors the manifest is valid, which is not counted as ours
    plain = ProvenanceChecker([KEY]).check(tmp_path / "signed.png")
    assert plain.signals[1].state == "valid" and not plain.signals[1].present
    assert "not checked against trust anchors" in plain.verdict


def test_tampered_and_clean_images(tmp_path: Path, creds: object) -> None:
    pixels = synthetic_image(seed=5, width=320, height=256)
    signed = protect_image(
        png(pixels),
        payload=7,
        key=KEY,
        credentials=creds.credentials,  # type: ignore[attr-defined]
    )
    # a text chunk added before IEND: the PNG still decodes, the manifest's hash breaks
    text = b"tEXtComment\x00edited"
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    end = signed.rfind(b"IEND") - 4
    (tmp_path / "tampered.png").write_bytes(signed[:end] + chunk + signed[end:])
    (tmp_path / "clean.png").write_bytes(png(pixels))
    checker = ProvenanceChecker([KEY], trust_anchors_pem=creds.ca_pem)  # type: ignore[attr-defined]
    tampered = checker.check(tmp_path / "tampered.png")
    assert tampered.error is None and tampered.signals[0].present
    assert tampered.signals[1].state == "invalid" and not tampered.signals[1].present
    assert "INVALID (assertion.dataHash.mismatch" in tampered.verdict
    clean = checker.check(tmp_path / "clean.png")
    assert not clean.found and clean.signals[0].payload is None
    assert clean.signals[1].state == "absent" and "no C2PA manifest" in clean.verdict


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def test_bad_files_are_reported_not_raised(tmp_path: Path) -> None:
    good = png(synthetic_image(seed=6, width=256, height=256))
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "huge.png").write_bytes(_png_header(200_000, 200_000) + b"\x00" * 64)
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "trunc.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    checker = ProvenanceChecker([KEY])
    for name, code in (
        ("trunc.png", "DG230"),
        ("huge.png", "DG230"),
        ("blob.bin", "DG200"),
        ("missing.txt", "DG200"),
    ):
        result = checker.check(tmp_path / name)
        assert result.error is not None and result.error["code"] == code, name
        assert not result.found and result.verdict.startswith("not checked")
    pytest.importorskip("av")
    result = checker.check(tmp_path / "trunc.mp4")
    assert result.media == "video" and result.error is not None


def test_checker_arguments() -> None:
    from distillguard.errors import InputError

    with pytest.raises(InputError):
        ProvenanceChecker([])
    with pytest.raises(InputError):
        ProvenanceChecker([KEY], alpha=1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_properties(p: list[float]) -> None:
    adjusted = _holm(p)
    assert all(a >= q - 1e-15 and a <= 1.0 for a, q in zip(adjusted, p, strict=True))
    order = sorted(range(len(p)), key=lambda i: p[i])
    assert all(adjusted[order[i]] <= adjusted[order[i + 1]] for i in range(len(p) - 1))
    assert min(adjusted) == pytest.approx(min(1.0, len(p) * min(p)))


def test_clean_text_false_positive_rate(tmp_path: Path) -> None:
    """P(p <= a) <= a on unmarked texts, over fresh keys (the family-wise p of a file)."""
    rng = np.random.default_rng(99)
    n = 300
    p_values = []
    for i in range(n):
        path = tmp_path / f"t{i}.txt"
        path.write_text(" ".join(rng.choice(VOCAB, 80)))
        result = ProvenanceChecker([make_key(1000 + i), make_key(5000 + i)]).check(path)
        assert result.p_value is not None
        p_values.append(result.p_value)
    arr = np.array(p_values)
    for a in (0.01, 0.05, 0.2):
        # binomial slack: mean + 3 standard deviations
        assert (arr <= a).sum() <= n * a + 3 * np.sqrt(n * a * (1 - a)), a


def test_verdict_lines() -> None:
    from distillguard.provenance import Signal

    none = verdict([Signal(kind="watermark", scheme="kgw", present=False, p_value=0.5)], alpha=1e-3)
    assert none == "no DistillGuard signal (watermarks kgw not found at 0.001, smallest p = 0.5)"
    both = verdict(
        [
            Signal(kind="watermark", scheme="x", present=True, key_id="k", p_value=1e-9, payload=3),
            Signal(
                kind="c2pa", scheme="c2pa", present=True, state="trusted", detail={"signer": "S"}
            ),
        ],
        alpha=1e-3,
    )
    assert both == (
        "DistillGuard signals: watermark x (key k, payload 3, p = 1.0e-09); "
        "C2PA manifest trusted (signer S)"
    )


def test_payload_maps_back_to_accounts(tmp_path: Path) -> None:
    from distillguard.provenance import account_payload

    candidates = [f"acct-{i}" for i in range(50)]
    payload = account_payload(KEY, "acct-7")
    pixels = synthetic_image(seed=8, width=320, height=256)
    marked = protect_image(png(pixels), payload=payload, key=KEY)
    (tmp_path / "m.png").write_bytes(marked)
    result = ProvenanceChecker([OTHER, KEY], accounts=candidates).check(tmp_path / "m.png")
    mark = result.signals[0]
    assert mark.present and mark.payload == payload and mark.accounts is not None
    assert "acct-7" in mark.accounts and "acct-7" in result.verdict
    assert result.to_dict()["signals"][0]["accounts"] == list(mark.accounts)
    # no candidates given: no mapping; C2PA signals never carry one
    assert ProvenanceChecker([KEY]).check(tmp_path / "m.png").signals[0].accounts is None
    assert result.signals[1].accounts is None


def test_account_payload_is_the_gateways() -> None:
    pytest.importorskip("fastapi")
    from distillguard.gateway.policy import payload_for
    from distillguard.provenance import account_payload

    for account in ("a", "acct-42", "ü-ñ", "x" * 300):
        assert account_payload(KEY, account) == payload_for(KEY.secret, account)


_PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF-1.4\n", b"PK\x03\x04", b"RIFF"]


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.sampled_from(_PREFIXES),
    body=st.binary(max_size=300),
    suffix=st.sampled_from([".txt", ".png", ".mp4", ".pdf", ".docx", ".jsonl", ""]),
)
def test_check_never_raises_on_arbitrary_bytes(prefix: bytes, body: bytes, suffix: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(prefix + body)
        result = ProvenanceChecker([KEY]).check(path)
    assert result.error is not None or result.signals
    assert json.loads(json.dumps(result.to_dict()))["file"] == str(path)
    if result.error is None:
        assert not result.found  # random bytes carry no signal of ours at 1e-3


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(max_size=200),
    suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ".md"]),
)
def test_datasets_and_text_never_raise(text: str, suffix: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_text(text, encoding="utf-8")
        result = ProvenanceChecker([KEY]).check(path)
    assert result.error is None or result.error["code"].startswith("DG2")
    assert not result.found
