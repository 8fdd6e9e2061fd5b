"""Caches of values derived from stored resources, dropped when a resource of their types is written."""

from __future__ import annotations

import time
from typing import Any


class TypeCache:
    """Values derived from resources of some types, dropped when one of them is written.

    Writes of this process clear the cache at once.  On PostgreSQL other workers may write
    too, so entries also expire after ``ttl`` seconds: an allow-list or ActivityDefinition
    change made through another worker takes effect within that time.
    """

    def __init__(self, types: frozenset[str], ttl: float | None) -> None:
        self.types = types
        self.ttl = ttl
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return None
        if self.ttl is not None and time.monotonic() - hit[0] > self.ttl:
            del self._data[key]
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) > 10_000:
            self._data.clear()
        self._data[key] = (time.monotonic(), value)

    def clear(self) -> None:
        self._data.clear()
