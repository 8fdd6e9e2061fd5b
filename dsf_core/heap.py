"""Garbage-collector settings for long-running node processes.

A node allocates in bursts: a search page of 1,000 entries parsed into ~20,000 dicts, lists and
strings, a Bundle assembled, a process instance's state rebuilt.  With CPython's default
thresholds (700, 10, 10) such a burst triggers dozens of young collections and, since the
objects of a page live while it is read, promotes them, so full collections come often — and
a full collection walks every object of the process: the imported modules, the FHIR models,
the parsed BPMN specs, SQLAlchemy's metadata, tens of MB that never become garbage.

:func:`settle` is called once a process has started its servers: it collects what start-up
left behind, moves everything that survived into the permanent generation (``gc.freeze``, not
walked by later collections) and raises the young threshold so a burst costs a few
collections instead of dozens.  Reference counting still frees almost everything at once; the
collector only finds cycles, which a node makes few of.  The price: a frozen object that later
ends up in unreachable cycles is never collected — start-up state is meant to live as long as
the process, so that is a few objects at most (a replaced cache, a reloaded plugin's spec).
"""

from __future__ import annotations

import gc
import logging

__all__ = ["YOUNG_THRESHOLD", "settle"]

log = logging.getLogger("dsf.heap")

#: Allocations (minus deallocations) between two young collections; CPython's default is 700.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Freeze what start-up allocated and make young collections rarer (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    log.debug("heap settled: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
