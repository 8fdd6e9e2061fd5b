"""Laplace obfuscation of counts, cached per true count (Java ``FeasibilityCachingLaplaceCountObfuscator``).

noise = Laplace(0, b) with b = sensitivity / epsilon = 1 / 0.5 = 2, drawn by the inverse CDF
from a uniform u in (−0.5, 0.5): ``−b · sign(u) · ln(1 − 2|u|)``; the uniform comes from the
operating system's cryptographically secure source.  The answer is
``max(0, round((count + noise) / 10) · 10)`` with Java's ``Math.round`` (halves round up).

The obfuscated value is remembered per true count (at most 10,000 counts, least recently used
evicted) for the object's lifetime, so asking the same query again yields the same answer and
repeated queries cannot be averaged to the true count.  Keep one instance per node (the
execute activity shares it through ``api.shared``).
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LaplaceObfuscator"]

_SYSTEM_RANDOM = secrets.SystemRandom()


class LaplaceObfuscator:
    def __init__(
        self,
        *,
        sensitivity: float = 1.0,
        epsilon: float = 0.5,
        max_cache: int = 10_000,
        uniform: Callable[[], float] = _SYSTEM_RANDOM.random,
    ) -> None:
        """``uniform`` draws from [0, 1) (tests inject a fixed sequence); 0 is redrawn."""
        if sensitivity <= 0 or epsilon <= 0 or max_cache < 1:
            raise ValueError("sensitivity, epsilon and max_cache must be positive")
        self.scale = sensitivity / epsilon
        self.max_cache = max_cache
        self._uniform = uniform
        self._cache: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def obfuscate(self, count: int) -> int:
        if count < 0:
            raise ValueError(f"a count cannot be negative: {count}")
        with self._lock:
            if count in self._cache:
                self._cache.move_to_end(count)
                return self._cache[count]
            value = max(0, math.floor((count + self.noise()) / 10 + 0.5) * 10)
            self._cache[count] = value
            if len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
            return value

    def noise(self) -> float:
        """One Laplace(0, scale) draw."""
        r = self._uniform()
        while r <= 0.0 or r >= 1.0:  # u = −0.5 would be ln(0)
            r = self._uniform()
        u = r - 0.5
        return -self.scale * math.copysign(1.0, u) * math.log(1 - 2 * abs(u)) if u else 0.0

    def __len__(self) -> int:
        return len(self._cache)
