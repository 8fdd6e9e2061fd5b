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

Coercions and property resolution follow the EL spec where a model can notice them
(:mod:`dsf_core.bpe.coercion`). ``#{...}`` (EL deferred syntax) is not supported: DSF uses
it for deployment placeholders such as ``#{version}``, replaced before parsing.

Expressions are parsed once (:func:`compile_expression` caches by source text) and
evaluated many times against a variables mapping; nothing here uses ``eval``. Every
error is an :class:`ExpressionError` that names the expression and the 1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from dsf_core.bpe import coercion
from dsf_core.bpe.coercion import CoercionError

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

    def boolean(self, scope: _Scope) -> bool:
        """Evaluate and coerce to boolean, blaming this node if that is impossible."""
        try:
            return coercion.to_bool(self.evaluate(scope))
        except CoercionError as exc:
            raise self.fail(scope, exc.reason) from None


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
        try:
            return coercion.get_property(obj, key)
        except CoercionError as exc:
            raise self.fail(scope, exc.reason) from None


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
        method = coercion.find_method(obj, self.name)
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
        try:
            if self.op == "!":
                return not coercion.to_bool(value)
            if self.op == "empty":
                return coercion.is_empty(value)
            return -coercion.to_number(value)
        except CoercionError as exc:
            raise self.fail(scope, exc.reason) from None


class _Pair(_Node):
    """A node with an operator between two operands."""

    __slots__ = ("op", "left", "right")

    def __init__(self, pos: int, op: str, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.left = left
        self.right = right


class _Logical(_Pair):
    __slots__ = ()

    def evaluate(self, scope: _Scope) -> bool:
        left = self.left.boolean(scope)
        if self.op == "&&":
            return left and self.right.boolean(scope)
        return left or self.right.boolean(scope)


class _Binary(_Pair):
    __slots__ = ()

    def evaluate(self, scope: _Scope) -> Any:
        a = self.left.evaluate(scope)
        b = self.right.evaluate(scope)
        op = self.op
        try:
            if op == "==":
                return coercion.equals(a, b)
            if op == "!=":
                return not coercion.equals(a, b)
            if op in ("<", ">", "<=", ">="):
                return coercion.compare(op, a, b)
            return coercion.arithmetic(op, a, b)
        except CoercionError as exc:
            raise self.fail(scope, exc.reason) from None


class _Conditional(_Node):
    __slots__ = ("test", "then", "otherwise")

    def __init__(self, pos: int, test: _Node, then: _Node, otherwise: _Node) -> None:
        super().__init__(pos)
        self.test = test
        self.then = then
        self.otherwise = otherwise

    def evaluate(self, scope: _Scope) -> Any:
        if self.test.boolean(scope):
            return self.then.evaluate(scope)
        return self.otherwise.evaluate(scope)


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
        return "".join(p if isinstance(p, str) else coercion.to_text(p.evaluate(scope)) for p in parts)


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
