"""RFC 9530 ``Content-Digest``: create and check digests of HTTP message content.

The field is a structured Dictionary mapping an algorithm to a Byte Sequence, e.g.
``sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:``. Only the algorithms of the IANA
registry marked "Active" are accepted (``sha-256``, ``sha-512``); a field that names only
unknown or deprecated algorithms is refused, since it proves nothing.

Example::

    >>> make_content_digest(b'{"hello": "world"}')
    'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:'
    >>> check_content_digest('sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
    ...                      b'{"hello": "world"}').ok
    True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from distillguard.errors import StructuredFieldError
from distillguard.passport._sfv import Item, Limits, parse_dictionary, serialize_dictionary

__all__ = [
    "DigestAlgorithm",
    "DigestCheck",
    "DigestStatus",
    "check_content_digest",
    "make_content_digest",
]

_LIMITS = Limits(max_length=2048, max_members=8, max_inner=0, max_params=4)


class DigestAlgorithm(StrEnum):
    """Active algorithms of the RFC 9530 Hash Algorithms for HTTP Digest Fields registry."""

    SHA256 = "sha-256"
    SHA512 = "sha-512"


_HASHES = {DigestAlgorithm.SHA256: hashlib.sha256, DigestAlgorithm.SHA512: hashlib.sha512}


class DigestStatus(StrEnum):
    """Outcome of :func:`check_content_digest`."""

    OK = "ok"
    MISMATCH = "mismatch"
    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class DigestCheck:
    """Result of checking a ``Content-Digest`` field against content.

    Attributes:
        status: the outcome.
        algorithms: the supported algorithms that were checked.
        reason: why it failed, for people (empty when ``ok``).
    """

    status: DigestStatus
    algorithms: tuple[DigestAlgorithm, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when every supported digest in the field matches the content."""
        return self.status is DigestStatus.OK


def make_content_digest(
    content: bytes, *, algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256,)
) -> str:
    """The ``Content-Digest`` field value for ``content`` with the given algorithms."""
    members = {str(a): Item(_HASHES[a](content).digest()) for a in algorithms}
    return serialize_dictionary(members)


def check_content_digest(field_value: str, content: bytes) -> DigestCheck:
    """Check a ``Content-Digest`` field against ``content``.

    Every supported algorithm present must match (a client cannot hide a wrong sha-512 behind a
    right sha-256); unknown algorithms are ignored; at least one supported one is required.
    Never raises on bad input: the problem is in the returned status.
    """
    try:
        members = parse_dictionary(field_value, limits=_LIMITS)
    except StructuredFieldError as exc:
        return DigestCheck(DigestStatus.MALFORMED, reason=str(exc))
    checked: list[DigestAlgorithm] = []
    for name, member in members.items():
        try:
            algorithm = DigestAlgorithm(name)
        except ValueError:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            return DigestCheck(DigestStatus.MALFORMED, reason=f"{name} is not a byte sequence")
        expected = _HASHES[algorithm](content).digest()
        if not hmac.compare_digest(expected, member.value):
            return DigestCheck(
                DigestStatus.MISMATCH, (algorithm,), reason=f"{name} digest does not match"
            )
        checked.append(algorithm)
    if not checked:
        return DigestCheck(DigestStatus.UNSUPPORTED, reason="no sha-256 or sha-512 digest")
    return DigestCheck(DigestStatus.OK, tuple(checked))
