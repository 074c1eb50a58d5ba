"""RFC 3339 timestamps: strict parsing and the canonical UTC form DistillGuard writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "format_ts", "from_micros", "parse_rfc3339", "to_micros"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ZERO = timedelta(0)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (microsecond precision).

    Offsets other than ``Z`` are accepted and converted to UTC; digits beyond microseconds are
    truncated.

    Raises:
        ValueError: not an RFC 3339 timestamp; the message says why (e.g. no time zone).
    """
    if not _RFC3339.fullmatch(text):
        if _NO_ZONE.fullmatch(text):
            raise ValueError(f"timestamp {text!r} has no time zone (expected e.g. a trailing 'Z')")
        raise ValueError(f"{text[:64]!r} is not an RFC 3339 timestamp")
    if len(text) > 27:  # possibly more than six fraction digits: truncate to microseconds
        head, sep, frac_zone = text.partition(".")
        digits = len(frac_zone) - len(frac_zone.lstrip("0123456789"))
        if sep and digits > 6:
            text = head + "." + frac_zone[:6] + frac_zone[digits:]
    if text[-1] == "z":
        text = text[:-1] + "Z"
    dt = datetime.fromisoformat(text)  # validates ranges (month 13, hour 25...); accepts "Z"
    if dt.utcoffset() == _ZERO:
        return dt if dt.tzinfo is UTC else dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_micros(dt: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (dt - EPOCH) // _ONE_US


def from_micros(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def format_ts(dt: datetime) -> str:
    """The canonical form: ``2026-02-23T14:05:09.123000Z`` (UTC, always six fraction digits)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
