"""ISO-8601 timer values as Camunda accepts them in ``bpmn:timerEventDefinition``.

Three kinds, named after their BPMN elements:

* ``timeDuration`` — ``PT20S``, ``P1D``, ``PT1H30M``, ``P1Y2M3W4DT5H6M7.5S``: fires once,
  that long after the timer was armed;
* ``timeDate`` — ``2026-01-01T10:00:00Z``, with an offset, or naive (then in the node's
  local zone, as Camunda does): fires once at that instant;
* ``timeCycle`` — ``R3/PT10S`` (three times, every 10 s after arming), ``R/PT1H``
  (forever), ``R5/2026-01-01T00:00:00Z/PT1M`` (five times from that start). Camunda also
  takes cron expressions here; we do not, and say so.

Any of them may be written as an expression (``${timerInterval}``): a
:class:`TimerDefinition` keeps the raw text and :meth:`TimerDefinition.resolve` evaluates
it (JUEL subset, :mod:`dsf_core.bpe.expressions`) before parsing. An expression may also
yield a ``timedelta`` (duration) or an aware ``datetime`` (date).

Everything here is a pure function of its arguments: "now" is always passed in, the wall
clock is never read, so the engine's scheduler and its tests decide what time it is.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from enum import Enum
from typing import Any, Final

from dsf_core.bpe.expressions import ExpressionError, compile_expression

__all__ = [
    "CycleTimer",
    "DateTimer",
    "Duration",
    "DurationTimer",
    "Timer",
    "TimerDefinition",
    "TimerError",
    "TimerKind",
    "next_due",
    "parse_cycle",
    "parse_datetime",
    "parse_duration",
    "parse_timer",
]


class TimerError(ValueError):
    """A timer value is not one Camunda-style ISO-8601 text we accept."""

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


class TimerKind(str, Enum):
    DATE = "timeDate"
    DURATION = "timeDuration"
    CYCLE = "timeCycle"


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO-8601 duration; years and months are calendar units, so it needs a start."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: float = 0

    def after(self, start: datetime) -> datetime:
        """``start`` plus this duration; month arithmetic clamps to the month's last day."""
        moved = start
        months = self.years * 12 + self.months
        if months:
            index = start.month - 1 + months
            year, month = start.year + index // 12, index % 12 + 1
            day = min(start.day, calendar.monthrange(year, month)[1])
            moved = start.replace(year=year, month=month, day=day)
        return moved + timedelta(
            weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
        )

    def times(self, factor: int) -> Duration:
        return Duration(
            self.years * factor, self.months * factor, self.weeks * factor, self.days * factor,
            self.hours * factor, self.minutes * factor, self.seconds * factor,
        )

    @classmethod
    def of(cls, delta: timedelta) -> Duration:
        if delta < timedelta(0):
            raise TimerError("a duration must not be negative", delta)
        return cls(seconds=delta.total_seconds())


@dataclass(frozen=True, slots=True)
class DateTimer:
    at: datetime


@dataclass(frozen=True, slots=True)
class DurationTimer:
    duration: Duration


@dataclass(frozen=True, slots=True)
class CycleTimer:
    repetitions: int | None  # None: repeat forever
    interval: Duration
    start: datetime | None = None


Timer = DateTimer | DurationTimer | CycleTimer

_DURATION_RE: Final = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)
_REPEAT_RE: Final = re.compile(r"R(\d*)")


def parse_duration(text: str) -> Duration:
    """``PT20S`` → ``Duration(seconds=20)``; raises :class:`TimerError`."""
    value = text.strip().upper()
    m = _DURATION_RE.fullmatch(value)
    if m is None or value in ("P", "PT") or value.endswith("T"):
        raise TimerError("not an ISO-8601 duration (e.g. PT20S, P1D, PT1H30M)", text)
    g = m.groupdict()
    return Duration(
        years=int(g["years"] or 0),
        months=int(g["months"] or 0),
        weeks=int(g["weeks"] or 0),
        days=int(g["days"] or 0),
        hours=int(g["hours"] or 0),
        minutes=int(g["minutes"] or 0),
        seconds=float((g["seconds"] or "0").replace(",", ".")),
    )


def parse_datetime(text: str, *, local_tz: tzinfo | None = None) -> datetime:
    """An ISO-8601 date-time; a value without offset is taken in ``local_tz``.

    ``local_tz=None`` means the zone of the machine, which is what Camunda does with a
    naive ``timeDate``.
    """
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimerError("not an ISO-8601 date-time (e.g. 2026-01-01T10:00:00Z)", text) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local_tz) if local_tz is not None else parsed.astimezone()
    return parsed


