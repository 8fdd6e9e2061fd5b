"""FHIR instants and HTTP dates from milliseconds, and date ranges from FHIR dates."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from dsf_core.fhir.dates import DateError, date_range, format_http_date, format_instant


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+00:00"


def _http(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def test_formatting_agrees_with_the_calendar_across_seconds_and_before_1970() -> None:
    rng = random.Random(7)
    # runs within one second (the cached text) and jumps between seconds, both ways
    values = [0, -1, -999, -1000, -1001, 999, 1000, 253402300799999]
    values += list(range(1_795_431_311_990, 1_795_431_313_010, 3))
    values += [rng.randrange(-10**12, 10**13) for _ in range(2000)]
    for ms in values:
        assert format_instant(ms) == _instant(ms), ms
        assert format_http_date(ms) == _http(ms), ms
    assert format_instant(1_795_431_312_072) == "2026-11-23T10:55:12.072+00:00"
    assert format_http_date(1_795_431_312_072) == "Mon, 23 Nov 2026 10:55:12 GMT"


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2026", "2026-01-01T00:00:00.000", "2026-12-31T23:59:59.999"),
        ("2026-02", "2026-02-01T00:00:00.000", "2026-02-28T23:59:59.999"),
        ("2026-11-23", "2026-11-23T00:00:00.000", "2026-11-23T23:59:59.999"),
        ("2026-11-23T10:55:12.072+00:00", "2026-11-23T10:55:12.072", "2026-11-23T10:55:12.072"),
        ("2026-11-23T11:55:12+01:00", "2026-11-23T10:55:12.000", "2026-11-23T10:55:12.999"),
        ("2026-11-23T10:55Z", "2026-11-23T10:55:00.000", "2026-11-23T10:55:59.999"),
    ],
)
def test_date_ranges_cover_the_precision_given(value: str, low: str, high: str) -> None:
    assert tuple(format_instant(ms)[:23] for ms in date_range(value)) == (low, high)


@pytest.mark.parametrize("value", ["", "2026-13", "2026-02-30", "23.11.2026", "2026-11-23T25:00:00Z"])
def test_a_value_that_is_no_date_is_refused(value: str) -> None:
    with pytest.raises(DateError):
        date_range(value)
