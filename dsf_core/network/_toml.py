"""The little TOML the network files need: comments, tables, arrays of tables, scalars, string lists.

The standard library reads TOML but does not write it; the files written here are flat enough
that a dependency would be more code to trust than these lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePath

Value = str | int | bool | PurePath | Sequence[str]


def _value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, PurePath):
        value = value.as_posix()
    if isinstance(value, str):
        # JSON string escapes (\", \\, \n, \uXXXX with ensure_ascii) are all valid TOML basic-string escapes.
        return json.dumps(value)
    return "[" + ", ".join(json.dumps(v) for v in value) + "]"


def table(header: str, values: Mapping[str, Value | None]) -> str:
    """``[header]`` (or ``[[header]]`` when written so) followed by its non-None keys."""
    lines = [header]
    lines += [f"{key} = {_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def document(comments: Sequence[str], tables: Sequence[str]) -> str:
    head = "".join(f"# {c}\n" if c else "#\n" for c in comments)
    return head + "\n" + "\n".join(tables)
