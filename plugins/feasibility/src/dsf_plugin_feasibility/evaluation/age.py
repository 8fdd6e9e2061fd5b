"""Age filters → ``birthdate`` search bounds, computed against an injected "today".

Age is counted in completed units (``a`` years, ``mo`` months, ``wk`` weeks, ``d`` days), as a
person's age is: someone born on 2000-06-15 is 23 until 2024-06-14 and 24 from 2024-06-15.
With ``shift(k)`` = today minus k units (29 February becomes 28 February in other years,
a month end is clamped), "at least k units old" is exactly ``birthDate <= shift(k)``, and every
comparator reduces to that on whole numbers:

========  ==========================  ======================================
filter    whole-number form           birthdate bounds
========  ==========================  ======================================
``gt x``  age >= floor(x) + 1         ``le shift(floor(x) + 1)``
``ge x``  age >= ceil(x)              ``le shift(ceil(x))``
``lt x``  age <= ceil(x) - 1          ``gt shift(ceil(x))``
``le x``  age <= floor(x)             ``gt shift(floor(x) + 1)``
``eq x``  age == x (whole x only)     ``gt shift(x + 1)`` and ``le shift(x)``
``ne x``  age != x                    ``le shift(x + 1)`` or ``gt shift(x)``
range     ceil(lo) <= age <= floor(hi)  ``gt shift(floor(hi) + 1)`` and ``le shift(ceil(lo))``
========  ==========================  ======================================

The result is a tuple of alternatives (OR), each a tuple of ``birthdate`` parameters (AND); an
empty tuple matches nobody (``eq 9.5``), so no search is needed.
"""

from __future__ import annotations

import calendar
import math
from datetime import date, timedelta
from decimal import Decimal

from dsf_plugin_feasibility.evaluation.structured_query import (
    Comparator,
    QuantityComparatorFilter,
    QuantityRangeFilter,
    Unit,
)

__all__ = ["AGE_UNITS", "Alternatives", "age_bounds", "shift"]

AGE_UNITS = ("a", "mo", "wk", "d")
Alternatives = tuple[tuple[tuple[str, str], ...], ...]


def shift(today: date, amount: int, unit: str) -> date:
    """*today* minus *amount* units, clamped to a valid day (and to year 1)."""
    if amount < 0:
        raise ValueError("amount must not be negative")
    if unit == "d":
        return _minus_days(today, amount)
    if unit == "wk":
        return _minus_days(today, 7 * amount)
    months = amount * 12 if unit == "a" else amount if unit == "mo" else None
    if months is None:
        raise ValueError(f"unknown age unit {unit!r} (expected one of {', '.join(AGE_UNITS)})")
    index = today.year * 12 + (today.month - 1) - months
    if index < 12:  # before year 1: nobody is that old
        return date.min
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(today.day, calendar.monthrange(year, month)[1]))


def _minus_days(today: date, days: int) -> date:
    try:
        return today - timedelta(days=days)
    except OverflowError:
        return date.min


def age_bounds(
    age_filter: QuantityComparatorFilter | QuantityRangeFilter, today: date, parameter: str = "birthdate"
) -> Alternatives:
    """The ``birthdate`` search alternatives for an age filter; ValueError for a missing or unknown unit."""
    unit = _unit(age_filter.unit)

    def le(k: int) -> tuple[str, str]:
        return (parameter, f"le{shift(today, k, unit).isoformat()}")

    def gt(k: int) -> tuple[str, str]:
        return (parameter, f"gt{shift(today, k, unit).isoformat()}")

    if isinstance(age_filter, QuantityRangeFilter):
        low, high = _ceil(age_filter.min_value), _floor(age_filter.max_value)
        if low > high or high < 0:
            return ()
        return ((gt(high + 1), le(max(low, 0))),)
    x = age_filter.value
    whole = x == x.to_integral_value()
    match age_filter.comparator:
        case Comparator.GT:
            return ((le(max(_floor(x) + 1, 0)),),)
        case Comparator.GE:
            return ((le(max(_ceil(x), 0)),),)
        case Comparator.LT:
            return ((gt(_ceil(x)),),) if _ceil(x) > 0 else ()
        case Comparator.LE:
            return ((gt(_floor(x) + 1),),) if x >= 0 else ()
        case Comparator.EQ:
            return ((gt(int(x) + 1), le(int(x))),) if whole and x >= 0 else ()
        case Comparator.NE:
            if not whole or x < 0:
                return ((le(0),),)
            return ((le(int(x) + 1),), (gt(int(x)), le(0)))
    raise AssertionError(age_filter.comparator)


def _unit(unit: Unit | None) -> str:
    if unit is None:
        raise ValueError(f"an age filter needs a unit ({', '.join(AGE_UNITS)})")
    if unit.code not in AGE_UNITS:
        raise ValueError(f"unknown age unit {unit.code!r} (expected one of {', '.join(AGE_UNITS)})")
    return unit.code


def _floor(value: Decimal) -> int:
    return math.floor(value)


def _ceil(value: Decimal) -> int:
    return math.ceil(value)
