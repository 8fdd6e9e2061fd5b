"""The event loop node processes run on: uvloop where installed, else asyncio's own.

uvloop's loop and transports (TLS included) take less CPU a request than asyncio's: the mailbox
creates ~6 % more Tasks a second on it (alternating runs of the create benchmark). Everything a
node does runs on both; ``server.event_loop = "asyncio"`` chooses asyncio's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["loop_factory", "run"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LoopName = Literal["uvloop", "asyncio"]


def loop_factory(name: LoopName = "uvloop") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the named loop; None for asyncio's (or when uvloop is not installed)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; running on asyncio's event loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], name: LoopName = "uvloop") -> T:
    """``asyncio.run(main)`` on the named loop."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
