"""Run a :class:`~.plan.QueryPlan` against one FHIR store: patient id sets and set algebra.

Each distinct step runs once (two criteria asking the same search share it), at most
``concurrency`` searches at a time.  A search asks only for the element naming the patient
(``_elements=subject``; ``_elements=id`` for Patient) with a large ``_count`` and streams its
pages, keeping nothing but the patient ids: memory is one id set per distinct search, never a
resource.  Then::

    included = ⋂ over inclusion groups (⋃ over the group's criteria)      (no groups: all patients)
    excluded = ⋃ over exclusion groups (⋂ over the group's criteria)
    cohort   = included − excluded

A negated criterion (CCDL v3 ``"negated": true``) stands for all patients minus its matches.
References that do not name a Patient (``Group/…``) are skipped and counted in the stats.
The first failing search cancels the others and its error propagates unchanged.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dsf_core.api import FhirClient

from dsf_plugin_feasibility.evaluation._gather import gather_or_cancel
from dsf_plugin_feasibility.evaluation.plan import ALL_PATIENTS, CriterionPlan, QueryPlan, ReferencedSearch, Search, Step

__all__ = ["CohortCounter", "CohortResult", "SearchStats", "patient_id"]

_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")


def patient_id(reference: Any) -> str | None:
    """The Patient id a Reference names (relative or absolute URL), else None."""
    if not isinstance(reference, Mapping):
        return None
    text = reference.get("reference")
    if not isinstance(text, str):
        return None
    match = _PATIENT_REF.search(text)
    return match[1] if match else None


@dataclass(slots=True)
class SearchStats:
    searches: int = 0  # search requests started (a paged search counts once)
    pages: int = 0  # Bundles received
    resources: int = 0  # matches read
    unresolved: int = 0  # matches whose patient reference names no Patient


@dataclass(frozen=True, slots=True)
class CohortResult:
    count: int
    seconds: float
    searches: int
    pages: int
    resources: int
    unresolved: int


class CohortCounter:
    """Counts a query plan's patients on one store."""

    def __init__(
        self,
        client: FhirClient,
        *,
        page_size: int = 1000,
        concurrency: int = 4,
        reference_chunk: int = 50,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if page_size < 1 or concurrency < 1 or reference_chunk < 1:
            raise ValueError("page_size, concurrency and reference_chunk must be positive")
        self.client = client
        self.page_size = page_size
        self.reference_chunk = reference_chunk
        self._semaphore = asyncio.Semaphore(concurrency)
        self._monotonic = monotonic

    async def count(self, plan: QueryPlan) -> CohortResult:
        start = self._monotonic()
        stats = SearchStats()
        patients = await self.patients(plan, stats)
        return CohortResult(
            len(patients), self._monotonic() - start, stats.searches, stats.pages, stats.resources, stats.unresolved
        )

    async def patients(self, plan: QueryPlan, stats: SearchStats | None = None) -> set[str]:
        """The ids of the plan's patients on this store."""
        stats = stats if stats is not None else SearchStats()
        steps = plan.steps()
        results = dict(zip(steps, await gather_or_cancel([self._step(s, stats) for s in steps]), strict=True))
        everyone = results.get(ALL_PATIENTS, set())

        def matches(criterion: CriterionPlan) -> set[str]:
            found: set[str] = set().union(*(results[s] for s in criterion.steps))
            return everyone - found if criterion.negated else found

        included = set(everyone) if not plan.inclusion else None
        for group in plan.inclusion:
            union = set().union(*(matches(c) for c in group))
            included = union if included is None else included & union
        excluded: set[str] = set()
        for group in plan.exclusion:
            members = [matches(c) for c in group]
            excluded |= set.intersection(*members) if members else set()
        assert included is not None
        return included - excluded

    async def _step(self, step: Step, stats: SearchStats) -> set[str]:
        if isinstance(step, Search):
            return await self._search(step, (), stats)
        ids = await self._search(step.lookup, (), stats, ids_of_matches=True)
        if not ids:
            return set()
        ordered = sorted(ids)
        type_ = step.lookup.resource_type
        chunks = [ordered[i : i + self.reference_chunk] for i in range(0, len(ordered), self.reference_chunk)]
        parts = await gather_or_cancel(
            [self._search(step.search, ((step.reference_parameter, ",".join(f"{type_}/{i}" for i in chunk)),), stats) for chunk in chunks]
        )
        return set().union(*parts)

    async def _search(
        self, search: Search, extra: tuple[tuple[str, str], ...], stats: SearchStats, *, ids_of_matches: bool = False
    ) -> set[str]:
        element = None if ids_of_matches else search.patient_element
        params = [*search.params, *extra, ("_elements", element or "id"), ("_count", str(self.page_size))]
        found: set[str] = set()
        async with self._semaphore:
            stats.searches += 1
            async for bundle in self.client.search_pages(search.resource_type, params):
                stats.pages += 1
                for resource in _matches(bundle):
                    stats.resources += 1
                    value = resource.get("id") if element is None else patient_id(resource.get(element))
                    if isinstance(value, str) and value:
                        found.add(value)
                    else:
                        stats.unresolved += 1
        return found


def _matches(bundle: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource")
        if isinstance(resource, Mapping) and (entry.get("search") or {}).get("mode", "match") == "match":
            yield resource