def parse_cycle(text: str, *, local_tz: tzinfo | None = None) -> CycleTimer:
    """``R3/PT10S``, ``R/PT1H`` or ``R5/<start>/PT1M``; cron expressions are rejected."""
    value = text.strip()
    if not value.upper().startswith("R"):
        if len(value.split()) >= 5:
            raise TimerError(
                "cron expressions are not supported in timeCycle; use ISO-8601 repeating "
                "intervals such as R/PT1H or R3/2026-01-01T00:00:00Z/PT10M",
                text,
            )
        raise TimerError("not an ISO-8601 repeating interval (e.g. R3/PT10S)", text)
    parts = value.split("/")
    m = _REPEAT_RE.fullmatch(parts[0].upper())
    if m is None or len(parts) not in (2, 3):
        raise TimerError("not an ISO-8601 repeating interval (e.g. R3/PT10S)", text)
    repetitions = int(m.group(1)) if m.group(1) else None
    if repetitions == 0:
        raise TimerError("R0 never fires", text)
    if len(parts) == 2:
        return CycleTimer(repetitions, _positive(parse_duration(parts[1]), text))
    if parts[1].upper().startswith("P"):
        raise TimerError("a cycle ending at a date (R/<duration>/<end>) is not supported; use R<n>/<start>/<duration>", text)
    start = parse_datetime(parts[1], local_tz=local_tz)
    return CycleTimer(repetitions, _positive(parse_duration(parts[2]), text), start)


def parse_retry_cycle(text: str) -> list[float]:
    """``camunda:failedJobRetryTimeCycle`` → the pauses before each retry, in seconds.

    ``R3/PT5S`` → three retries 5 s apart; ``R0/PT5S`` (as the Java MII models draw it) → no
    retry at all, where a timer ``R0`` would be an error because it never fires.
    """
    value = text.strip()
    head, sep, rest = value.partition("/")
    if sep and head.upper() == "R0":
        parse_cycle(f"R1/{rest}")  # the rest must still be a valid interval
        return []
    cycle = parse_cycle(value)
    count = cycle.repetitions if cycle.repetitions is not None else 1
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return [(cycle.interval.after(epoch) - epoch).total_seconds()] * count


def _positive(interval: Duration, text: str) -> Duration:
    # A zero interval would make a cycle fire in a tight loop.
    if interval.after(datetime(2000, 1, 1)) == datetime(2000, 1, 1):
        raise TimerError("a cycle interval must be longer than zero", text)
    return interval


def parse_timer(kind: TimerKind | str, value: object, *, local_tz: tzinfo | None = None) -> Timer:
    """Parse an evaluated timer value of the given kind."""
    kind = TimerKind(kind)
    if kind is TimerKind.DURATION:
        if isinstance(value, timedelta):
            return DurationTimer(Duration.of(value))
        if isinstance(value, str):
            return DurationTimer(parse_duration(value))
    elif kind is TimerKind.DATE:
        if isinstance(value, datetime):
            return DateTimer(parse_datetime(value.isoformat(), local_tz=local_tz))
        if isinstance(value, str):
            return DateTimer(parse_datetime(value, local_tz=local_tz))
    elif isinstance(value, str):
        return parse_cycle(value, local_tz=local_tz)
    raise TimerError(f"a {kind.value} cannot be a {type(value).__name__}", value)


def next_due(definition: Timer, now: datetime, *, fired_count: int = 0) -> datetime | None:
    """When ``definition`` fires next, or ``None`` when it will not fire again.

    ``now`` is the reference instant: when the timer was armed (``fired_count == 0``) or
    when it last fired. Passing the previous *due* time rather than the time it was
    noticed keeps a cycle free of drift. A cycle with a start fires at
    ``start + k * interval`` for ``k = fired_count``, even if that is already past
    (an engine that was down fires overdue timers at once).
    """
    if isinstance(definition, DateTimer):
        return definition.at if fired_count == 0 else None
    if isinstance(definition, DurationTimer):
        return definition.duration.after(now) if fired_count == 0 else None
    if definition.repetitions is not None and fired_count >= definition.repetitions:
        return None
    if definition.start is not None:
        return definition.interval.times(fired_count).after(definition.start)
    return definition.interval.after(now)


@dataclass(frozen=True, slots=True)
class TimerDefinition:
    """The text of a timer element as drawn: its kind and a literal or ``${...}`` value."""

    kind: TimerKind
    text: str

    def check(self) -> None:
        """Fail at deployment: a literal must parse, an expression must compile."""
        expression = compile_expression(self.text)
        if expression.is_literal:
            parse_timer(self.kind, self.text, local_tz=None)

    def resolve(self, variables: Mapping[str, Any], *, local_tz: tzinfo | None = None) -> Timer:
        """Evaluate the text against ``variables`` and parse the result."""
        try:
            value = compile_expression(self.text).evaluate(variables)
        except ExpressionError as exc:
            raise TimerError(f"cannot evaluate the {self.kind.value} ({exc})", self.text) from exc
        return parse_timer(self.kind, value, local_tz=local_tz)
