"""Does a data set's content fit the MIME type it declares? (as the MII plugins check it)

:func:`check` detects the type from the first bytes and compares it with the declared one: a
different *base* type (``text`` vs ``application``) is an error, a different subtype only a
warning. Detection is by magic numbers for binary formats and by a look at the text for the
rest; as with Apache Tika (which the Java plugins use), text content takes the declared type as a
hint, because ``text/csv`` or ``application/fhir+json`` cannot be told from plain text or JSON by
content alone.

No third-party detector fitted: the pure-Python ones either need a newer Python (puremagic 2),
name a ZIP a Word document (puremagic 1.x), are unmaintained since 2022 (filetype) or know no
text formats; libmagic and ML detectors are not pure Python.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

__all__ = ["HEAD_SIZE", "MimeCheck", "MimeTypeMismatch", "check", "detect"]

log = logging.getLogger("dsf.plugin.data_transfer")

#: How many leading bytes detection looks at.
HEAD_SIZE = 64 * 1024

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"PK\x07\x08", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (0, b"PAR1", "application/vnd.apache.parquet"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-tika-msoffice"),
    (257, b"ustar", "application/x-tar"),
)
_BOMS = (b"\xef\xbb\xbf",)
_CONTROL = frozenset(range(0, 32)) - {9, 10, 12, 13, 27}


class MimeTypeMismatch(ValueError):
    """The content's base MIME type is not the declared one."""


@dataclass(frozen=True)
class MimeCheck:
    declared: str
    detected: str

    @property
    def warning(self) -> str | None:
        if _essence(self.declared) == self.detected:
            return None
        return f"declared MIME type {self.declared} does not match detected MIME type {self.detected}"


def _essence(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _base(media_type: str) -> str:
    return _essence(media_type).split("/", 1)[0]


def _text(head: bytes) -> str | None:
    """The head as text, or None when it looks binary (a multi-byte character cut at the end is fine)."""
    for bom in _BOMS:
        head = head.removeprefix(bom)
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if text and sum(1 for c in text[:4096] if ord(c) in _CONTROL) > len(text[:4096]) // 100:
        return None
    return text


def _json_lines(text: str) -> bool:
    """Two or more of the first (complete) lines are each a JSON value: newline-delimited JSON."""
    lines = text.splitlines()
    if not text.endswith("\n"):
        lines = lines[:-1]  # the head may end inside the last line
    lines = [line for line in lines if line.strip()][:3]
    if len(lines) < 2:
        return False
    try:
        for line in lines:
            json.loads(line)
    except ValueError:
        return False
    return True


def detect(head: bytes, declared: str) -> str:
    """The MIME type of content beginning with ``head``; ``declared`` is the hint for text formats."""
    for offset, magic, media_type in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return media_type
    text = _text(head)
    if text is None:
        return "application/octet-stream"
    hint = _essence(declared)
    start = text.lstrip()
    if start.startswith("<"):
        return hint if hint.endswith(("/xml", "+xml")) else "application/xml"
    if start.startswith(("{", "[")):
        if hint.endswith(("/json", "+json", "ndjson")):
            return hint
        return "application/x-ndjson" if _json_lines(start) else "application/json"
    return hint if _base(hint) == "text" else "text/plain"


def check(head: bytes, declared: str | None) -> MimeCheck:
    """Raise :class:`MimeTypeMismatch` when the base types differ; log a warning when only the subtypes do."""
    if not declared or "/" not in declared:
        raise MimeTypeMismatch(f"no valid declared MIME type ({declared!r})")
    result = MimeCheck(declared, detect(head, declared))
    if _base(result.declared) != _base(result.detected):
        raise MimeTypeMismatch(
            f"declared base MIME type of {result.declared} does not match detected base MIME type of {result.detected}"
        )
    if result.warning:
        log.warning("%s", result.warning)
    return result
