"""RFC 3339 timestamps: strict parsing and the canonical UTC form DistillGuard writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = [
    "EPOCH",
    "MAX_UTC",
    "MIN_UTC",
    "format_ts",
    "from_micros",
    "parse_rfc3339",
    "to_micros",
    "to_utc",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest and latest instants a timestamp may have (Python's datetime range, in UTC).
MIN_UTC = "0001-01-01T00:00:00Z"
MAX_UTC = "9999-12-31T23:59:59.999999Z"
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

    The result must lie within what a datetime holds in UTC (``0001-01-01T00:00:00Z`` to
    ``9999-12-31T23:59:59.999999Z``): a valid RFC 3339 text such as
    ``0001-01-01T00:00:00+14:00`` is outside it and raises :class:`ValueError` like any other
    unusable timestamp. Leap seconds (``23:59:60``) are not representable and raise too.

    Raises:
        ValueError: not an RFC 3339 timestamp, or one outside the representable range; the
            message says why (e.g. no time zone).
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
    return to_utc(dt)


def to_utc(dt: datetime) -> datetime:
    """An aware datetime converted to UTC.

    Raises:
        ValueError: ``dt`` has no time zone, or it is outside the range a datetime holds once
            converted to UTC (e.g. ``0001-01-01T00:00:00+14:00``, ``9999-12-31T23:59:59-01:00``).
    """
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError("timestamp has no time zone")
    if offset == _ZERO:
        return dt if dt.tzinfo is UTC else dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"timestamp {dt.isoformat()} is out of range: in UTC it falls outside "
            f"{MIN_UTC} .. {MAX_UTC}"
        ) from None


def to_micros(dt: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (dt - EPOCH) // _ONE_US


def from_micros(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def format_ts(dt: datetime) -> str:
    """The canonical form: ``2026-02-23T14:05:09.123000Z`` (UTC, always six fraction digits)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
