"""JUEL-subset expressions, as Camunda models drawn for the Java DSF use them.

A model's conditions, multi-instance collections, timer values, field injections and
input/output parameters are *text*. Text without ``${`` is a literal string; text with
``${...}`` parts is evaluated, and when it is exactly one ``${...}`` the result keeps its
type (``${targets.entries}`` is a list, ``${x > 5}`` a bool); otherwise the parts are
concatenated as strings (``task-ping|${version}``). ``\\${`` writes a literal ``${``.

The language inside ``${...}`` (a subset of the Unified EL of JSR 245):

* literals ``'a'`` ``"a"`` (``\\'`` ``\\"`` ``\\\\`` escapes), ``12`` ``1.5`` ``1e3``,
  ``true`` ``false`` ``null``;
* variables by name; ``execution`` is a view on the variables with ``getVariable``,
  ``hasVariable``, ``getVariableLocal``, ``hasVariableLocal`` and ``getVariables``
  (SpiffWorkflow keeps one flat data dict per task, so *local* equals *global*);
* ``a.b`` and ``a['b']`` / ``a[0]``: mapping key (missing key → ``null``, as JUEL's
  map resolver), then a non-method attribute, then a Java-bean getter ``getB()`` /
  ``isB()``; names starting with ``_`` are never reachable;
* method calls ``a.m(x, y)`` on public methods, plus the Java collection methods models
  use (``size()``, ``isEmpty()``, ``contains(x)``, ``get(i)``, ``length()``);
* ``== != < > <= >=`` and ``eq ne lt gt le ge``; ``&& || !`` and ``and or not``;
  ``empty x``; ``+ - * / div % mod``, unary ``-``; ``c ? a : b``; parentheses.

Coercions follow the EL spec where a model can notice them: ``null`` and ``''`` are
false, ``'true'`` (any case) is true; ``==`` between a number and a string compares
numbers; relational operators with a ``null`` operand are false.

Expressions are parsed once (:func:`compile_expression` caches by source text) and
evaluated many times against a variables mapping; nothing here uses ``eval``. Every
error is an :class:`ExpressionError` that names the expression and the 1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "Execution",
    "Expression",
    "ExpressionError",
    "compile_expression",
    "evaluate",
    "is_expression",
]


class ExpressionError(Exception):
    """An expression could not be parsed or evaluated.

    ``expression`` is the whole source text and ``position`` the 0-based offset of the
    offending token in it (``None`` when the error concerns the whole expression).
    """

    def __init__(self, reason: str, expression: str, position: int | None = None) -> None:
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"{reason}{where} in expression {expression!r}")
        self.reason = reason
        self.expression = expression
        self.position = position


def is_expression(text: str) -> bool:
    """True when ``text`` contains a ``${...}`` part (and is therefore not a plain literal)."""
    return "${" in text.replace("\\${", "")


class Execution:
    """What ``execution`` means inside an expression: a view on the variables.

    The engine may pass a subclass (e.g. one that also knows the business key) to
    :meth:`Expression.evaluate`; the method names are Camunda's, hence camelCase.
    """

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._variables = variables

    def getVariable(self, name: str) -> Any:  # noqa: N802 - Camunda's name
        return self._variables.get(name)

    def hasVariable(self, name: str) -> bool:  # noqa: N802
        return name in self._variables

    def getVariableLocal(self, name: str) -> Any:  # noqa: N802
        return self._variables.get(name)

    def hasVariableLocal(self, name: str) -> bool:  # noqa: N802
        return name in self._variables

    def getVariables(self) -> dict[str, Any]:  # noqa: N802
        return dict(self._variables)


# ----------------------------------------------------------------------------- tokens

_KEYWORDS: Final = frozenset(
    {"true", "false", "null", "empty", "not", "and", "or", "eq", "ne", "lt", "gt", "le", "ge", "div", "mod"}
)
_UNSUPPORTED_KEYWORDS: Final = frozenset({"instanceof"})
_WORD_OPERATORS: Final = {
    "and": "&&", "or": "||", "not": "!", "eq": "==", "ne": "!=",
    "lt": "<", "gt": ">", "le": "<=", "ge": ">=", "div": "/", "mod": "%",
}
_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,?:+\-*/%])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number" "string" "name" "op" "end"
    value: str
    pos: int


def _tokenize(source: str, start: int) -> tuple[list[_Token], int]:
    """Tokens of one ``${...}`` body starting at ``start``; returns them and the offset after ``}``."""
    tokens: list[_Token] = []
    i = start
    n = len(source)
    while i < n:
        ch = source[i]
        if ch == "}":
            tokens.append(_Token("end", "}", i))
            return tokens, i + 1
        if ch in "'\"":
            value, end = _read_string(source, i)
            tokens.append(_Token("string", value, i))
            i = end
            continue
        m = _TOKEN_RE.match(source, i)
        if m is None:
            raise ExpressionError(f"unexpected character {ch!r}", source, i)
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "name" and value in _WORD_OPERATORS:
                kind, value = "op", _WORD_OPERATORS[value]
            elif kind == "name" and value in _UNSUPPORTED_KEYWORDS:
                raise ExpressionError(f"operator {value!r} is not supported", source, i)
            tokens.append(_Token(kind, value, i))
        i = m.end()
    raise ExpressionError("missing '}'", source, start - 2)


def _read_string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    out: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and source[i + 1] in (quote, "\\"):
            out.append(source[i + 1])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ExpressionError("unterminated string literal", source, start)


# ----------------------------------------------------------------------------- nodes


class _Scope:
    __slots__ = ("variables", "execution", "source")

    def __init__(self, variables: Mapping[str, Any], execution: object | None, source: str) -> None:
        self.variables = variables
        self.execution = execution
        self.source = source


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def evaluate(self, scope: _Scope) -> Any:
        raise NotImplementedError

    def fail(self, scope: _Scope, reason: str) -> ExpressionError:
        return ExpressionError(reason, scope.source, self.pos)


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: Any) -> None:
        super().__init__(pos)
        self.value = value

    def evaluate(self, scope: _Scope) -> Any:
        return self.value


class _Identifier(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def evaluate(self, scope: _Scope) -> Any:
        variables = scope.variables
        if self.name in variables:
            return variables[self.name]
        if self.name == "execution":
            return scope.execution if scope.execution is not None else Execution(variables)
        # Camunda fails the same way ("Cannot resolve identifier"); a silent null would
        # route a gateway down the wrong branch.
        raise self.fail(scope, f"unknown variable {self.name!r}")


class _Property(_Node):
    __slots__ = ("target", "name")

    def __init__(self, pos: int, target: _Node, name: _Node) -> None:
        super().__init__(pos)
        self.target = target
        self.name = name

    def evaluate(self, scope: _Scope) -> Any:
        obj = self.target.evaluate(scope)
        key = self.name.evaluate(scope)
        if obj is None:
            raise self.fail(scope, f"cannot read property {key!r} of null")
        return _get_property(obj, key, self, scope)


class _Call(_Node):
    __slots__ = ("target", "name", "args")

    def __init__(self, pos: int, target: _Node, name: str, args: tuple[_Node, ...]) -> None:
        super().__init__(pos)
        self.target = target
        self.name = name
        self.args = args

    def evaluate(self, scope: _Scope) -> Any:
        obj = self.target.evaluate(scope)
        if obj is None:
            raise self.fail(scope, f"cannot call {self.name}() on null")
        args = [a.evaluate(scope) for a in self.args]
        method = _find_method(obj, self.name)
        if method is None:
            raise self.fail(scope, f"{type(obj).__name__} has no method {self.name}()")
        try:
            return method(*args)
        except ExpressionError:
            raise
        except Exception as exc:  # a plugin object's method failed: report where
            raise self.fail(scope, f"{self.name}() failed: {exc}") from exc


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, pos: int, op: str, operand: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.operand = operand

    def evaluate(self, scope: _Scope) -> Any:
        value = self.operand.evaluate(scope)
        if self.op == "!":
            return not _to_bool(value, self, scope)
        if self.op == "empty":
            return _is_empty(value)
        number = _to_number(value, self, scope)
        return -number


class _Logical(_Node):
    __slots__ = ("op", "left", "right")

    def __init__(self, pos: int, op: str, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.left = left
        self.right = right

    def evaluate(self, scope: _Scope) -> bool:
        left = _to_bool(self.left.evaluate(scope), self.left, scope)
        if self.op == "&&":
            return left and _to_bool(self.right.evaluate(scope), self.right, scope)
        return left or _to_bool(self.right.evaluate(scope), self.right, scope)


class _Binary(_Node):
    __slots__ = ("op", "left", "right")

    def __init__(self, pos: int, op: str, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.left = left
        self.right = right

    def evaluate(self, scope: _Scope) -> Any:
        a = self.left.evaluate(scope)
        b = self.right.evaluate(scope)
        op = self.op
        if op == "==":
            return _equals(a, b, self, scope)
        if op == "!=":
            return not _equals(a, b, self, scope)
        if op in ("<", ">", "<=", ">="):
            return _compare(op, a, b, self, scope)
        return _arithmetic(op, a, b, self, scope)


class _Conditional(_Node):
    __slots__ = ("test", "then", "otherwise")

    def __init__(self, pos: int, test: _Node, then: _Node, otherwise: _Node) -> None:
        super().__init__(pos)
        self.test = test
        self.then = then
        self.otherwise = otherwise

    def evaluate(self, scope: _Scope) -> Any:
        if _to_bool(self.test.evaluate(scope), self.test, scope):
            return self.then.evaluate(scope)
        return self.otherwise.evaluate(scope)


# ----------------------------------------------------------------------------- semantics


def _get_property(obj: Any, key: Any, node: _Node, scope: _Scope) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        index = _to_index(key, node, scope)
        return obj[index] if -len(obj) <= index < len(obj) else None
    name = str(key)
    if name.startswith("_") or not name:
        raise node.fail(scope, f"property {name!r} is not accessible")
    value = getattr(obj, name, _MISSING)
    if value is not _MISSING and not callable(value):
        return value
    for getter in ("get" + name[0].upper() + name[1:], "is" + name[0].upper() + name[1:]):
        method = getattr(obj, getter, None)
        if callable(method):
            return method()
    raise node.fail(scope, f"{type(obj).__name__} has no property {name!r}")


def _find_method(obj: Any, name: str) -> Callable[..., Any] | None:
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


_MISSING: Final = object()


def _to_bool(value: Any, node: _Node, scope: _Scope) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        return value.lower() == "true"
    raise node.fail(scope, f"cannot use {type(value).__name__} {value!r} as a boolean")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_number(value: Any, node: _Node, scope: _Scope) -> int | float:
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
    raise node.fail(scope, f"cannot use {type(value).__name__} {value!r} as a number")


def _to_index(value: Any, node: _Node, scope: _Scope) -> int:
    number = _to_number(value, node, scope)
    if isinstance(number, float):
        if not number.is_integer():
            raise node.fail(scope, f"index {value!r} is not an integer")
        return int(number)
    return number


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Sized):
        return len(value) == 0
    return False


def _equals(a: Any, b: Any, node: _Node, scope: _Scope) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return _to_bool(a, node, scope) == _to_bool(b, node, scope)
    if _is_number(a) or _is_number(b):
        if isinstance(a, str) and not _looks_numeric(a) or isinstance(b, str) and not _looks_numeric(b):
            return False
        return _to_number(a, node, scope) == _to_number(b, node, scope)
    if isinstance(a, str) or isinstance(b, str):
        return _to_text(a) == _to_text(b)
    return bool(a == b)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == ""
    return True


def _compare(op: str, a: Any, b: Any, node: _Node, scope: _Scope) -> bool:
    if a is None or b is None:
        return False
    if _is_number(a) or _is_number(b):
        x: Any = _to_number(a, node, scope)
        y: Any = _to_number(b, node, scope)
    elif isinstance(a, str) or isinstance(b, str):
        x, y = _to_text(a), _to_text(b)
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
        raise node.fail(scope, f"cannot compare {type(a).__name__} with {type(b).__name__}") from exc


def _arithmetic(op: str, a: Any, b: Any, node: _Node, scope: _Scope) -> int | float:
    x = _to_number(a, node, scope)
    y = _to_number(b, node, scope)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:
        raise node.fail(scope, "division by zero")
    if op == "/":
        return x / y  # EL division is never integer division
    return x % y


# ----------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the tokens of one ``${...}`` body (EL precedence)."""

    def __init__(self, source: str, tokens: list[_Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, reason: str, token: _Token | None = None) -> ExpressionError:
        return ExpressionError(reason, self.source, (token or self.peek()).pos)

    def accept(self, *ops: str) -> _Token | None:
        token = self.peek()
        if token.kind == "op" and token.value in ops:
            self.i += 1
            return token
        return None

    def expect(self, op: str) -> _Token:
        token = self.accept(op)
        if token is None:
            found = self.peek()
            shown = "end of expression" if found.kind == "end" else repr(found.value)
            raise self.error(f"expected {op!r} but found {shown}")
        return token

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise self.error("empty expression")
        node = self.conditional()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().value!r}")
        return node

    def conditional(self) -> _Node:
        test = self.logical_or()
        token = self.accept("?")
        if token is None:
            return test
        then = self.conditional()
        self.expect(":")
        otherwise = self.conditional()
        return _Conditional(token.pos, test, then, otherwise)

    def logical_or(self) -> _Node:
        node = self.logical_and()
        while (token := self.accept("||")) is not None:
            node = _Logical(token.pos, "||", node, self.logical_and())
        return node

    def logical_and(self) -> _Node:
        node = self.equality()
        while (token := self.accept("&&")) is not None:
            node = _Logical(token.pos, "&&", node, self.equality())
        return node

    def equality(self) -> _Node:
        node = self.relational()
        while (token := self.accept("==", "!=")) is not None:
            node = _Binary(token.pos, token.value, node, self.relational())
        return node

    def relational(self) -> _Node:
        node = self.additive()
        while (token := self.accept("<", ">", "<=", ">=")) is not None:
            node = _Binary(token.pos, token.value, node, self.additive())
        return node

    def additive(self) -> _Node:
        node = self.multiplicative()
        while (token := self.accept("+", "-")) is not None:
            node = _Binary(token.pos, token.value, node, self.multiplicative())
        return node

    def multiplicative(self) -> _Node:
        node = self.unary()
        while (token := self.accept("*", "/", "%")) is not None:
            node = _Binary(token.pos, token.value, node, self.unary())
        return node

    def unary(self) -> _Node:
        token = self.accept("!", "-")
        if token is not None:
            return _Unary(token.pos, token.value, self.unary())
        token = self.peek()
        if token.kind == "name" and token.value == "empty":
            self.take()
            return _Unary(token.pos, "empty", self.unary())
        return self.postfix()

    def postfix(self) -> _Node:
        node = self.primary()
        while True:
            if (token := self.accept(".")) is not None:
                name = self.take()
                if name.kind != "name":
                    raise self.error("expected a property name after '.'", name)
                if self.accept("(") is not None:
                    node = _Call(name.pos, node, name.value, self.arguments())
                else:
                    node = _Property(name.pos, node, _Literal(name.pos, name.value))
            elif (token := self.accept("[")) is not None:
                key = self.conditional()
                self.expect("]")
                node = _Property(token.pos, node, key)
            else:
                return node

    def arguments(self) -> tuple[_Node, ...]:
        args: list[_Node] = []
        if self.accept(")") is not None:
            return ()
        while True:
            args.append(self.conditional())
            if self.accept(")") is not None:
                return tuple(args)
            self.expect(",")

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "number":
            text = token.value
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            return _Literal(token.pos, value)
        if token.kind == "string":
            return _Literal(token.pos, token.value)
        if token.kind == "name":
            if token.value in ("true", "false"):
                return _Literal(token.pos, token.value == "true")
            if token.value == "null":
                return _Literal(token.pos, None)
            if token.value in _KEYWORDS:
                raise self.error(f"unexpected keyword {token.value!r}", token)
            if self.peek().kind == "op" and self.peek().value == "(":
                # EL functions need a function mapper (prefix:name); Camunda has none here.
                raise self.error(f"function call {token.value}() is not supported", token)
            return _Identifier(token.pos, token.value)
        if token.kind == "op" and token.value == "(":
            node = self.conditional()
            self.expect(")")
            return node
        if token.kind == "end":
            raise self.error("unexpected end of expression", token)
        raise self.error(f"unexpected {token.value!r}", token)


