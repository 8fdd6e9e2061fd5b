"""``gather`` that fails fast: the first error cancels the siblings (and is awaited out) before it propagates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["gather_or_cancel"]

_T = TypeVar("_T")


async def gather_or_cancel(awaitables: list[Awaitable[_T]]) -> list[_T]:
    """Results in input order; on the first failure the rest are cancelled and that failure is raised.

    When several have failed by the time we look, the earliest in input order wins, so the
    error a caller sees does not depend on scheduling more than it must.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    if not tasks:
        return []
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            error = task.exception() if task in done and not task.cancelled() else None
            if error is not None:
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
