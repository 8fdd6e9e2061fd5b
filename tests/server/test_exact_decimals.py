"""loads_exact: decimals stay as written wherever JSON puts numbers, however deep; digits inside strings cost nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsf_core.server import formats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"a":1.50}', {"a": Decimal("1.50")}),
        (b'{"a" : 1.50}', {"a": Decimal("1.50")}),
        (b'{"a": [1, 2.50]}', {"a": [1, Decimal("2.50")]}),
        (b'{"a":[1,\n 2.50]}', {"a": [1, Decimal("2.50")]}),
        (b'{"v": -0.50}', {"v": Decimal("-0.50")}),
        (b'{"v":1e5}', {"v": Decimal("1E+5")}),
        (b'{"q":{"value":0.0}}', {"q": {"value": Decimal("0.0")}}),
        (b'{"e":[{"x":[[{"y":2.5E-3}]]}]}', {"e": [{"x": [[{"y": Decimal("2.5E-3")}]]}]}),
    ],
)
def test_decimals_are_exact(text: bytes, expected: object) -> None:
    assert formats.loads_exact(text) == expected
    assert str(formats.loads_exact(text)) == str(expected)  # 1.50 stays 1.50, not 1.5


def test_a_task_with_times_and_versions_in_strings_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: object, **kwargs: object) -> object:
        raise AssertionError("the exact parser ran")

    monkeypatch.setattr(formats.json, "loads", slow)
    task = b'{"authoredOn":"2026-01-01T12:00:00.123Z","instantiatesCanonical":"http://x/Process/p|1.0","n":15}'
    assert formats.loads_exact(task)["n"] == 15
