"""FHIR date, dateTime and instant values as millisecond ranges.

A FHIR date has a precision; ``2024-05`` stands for the whole month.  Search compares
ranges, so every value becomes ``(low, high)`` in milliseconds since the epoch (UTC),
both inclusive.  Values without a time zone are taken as UTC.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

MIN_MS = -(2**62)
MAX_MS = 2**62


class DateError(ValueError):
    pass


_OFFSETS: dict[str | None, timedelta] = {}
_MINUTE, _SECOND = timedelta(minutes=1), timedelta(seconds=1)
# the span of a time with n fraction digits (n ≥ 1)
_FRACTION_STEPS = [timedelta(microseconds=max(1, 10 ** (6 - min(n, 6)))) for n in range(10)]


def _tz_offset(tz: str | None) -> timedelta:
    offset = _OFFSETS.get(tz)
    if offset is None:
        if not tz or tz == "Z":
            offset = timedelta(0)
        else:
            sign = 1 if tz[0] == "+" else -1
            hours, minutes = tz[1:].split(":")
            offset = sign * timedelta(hours=int(hours), minutes=int(minutes))
        if len(_OFFSETS) < 1000:
            _OFFSETS[tz] = offset
    return offset


def date_range(value: str) -> tuple[int, int]:
    """The inclusive millisecond range a FHIR date/dateTime/instant covers."""
    match = _DATE.match(value.strip())
    if not match:
        raise DateError(f"not a FHIR date/dateTime: {value!r}")
    y, m, d, hour, minute, second, fraction, tz = match.group("y", "m", "d", "H", "M", "S", "f", "tz")
    year = int(y)
    try:
        if m is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            high = datetime(year + 1, 1, 1, tzinfo=UTC)
        elif d is None:
            month = int(m)
            low = datetime(year, month, 1, tzinfo=UTC)
            high = low + timedelta(days=calendar.monthrange(year, month)[1])
        elif hour is None:
            low = datetime(year, int(m), int(d), tzinfo=UTC)
            high = low + timedelta(days=1)
        else:
            micro = int((fraction + "000000")[:6]) if fraction else 0
            naive = datetime(year, int(m), int(d), int(hour), int(minute), int(second or 0), micro)
            low = (naive - _tz_offset(tz)).replace(tzinfo=UTC)
            if second is None:
                high = low + _MINUTE
            elif not fraction:
                high = low + _SECOND
            else:
                high = low + _FRACTION_STEPS[min(len(fraction), 9)]
    except ValueError as exc:
        raise DateError(f"not a valid date: {value!r} ({exc})") from exc
    low_ms = int(low.timestamp() * 1000)
    high_ms = max(low_ms, int(high.timestamp() * 1000) - 1)
    return low_ms, high_ms


# the second formatted last, per format (writes and their answers come many to a second); one
# tuple, replaced whole, so threads never see a second with another second's text
_INSTANT_SECOND: tuple[int | None, str] = (None, "")
_HTTP_SECOND: tuple[int | None, str] = (None, "")


def format_instant(ms: int) -> str:
    """Milliseconds since the epoch as a FHIR instant with millisecond precision (UTC)."""
    global _INSTANT_SECOND
    second, fraction = divmod(ms, 1000)
    cached, text = _INSTANT_SECOND
    if cached != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _INSTANT_SECOND = (second, text)
    return f"{text}{fraction:03d}+00:00"


def format_http_date(ms: int) -> str:
    """Milliseconds since the epoch as an HTTP date (Last-Modified)."""
    global _HTTP_SECOND
    second = ms // 1000
    cached, text = _HTTP_SECOND
    if cached != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        _HTTP_SECOND = (second, text)
    return text
