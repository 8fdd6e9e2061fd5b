"""Unified EL coercions and property resolution, as far as DSF models can notice them.

* booleans: ``null`` and ``''`` are false, a string is true when it reads ``true`` in any
  case, anything else that is not a boolean is an error;
* ``==``: ``null`` equals only ``null``; with a boolean both sides are booleans; with a
  number both sides are numbers (``'3' == 3``); with a string both sides are text;
* ``< > <= >=``: ``false`` when either side is ``null``; numbers or text as for ``==``;
* arithmetic: ``null`` and ``''`` are 0, numeric text is a number; ``/`` never truncates;
* ``a.b``: mapping key (missing → ``null``, like JUEL's map resolver), list index, a
  non-method attribute, then a Java-bean getter ``getB()``/``isB()``; names with a
  leading ``_`` are never reachable;
* methods: public methods of objects, plus the Java collection methods models call on
  lists, maps and strings (``size``, ``isEmpty``, ``contains``, ``containsKey``, ``get``,
  ``length``).

Every failure raises :class:`CoercionError` with a reason; the expression node that
called turns it into an ``ExpressionError`` with its position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any, Final

__all__ = [
    "CoercionError",
    "arithmetic",
    "compare",
    "equals",
    "find_method",
    "get_property",
    "is_empty",
    "to_bool",
    "to_number",
    "to_text",
]


class CoercionError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MISSING: Final = object()


def get_property(obj: Any, key: Any) -> Any:
    """``obj.key`` / ``obj[key]``."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        index = _to_index(key)
        return obj[index] if -len(obj) <= index < len(obj) else None
    name = str(key)
    if name.startswith("_") or not name:
        raise CoercionError(f"property {name!r} is not accessible")
    value = getattr(obj, name, _MISSING)
    if value is not _MISSING and not callable(value):
        return value
    for getter in ("get" + name[0].upper() + name[1:], "is" + name[0].upper() + name[1:]):
        method = getattr(obj, getter, None)
        if callable(method):
            return method()
    raise CoercionError(f"{type(obj).__name__} has no property {name!r}")


def find_method(obj: Any, name: str) -> Callable[..., Any] | None:
    """The callable ``obj.name(...)`` means, or ``None``."""
    if name.startswith("_"):
        return None
    method = getattr(obj, name, None)
    if callable(method) and not isinstance(obj, (Mapping, list, tuple, str)):
        return method  # type: ignore[no-any-return]
    # Java collection methods that Camunda models call on lists, maps and strings.
    if isinstance(obj, Sized):
        if name == "size" or (name == "length" and isinstance(obj, str)):
            return lambda: len(obj)
        if name == "isEmpty":
            return lambda: len(obj) == 0
    if isinstance(obj, Mapping):
        if name == "get":
            return obj.get
        if name in ("containsKey", "contains"):
            return lambda key: key in obj
    if isinstance(obj, (list, tuple, str)):
        if name == "contains":
            return lambda item: item in obj
        if name == "get" and not isinstance(obj, str):
            return lambda index: obj[int(index)]
    return None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        return value.lower() == "true"
    raise CoercionError(f"cannot use {type(value).__name__} {value!r} as a boolean")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_number(value: Any) -> int | float:
    if _is_number(value):
        return value  # type: ignore[no-any-return]
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                pass
    raise CoercionError(f"cannot use {type(value).__name__} {value!r} as a number")


def _to_index(value: Any) -> int:
    number = to_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise CoercionError(f"index {value!r} is not an integer")
        return int(number)
    return number


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Sized):
        return len(value) == 0
    return False


def equals(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return to_bool(a) == to_bool(b)
    if _is_number(a) or _is_number(b):
        if isinstance(a, str) and not _looks_numeric(a) or isinstance(b, str) and not _looks_numeric(b):
            return False
        return to_number(a) == to_number(b)
    if isinstance(a, str) or isinstance(b, str):
        return to_text(a) == to_text(b)
    return bool(a == b)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == ""
    return True


def compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if _is_number(a) or _is_number(b):
        x: Any = to_number(a)
        y: Any = to_number(b)
    elif isinstance(a, str) or isinstance(b, str):
        x, y = to_text(a), to_text(b)
    else:
        x, y = a, b
    try:
        if op == "<":
            return bool(x < y)
        if op == ">":
            return bool(x > y)
        if op == "<=":
            return bool(x <= y)
        return bool(x >= y)
    except TypeError as exc:
        raise CoercionError(f"cannot compare {type(a).__name__} with {type(b).__name__}") from exc


def arithmetic(op: str, a: Any, b: Any) -> int | float:
    x = to_number(a)
    y = to_number(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:
        raise CoercionError("division by zero")
    if op == "/":
        return x / y  # EL division is never integer division
    return x % y
