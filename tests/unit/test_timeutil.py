"""RFC 3339 parsing: the same instant whatever the offset, strictness, canonical form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillguard._internal.timeutil import format_ts, from_micros, parse_rfc3339, to_micros

INSTANTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(INSTANTS, OFFSETS, st.sampled_from(["T", "t", " "]))
def test_any_offset_parses_to_the_same_utc_instant(
    instant: datetime, offset: timezone, sep: str
) -> None:
    text = instant.astimezone(offset).isoformat(sep=sep)
    parsed = parse_rfc3339(text)
    assert parsed == instant and parsed.tzinfo is UTC


@given(INSTANTS)
def test_canonical_form_round_trips(instant: datetime) -> None:
    assert parse_rfc3339(format_ts(instant)) == instant
    assert from_micros(to_micros(instant)) == instant


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-02-23T14:05:09", "has no time zone"),
        ("2026-02-23 14:05:09.5", "has no time zone"),
        ("2026-02-23", "not an RFC 3339"),
        ("20260223T140509Z", "not an RFC 3339"),
        ("2026-13-01T00:00:00Z", "month must be in 1..12"),
        ("2026-02-23T25:00:00Z", "hour must be in 0..23"),
        ("yesterday", "not an RFC 3339"),
        ("2026-02-23T14:05:09+0200", "not an RFC 3339"),
    ],
)
def test_rejects_non_rfc3339(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_rfc3339(text)


def test_extra_fraction_digits_are_truncated_not_rounded() -> None:
    assert parse_rfc3339("2026-02-23T14:05:09.9999999Z").microsecond == 999999
