"""RFC 9530 Content-Digest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.passport._digest import (
    DigestAlgorithm,
    DigestStatus,
    check_content_digest,
    make_content_digest,
)

HELLO = b'{"hello": "world"}'


def test_rfc_examples() -> None:
    # RFC 9530 section 2 (sha-256) and RFC 9421 Appendix B.2 test request (sha-512)
    assert make_content_digest(HELLO) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    sha512 = (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNN"
        "yealdVLvRwEmTHWXvJwew==:"
    )
    assert make_content_digest(HELLO, algorithms=(DigestAlgorithm.SHA512,)) == sha512
    assert check_content_digest(sha512, HELLO).ok


def test_every_supported_digest_must_match() -> None:
    good = make_content_digest(HELLO)
    wrong512 = make_content_digest(b"other", algorithms=(DigestAlgorithm.SHA512,))
    assert check_content_digest(f"{good}, {wrong512}", HELLO).status is DigestStatus.MISMATCH
    assert check_content_digest(f"md5=:AAAA:, {good}", HELLO).ok
    assert check_content_digest("md5=:AAAA:", HELLO).status is DigestStatus.UNSUPPORTED
    assert check_content_digest("sha-256=1", HELLO).status is DigestStatus.MALFORMED
    assert check_content_digest("sha-256=:", HELLO).status is DigestStatus.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.binary(min_size=1, max_size=50))
def test_digest_detects_changes(body: bytes, extra: bytes) -> None:
    field = make_content_digest(body, algorithms=(DigestAlgorithm.SHA256, DigestAlgorithm.SHA512))
    assert check_content_digest(field, body).ok
    assert check_content_digest(field, body + extra).status is DigestStatus.MISMATCH


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_fields_never_crash(field: str) -> None:
    assert check_content_digest(field, HELLO).status in set(DigestStatus)
