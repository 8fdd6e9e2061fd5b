"""The JUEL subset: a table of expressions and results, then errors with their positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from dsf_core.bpe.expressions import Execution, ExpressionError, compile_expression, evaluate, is_expression


@dataclass
class Target:
    correlationKey: str  # noqa: N815 - mirrors the Java bean property
    organization: str


@dataclass
class Targets:
    _entries: list[Target] = field(default_factory=list)

    def getEntries(self) -> list[Target]:  # noqa: N802 - Java-bean getter
        return self._entries

    def isEmpty(self) -> bool:  # noqa: N802
        return not self._entries


class Bean:
    def isActive(self) -> bool:  # noqa: N802
        return True

    def greet(self, name: str) -> str:
        return f"hi {name}"


VARIABLES: dict[str, Any] = {
    "statusCode": "not-allowed",
    "stop": "no",
    "count": 3,
    "limit": 5,
    "ratio": 0.5,
    "flag": True,
    "off": False,
    "nothing": None,
    "name": "Ada",
    "blank": "",
    "items": [10, 20, 30],
    "noItems": [],
    "map": {"a": 1, "nested": {"b": "deep"}},
    "target": Target("ck-1", "org-a"),
    "targets": Targets([Target("ck-1", "org-a"), Target("ck-2", "org-b")]),
    "noTargets": Targets(),
    "bean": Bean(),
    "timerInterval": "PT20S",
    "text": "true",
}

CASES: list[tuple[str, Any]] = [
    # plain text is a literal
    ("PT20S", "PT20S"),
    ("R3/PT5S", "R3/PT5S"),
    ("", ""),
    ("no", "no"),
    ("a \\${x} b", "a ${x} b"),
    # literals
    ("${'single'}", "single"),
    ('${"double"}', "double"),
    ("${'it\\'s'}", "it's"),
    ("${42}", 42),
    ("${1.5}", 1.5),
    ("${1e3}", 1000.0),
    ("${true}", True),
    ("${false}", False),
    ("${null}", None),
    # variables and properties
    ("${timerInterval}", "PT20S"),
    ("${count}", 3),
    ("${map.a}", 1),
    ("${map.nested.b}", "deep"),
    ("${map['nested']['b']}", "deep"),
    ("${map.missing}", None),
    ("${items[1]}", 20),
    ("${items[7]}", None),
    ("${target.correlationKey}", "ck-1"),
    ("${targets.entries}", VARIABLES["targets"].getEntries()),
    ("${targets.entries[1].organization}", "org-b"),
    ("${bean.active}", True),
    ("${noTargets.empty}", True),
    # execution
    ("${execution.getVariable('stop')}", "no"),
    ("${execution.getVariable('absent')}", None),
    ("${execution.hasVariable('statusCode')}", True),
    ("${execution.hasVariable('absent')}", False),
    ("${execution.getVariableLocal('count')}", 3),
    ("${execution.hasVariableLocal('count')}", True),
    # comparisons
    ("${stop == 'no'}", True),
    ("${stop eq 'yes'}", False),
    ("${stop != 'yes'}", True),
    ("${stop ne 'no'}", False),
    ("${count < limit}", True),
    ("${count lt 3}", False),
    ("${count <= 3}", True),
    ("${count le 2}", False),
    ("${count > 2}", True),
    ("${count gt 3}", False),
    ("${count >= 3}", True),
    ("${count ge 4}", False),
    ("${count == '3'}", True),
    ("${nothing == null}", True),
    ("${nothing != null}", False),
    ("${nothing < 3}", False),
    ("${name < 'Bob'}", True),
    ("${flag == true}", True),
    ("${text == true}", True),
    # logic
    ("${flag && count > 2}", True),
    ("${flag and off}", False),
    ("${off || count == 3}", True),
    ("${off or off}", False),
    ("${!off}", True),
    ("${not flag}", False),
    ("${!nothing}", True),
    ("${text && flag}", True),
    ("${off && unknownIsNeverEvaluated}", False),
    ("${flag || unknownIsNeverEvaluated}", True),
    (
        "${execution.hasVariable('statusCode') && (statusCode == 'not-allowed' || statusCode == 'not-reachable')}",
        True,
    ),
    ("${(count > 1) && !(count > 5)}", True),
    # empty
    ("${empty nothing}", True),
    ("${empty blank}", True),
    ("${empty noItems}", True),
    ("${empty items}", False),
    ("${empty name}", False),
    ("${not empty items}", True),
    # arithmetic and conditional
    ("${count + 1}", 4),
    ("${limit - count}", 2),
    ("${count * 2}", 6),
    ("${count / 2}", 1.5),
    ("${count div 3}", 1.0),
    ("${7 % 4}", 3),
    ("${7 mod 4}", 3),
    ("${-count}", -3),
    ("${count > 2 ? 'many' : 'few'}", "many"),
    # method calls
    ("${bean.greet(name)}", "hi Ada"),
    ("${items.size()}", 3),
    ("${noItems.isEmpty()}", True),
    ("${items.contains(20)}", True),
    ("${map.containsKey('a')}", True),
    ("${map.get('a')}", 1),
    ("${name.length()}", 3),
    ("${targets.getEntries().size()}", 2),
    # composite text
    ("http://dsf.dev/bpe/Process/pong|${'1.0'}", "http://dsf.dev/bpe/Process/pong|1.0"),
    ("${name}-${count}", "Ada-3"),
    ("x${nothing}y", "xy"),
    ("flag=${flag}", "flag=true"),
    ("  ${count}  ", "  3  "),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_evaluates(source: str, expected: Any) -> None:
    assert evaluate(source, VARIABLES) == expected


def test_single_part_keeps_its_type() -> None:
    entries = evaluate("${targets.entries}", VARIABLES)
    assert entries is VARIABLES["targets"].getEntries()
    assert isinstance(evaluate("${count > 2}", VARIABLES), bool)


def test_parsed_once_and_cached() -> None:
    first = compile_expression("${count + 1}")
    assert compile_expression("${count + 1}") is first
    assert [first.evaluate({"count": n}) for n in range(3)] == [1, 2, 3]
    assert compile_expression("PT20S").is_literal
    assert not first.is_literal


def test_execution_can_be_replaced() -> None:
    class BusinessExecution(Execution):
        def getBusinessKey(self) -> str:  # noqa: N802
            return "bk-1"

    assert evaluate("${execution.getBusinessKey()}", {}, execution=BusinessExecution({})) == "bk-1"


def test_is_expression() -> None:
    assert is_expression("a ${b}")
    assert not is_expression("PT20S")
    assert not is_expression("\\${literal}")


ERRORS: list[tuple[str, dict[str, Any], str, int]] = [
    # source, variables, reason fragment, 0-based position
    ("${a + }", {"a": 1}, "unexpected end of expression", 6),
    ("${unknown}", {}, "unknown variable 'unknown'", 2),
    ("${a == }", {"a": 1}, "unexpected end", 7),
    ("${'open}", {}, "unterminated string", 2),
    ("${count > 2", {"count": 1}, "missing '}'", 0),
    ("${}", {}, "empty expression", 2),
    ("${a # b}", {"a": 1}, "unexpected character '#'", 4),
    ("${(a}", {"a": 1}, "expected ')'", 4),
    ("${a.b}", {"a": None}, "cannot read property 'b' of null", 4),
    ("${a.__class__}", {"a": Bean()}, "not accessible", 4),
    ("${a.missing}", {"a": Bean()}, "has no property 'missing'", 4),
    ("${a.nope()}", {"a": Bean()}, "has no method nope()", 4),
    ("${fn(1)}", {}, "function call fn() is not supported", 2),
    ("${a && b}", {"a": True, "b": 3}, "cannot use int 3 as a boolean", 7),
    ("${a + 1}", {"a": "x"}, "cannot use str 'x' as a number", 4),
    ("${a / 0}", {"a": 1}, "division by zero", 4),
    ("${a instanceof b}", {}, "operator 'instanceof' is not supported", 4),
    ("text ${x y}", {"x": 1, "y": 2}, "unexpected 'y'", 9),
]


@pytest.mark.parametrize(("source", "variables", "reason", "position"), ERRORS)
def test_errors_name_expression_and_position(
    source: str, variables: dict[str, Any], reason: str, position: int
) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(source, variables)
    error = info.value
    assert reason in error.reason
    assert error.position == position
    assert error.expression == source
    assert repr(source) in str(error)
    assert f"column {position + 1}" in str(error)


def test_no_python_eval() -> None:
    with pytest.raises(ExpressionError):
        evaluate("${__import__('os')}", {})
    with pytest.raises(ExpressionError):
        evaluate("${bean.greet.__globals__}", {"bean": Bean()})
