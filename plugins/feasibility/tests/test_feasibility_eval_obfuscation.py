"""Laplace obfuscation: tens, never negative, stable per true count, the right noise distribution."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator

import pytest

from dsf_plugin_feasibility.evaluation.obfuscation import LaplaceObfuscator


def sequence(*values: float) -> Iterator[float]:
    yield from values


def test_results_are_tens_never_negative_and_stable_per_count() -> None:
    obfuscator = LaplaceObfuscator()
    for count in [0, 1, 3, 9, 10, 14, 15, 99, 1000, 123456]:
        first = obfuscator.obfuscate(count)
        assert first % 10 == 0 and first >= 0
        assert all(obfuscator.obfuscate(count) == first for _ in range(20))
    assert obfuscator.obfuscate(0) in (0, 10, 20, 30)  # noise beyond ±25 is vanishingly rare (p < 1e-5)


def test_inverse_cdf_and_java_rounding() -> None:
    # u = r - 0.5; noise = -2·sign(u)·ln(1 - 2|u|)
    draws = sequence(0.5, 0.9, 0.1, 0.0, 0.75)
    obfuscator = LaplaceObfuscator(uniform=lambda: next(draws))
    assert obfuscator.noise() == 0.0
    assert obfuscator.noise() == pytest.approx(-2 * math.log(1 - 0.8))  # ≈ +3.22
    assert obfuscator.noise() == pytest.approx(2 * math.log(1 - 0.8))  # ≈ −3.22
    assert obfuscator.noise() == pytest.approx(-2 * math.log(0.5))  # 0.0 is redrawn: the next draw 0.75 counts
    # 15 + 0 = 15 → 1.5 rounds half up to 2 → 20 (Java Math.round, not banker's rounding)
    halves = LaplaceObfuscator(uniform=lambda: 0.5)
    assert halves.obfuscate(15) == 20 and halves.obfuscate(25) == 30 and halves.obfuscate(4) == 0
    # a large negative draw on a small count is clamped at zero
    low = LaplaceObfuscator(uniform=lambda: 1e-12)
    assert low.obfuscate(3) == 0


def test_noise_follows_laplace_with_scale_two() -> None:
    obfuscator = LaplaceObfuscator()
    draws = [obfuscator.noise() for _ in range(40_000)]
    assert abs(statistics.fmean(draws)) < 0.1
    assert statistics.fmean(abs(d) for d in draws) == pytest.approx(2.0, rel=0.05)  # E|X| = b
    assert statistics.variance(draws) == pytest.approx(8.0, rel=0.1)  # Var = 2·b²


def test_the_cache_is_bounded_least_recently_used() -> None:
    obfuscator = LaplaceObfuscator(max_cache=3)
    kept = obfuscator.obfuscate(500)
    for count in (1, 2):
        obfuscator.obfuscate(count)
    obfuscator.obfuscate(500)  # touched: now the most recent
    obfuscator.obfuscate(3)  # evicts 1, not 500
    assert len(obfuscator) == 3 and obfuscator.obfuscate(500) == kept
    assert LaplaceObfuscator().max_cache == 10_000
    with pytest.raises(ValueError, match="negative"):
        obfuscator.obfuscate(-1)
