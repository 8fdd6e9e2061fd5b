"""ISO-8601 timer values: parsing and due times with an injected now."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dsf_core.bpe.timers import (
    CycleTimer,
    DateTimer,
    Duration,
    DurationTimer,
    TimerDefinition,
    TimerError,
    TimerKind,
    next_due,
    parse_cycle,
    parse_duration,
    parse_timer,
)

UTC = timezone.utc
NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT20S", Duration(seconds=20)),
        ("P1D", Duration(days=1)),
        ("PT1H30M", Duration(hours=1, minutes=30)),
        ("PT24H", Duration(hours=24)),
        ("P2W", Duration(weeks=2)),
        ("PT0.5S", Duration(seconds=0.5)),
        ("PT1,5S", Duration(seconds=1.5)),
        ("P1Y2M3DT4H5M6S", Duration(years=1, months=2, days=3, hours=4, minutes=5, seconds=6)),
        (" pt5m ", Duration(minutes=5)),
        ("PT0S", Duration()),
    ],
)
def test_durations(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "PT20X", "20S", "-PT5S", "P1.5D", "PT5S5M"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(TimerError, match="not an ISO-8601 duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("kind", "value", "due"),
    [
        ("timeDuration", "PT20S", NOW + timedelta(seconds=20)),
        ("timeDuration", "P1D", NOW + timedelta(days=1)),
        ("timeDuration", "PT1H30M", NOW + timedelta(hours=1, minutes=30)),
        # calendar months clamp to the last day (Jan 31 + 1 month = Feb 28)
        ("timeDuration", "P1M", datetime(2026, 2, 28, 12, tzinfo=UTC)),
        ("timeDuration", "P1Y", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("timeDuration", timedelta(minutes=5), NOW + timedelta(minutes=5)),
        ("timeDate", "2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("timeDate", "2026-03-01T10:00:00+01:00", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("timeDate", "2020-01-01T00:00:00Z", datetime(2020, 1, 1, tzinfo=UTC)),  # past: due at once
        ("timeDate", datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
        ("timeCycle", "R3/PT10S", NOW + timedelta(seconds=10)),
        ("timeCycle", "R/PT1H", NOW + timedelta(hours=1)),
        ("timeCycle", "R5/2026-02-01T00:00:00Z/PT1M", datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_first_due(kind: str, value: object, due: datetime) -> None:
    assert next_due(parse_timer(kind, value), NOW) == due


def test_naive_date_is_local_time() -> None:
    timer = parse_timer(TimerKind.DATE, "2026-03-01T10:00:00", local_tz=CET)
    assert next_due(timer, NOW) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    machine_local = parse_timer(TimerKind.DATE, "2026-03-01T10:00:00")
    assert isinstance(machine_local, DateTimer) and machine_local.at.tzinfo is not None


def test_duration_and_date_fire_once() -> None:
    assert next_due(parse_timer("timeDuration", "PT20S"), NOW, fired_count=1) is None
    assert next_due(parse_timer("timeDate", "2026-03-01T10:00:00Z"), NOW, fired_count=1) is None


def test_cycle_counts_repetitions_from_the_previous_due_time() -> None:
    cycle = parse_cycle("R3/PT10S")
    first = next_due(cycle, NOW, fired_count=0)
    assert first == NOW + timedelta(seconds=10)
    second = next_due(cycle, first, fired_count=1)
    third = next_due(cycle, second, fired_count=2)  # type: ignore[arg-type]
    assert (second, third) == (NOW + timedelta(seconds=20), NOW + timedelta(seconds=30))
    assert next_due(cycle, third, fired_count=3) is None  # type: ignore[arg-type]


def test_cycle_with_start_is_anchored() -> None:
    cycle = parse_cycle("R3/2026-01-31T00:00:00Z/P1M")
    assert cycle == CycleTimer(3, Duration(months=1), datetime(2026, 1, 31, tzinfo=UTC))
    dues = [next_due(cycle, NOW, fired_count=k) for k in range(4)]
    # multiplied from the start, so February's clamping does not drift into March
    assert dues == [
        datetime(2026, 1, 31, tzinfo=UTC),
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
        None,
    ]


def test_unbounded_cycle_never_ends() -> None:
    cycle = parse_cycle("R/PT1H")
    assert cycle.repetitions is None
    assert next_due(cycle, NOW, fired_count=10_000) == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0 0/5 * * * ?", "cron expressions are not supported"),
        ("0 0 12 * * MON-FRI", "cron expressions are not supported"),
        ("PT10S", "not an ISO-8601 repeating interval"),
        ("R0/PT10S", "R0 never fires"),
        ("Rx/PT10S", "not an ISO-8601 repeating interval"),
        ("R3/PT0S", "longer than zero"),
        ("R3/PT10S/2026-01-01T00:00:00Z", "ending at a date"),
        ("R3/2026-13-01T00:00:00Z/PT1M", "not an ISO-8601 date-time"),
        ("R3/PT1M/PT2M/PT3M", "not an ISO-8601 repeating interval"),
    ],
)
def test_bad_cycles(text: str, reason: str) -> None:
    with pytest.raises(TimerError, match=reason):
        parse_cycle(text)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("timeDate", "tomorrow"), ("timeDuration", 20), ("timeDate", timedelta(1)), ("timeCycle", None)],
)
def test_bad_values(kind: str, value: object) -> None:
    with pytest.raises(TimerError):
        parse_timer(kind, value)


def test_definition_resolves_expressions() -> None:
    definition = TimerDefinition(TimerKind.DURATION, "${timerInterval}")
    definition.check()  # an expression is only compiled at deployment
    assert definition.resolve({"timerInterval": "PT24H"}) == DurationTimer(Duration(hours=24))
    with pytest.raises(TimerError, match="cannot evaluate"):
        definition.resolve({})
    with pytest.raises(TimerError, match="not an ISO-8601 duration"):
        definition.resolve({"timerInterval": "soon"})


def test_definition_checks_literals() -> None:
    TimerDefinition(TimerKind.CYCLE, "R3/PT5S").check()
    with pytest.raises(TimerError, match="cron"):
        TimerDefinition(TimerKind.CYCLE, "0 0/5 * * * ?").check()


def test_retry_cycles_allow_r0_as_no_retry() -> None:
    from dsf_core.bpe.timers import parse_retry_cycle

    assert parse_retry_cycle("R3/PT5S") == [5.0, 5.0, 5.0]
    assert parse_retry_cycle("R0/PT5S") == []  # as the Java MII models draw "no retry"
    with pytest.raises(TimerError):
        parse_retry_cycle("R0/soon")
