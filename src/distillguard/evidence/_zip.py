"""A canonical ZIP container: one byte layout per list of (name, data), so that every byte of a
bundle is accounted for.

An evidence bundle is written with :func:`canonical_zip`: members stored (no compression, whose
output would depend on the zlib version), in the given order, with fixed timestamps and
attributes, no extra fields, no comments, no ZIP64. Any ZIP reader opens it. Because the layout
is a pure function of the members, a verifier that knows the members (from the signed manifest)
rebuilds the expected bytes and names the region of every byte that differs
(:func:`layout` gives the regions).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "LOCAL_HEADER_SIZE",
    "Region",
    "canonical_zip",
    "layout",
    "read_local_entry",
]

_LOCAL_SIG: Final = b"PK\x03\x04"
_CENTRAL_SIG: Final = b"PK\x01\x02"
_END_SIG: Final = b"PK\x05\x06"
_LOCAL: Final = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL: Final = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END: Final = struct.Struct("<4sHHHHIIH")
LOCAL_HEADER_SIZE: Final = _LOCAL.size  # 30 bytes before the name
_VERSION: Final = 20
_DOS_DATE: Final = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_DOS_TIME: Final = 0
_ATTRS: Final = (0o100644 << 16) & 0xFFFFFFFF
_MAX: Final = 0xFFFFFFFF

Part = Literal["local header", "data", "central directory", "end of central directory"]


@dataclass(frozen=True, slots=True)
class Region:
    """A byte range ``[start, end)`` of the container: which member and which part of it."""

    start: int
    end: int
    member: str | None
    part: Part

    def describe(self) -> str:
        """Human-readable name of the region."""
        if self.member is None:
            return f"the zip's {self.part}"
        if self.part == "data":
            return f"member {self.member!r}"
        return f"the {self.part} entry of member {self.member!r}"


def _check(name: str, data: bytes) -> bytes:
    encoded = name.encode("ascii")
    if not name or len(encoded) > 0xFFFF or len(data) >= _MAX:
        raise ValueError(f"cannot store member {name!r} in a canonical zip")
    return encoded


def canonical_zip(members: Sequence[tuple[str, bytes]]) -> bytes:
    """The canonical container of ``members`` (ASCII names, in this order)."""
    out = bytearray()
    central = bytearray()
    for name, data in members:
        encoded = _check(name, data)
        crc = zlib.crc32(data) & _MAX
        offset = len(out)
        out += _LOCAL.pack(
            _LOCAL_SIG, _VERSION, 0, 0, _DOS_TIME, _DOS_DATE, crc, len(data), len(data),
            len(encoded), 0,
        )  # fmt: skip
        out += encoded
        out += data
        central += _CENTRAL.pack(
            _CENTRAL_SIG, _VERSION, _VERSION, 0, 0, _DOS_TIME, _DOS_DATE, crc, len(data),
            len(data), len(encoded), 0, 0, 0, 0, _ATTRS, offset,
        )  # fmt: skip
        central += encoded
    cd_offset = len(out)
    out += central
    count = len(members)
    out += _END.pack(_END_SIG, 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def layout(members: Sequence[tuple[str, int]]) -> list[Region]:
    """The regions of the canonical container of members with these names and sizes."""
    regions: list[Region] = []
    pos = 0
    for name, size in members:
        header = LOCAL_HEADER_SIZE + len(name.encode("ascii"))
        regions.append(Region(pos, pos + header, name, "local header"))
        regions.append(Region(pos + header, pos + header + size, name, "data"))
        pos += header + size
    for name, _ in members:
        end = pos + _CENTRAL.size + len(name.encode("ascii"))
        regions.append(Region(pos, end, name, "central directory"))
        pos = end
    regions.append(Region(pos, pos + _END.size, None, "end of central directory"))
    return regions


def read_local_entry(blob: bytes, offset: int) -> tuple[str, bytes, int]:
    """Read the local entry at ``offset``: its name, its data and the offset after it.

    Only the fields needed to find the data are read (name and size); the canonical comparison
    checks the others.

    Raises:
        ValueError: there is no well-formed stored entry at ``offset``.
    """
    if offset + LOCAL_HEADER_SIZE > len(blob):
        raise ValueError(f"no entry at offset {offset}: the file ends")
    fields = _LOCAL.unpack_from(blob, offset)
    if fields[0] != _LOCAL_SIG:
        raise ValueError(f"no local header signature at offset {offset}")
    size, name_len, extra_len = fields[7], fields[9], fields[10]
    start = offset + LOCAL_HEADER_SIZE
    end = start + name_len + extra_len + size
    if end > len(blob):
        raise ValueError(f"entry at offset {offset} runs past the end of the file")
    try:
        name = blob[start : start + name_len].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"entry at offset {offset} has a name that is not ASCII") from None
    data = blob[start + name_len + extra_len : end]
    return name, data, end
