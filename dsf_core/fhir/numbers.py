"""FHIR decimals as order-preserving integers, and the ranges a searched number stands for.

Quantity search compares numbers of any magnitude (``0.000012 mol/L``, ``4.5e9 /L``), and the
search index keeps them in its BigInteger ``low``/``high`` columns (the ones dates use), so
SQLite and PostgreSQL compare them the same way with plain integer comparisons and the same
indexes.  A number becomes a *key* that sorts like the number::

    key(d) = sign(d) * ((exponent(d) + 2000) * 10**15 + 15-digit mantissa of |d|),   key(0) = 0

Every number with at most 15 significant digits and a decimal exponent in [-2000, 2610] has its
own key, so comparisons between such numbers are exact; a longer number is rounded to 15
significant digits (half even for stored values; search bounds round outward, so a bound is
never moved past a stored value).  Keys stay strictly inside ``dates.MIN_MS``/``MAX_MS``, which
remain free as the open ends of a ``<``/``>`` comparator range.

https://hl7.org/fhir/R4/search.html#number: ``eq`` (and ``ne``, ``ap``) take the implicit
precision of the searched number into account — ``5.4`` means ``[5.35, 5.45)``, ``100`` means
``[99.5, 100.5)``, ``1e2`` means ``[50, 150)``; the other prefixes compare with the number as
written.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

DIGITS = 15
_BLOCK: int = 10**DIGITS
_BIAS = 2000
_MAX_EXPONENT = 2610  # (2610 + 2000 + 1) * 10**15 < 2**62
MAX_KEY = (_MAX_EXPONENT + _BIAS + 1) * _BLOCK - 1
_CONTEXT = Context(prec=80)

# FHIR decimal (JSON number syntax); leading zeros tolerated.
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")


class NumberError(ValueError):
    pass


def parse_decimal(text: str) -> Decimal:
    """A searched number as written (precision kept: ``5.40`` is not ``5.4``)."""
    if not _NUMBER.match(text):
        raise NumberError(f"not a number: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise NumberError(f"not a number: {text!r}") from None


def to_decimal(value: object) -> Decimal | None:
    """A JSON number of a stored resource (int, float or Decimal) as a Decimal; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    return None


def _magnitude_key(d: Decimal, rounding: str) -> int:
    """Key of a positive number, its mantissa rounded to DIGITS digits in the given direction."""
    exponent: int = d.adjusted()
    mantissa = int(d.scaleb(DIGITS - 1 - exponent, _CONTEXT).to_integral_value(rounding=rounding, context=_CONTEXT))
    if mantissa >= _BLOCK:  # 9.99…95 rounded up to 10.0…0
        mantissa //= 10
        exponent += 1
    if exponent < -_BIAS:  # vanishingly small: just above zero
        return 1 if rounding != ROUND_FLOOR else 0
    if exponent > _MAX_EXPONENT:
        return MAX_KEY
    return (exponent + _BIAS) * _BLOCK + mantissa


def _key(d: Decimal, rounding: str) -> int:
    if d.is_zero():
        return 0
    if d > 0:
        return _magnitude_key(d, rounding)
    # -x rounded down is -(x rounded up)
    mirrored: str = {ROUND_FLOOR: ROUND_CEILING, ROUND_CEILING: ROUND_FLOOR}.get(rounding, rounding)
    return -_magnitude_key(-d, mirrored)


def key(d: Decimal) -> int:
    """The key of a stored number (rounded half even beyond 15 significant digits)."""
    return _key(d, ROUND_HALF_EVEN)


def key_floor(d: Decimal) -> int:
    """The key of the largest 15-digit number <= d."""
    return _key(d, ROUND_FLOOR)


def key_ceil(d: Decimal) -> int:
    """The key of the smallest 15-digit number >= d."""
    return _key(d, ROUND_CEILING)


def precision_range(d: Decimal) -> tuple[Decimal, Decimal]:
    """``[low, high)``: the numbers a searched value stands for, by its implicit precision."""
    half = Decimal((0, (5,), d.as_tuple().exponent - 1))  # type: ignore[operator]
    return d - half, d + half


def search_range(prefix: str, d: Decimal) -> tuple[int, int]:
    """Inclusive key bounds ``(low, high)`` of a searched number for ``dates``-style range prefixes.

    ``eq``/``ne``: the implicit precision range; ``ap``: that range widened to ±10 % of the
    value; every other prefix: the number exactly (low = high = the number, rounded outward).
    """
    if prefix in ("eq", "ne", "ap"):
        low, high = precision_range(d)
        if prefix == "ap":
            spread = abs(d) / 10
            low, high = min(low, d - spread), max(high, d + spread)
            return key_ceil(low), key_floor(high)
        return key_ceil(low), key_ceil(high) - 1  # high is exclusive
    return key_ceil(d), key_floor(d)