# ----------------------------------------------------------------------------- public


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A compiled expression: literal text parts and ``${...}`` parts in order."""

    source: str
    parts: tuple[str | _Node, ...]

    @property
    def is_literal(self) -> bool:
        """True when the text has no ``${...}`` part."""
        return all(isinstance(p, str) for p in self.parts)

    def evaluate(self, variables: Mapping[str, Any], *, execution: object | None = None) -> Any:
        """Evaluate against ``variables``; ``execution`` replaces the default :class:`Execution`."""
        parts = self.parts
        if len(parts) == 1:
            part = parts[0]
            if isinstance(part, str):
                return part
            return part.evaluate(_Scope(variables, execution, self.source))
        if not parts:
            return ""
        scope = _Scope(variables, execution, self.source)
        return "".join(p if isinstance(p, str) else _to_text(p.evaluate(scope)) for p in parts)


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Parse ``source`` once; raises :class:`ExpressionError` on a syntax error."""
    parts: list[str | _Node] = []
    literal: list[str] = []
    i = 0
    n = len(source)
    while i < n:
        if source.startswith("\\${", i):
            literal.append("${")
            i += 3
        elif source.startswith("${", i):
            if literal:
                parts.append("".join(literal))
                literal = []
            tokens, i = _tokenize(source, i + 2)
            parts.append(_Parser(source, tokens).parse())
        else:
            literal.append(source[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    return Expression(source, tuple(parts))


def evaluate(source: str, variables: Mapping[str, Any], *, execution: object | None = None) -> Any:
    """Compile (cached) and evaluate ``source`` against ``variables``."""
    return compile_expression(source).evaluate(variables, execution=execution)
