"""One feasibility evaluation over a site's data stores: count per store, summed.

Each store has a name, a :class:`~dsf_core.api.FhirClient` (base URL and auth from the node's
``[data_stores.<name>]``) and a strategy: ``structured-query`` (alias ``ccdl``, any case) counts
with FHIR searches planned from the structured query and the mapping table (:mod:`.cohort`);
``cql`` uploads Measure + Library and calls ``$evaluate-measure`` (:mod:`.cql`).  Stores run
concurrently; the structured query is planned once, before any store is asked, so a criterion
the mapping cannot express fails without touching a store.

Failure is all or nothing, as in the Java plugin: the first store that fails cancels the others
and the evaluation raises :class:`StoreEvaluationError` naming that store and the reason.  A
patient kept in two stores is counted twice (the stores are summed, not merged), as in Java.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from dsf_core.api import FhirClient, FhirClientError

from dsf_plugin_feasibility.evaluation._gather import gather_or_cancel
from dsf_plugin_feasibility.evaluation.cohort import CohortCounter
from dsf_plugin_feasibility.evaluation.cql import evaluate_cql
from dsf_plugin_feasibility.evaluation.errors import (
    EvaluationError,
    FeasibilityResourceError,
    StoreEvaluationError,
)
from dsf_plugin_feasibility.evaluation.mapping import MappingTable, load_mapping
from dsf_plugin_feasibility.evaluation.plan import QueryPlan, plan_query
from dsf_plugin_feasibility.evaluation.structured_query import StructuredQuery, parse_structured_query

__all__ = [
    "Evaluation",
    "EvaluationStore",
    "FeasibilityQuery",
    "StoreResult",
    "Strategy",
    "evaluate",
    "evaluate_feasibility",
]

STRUCTURED_QUERY_TYPE = "application/json"


class Strategy(StrEnum):
    STRUCTURED_QUERY = "structured-query"
    CQL = "cql"

    @classmethod
    def parse(cls, text: str) -> Strategy:
        """``structured-query``, ``ccdl`` or ``cql``, any case; ValueError otherwise."""
        key = text.strip().lower() if isinstance(text, str) else ""
        if key == "ccdl":
            return cls.STRUCTURED_QUERY
        try:
            return cls(key)
        except ValueError:
            raise ValueError(f"unknown evaluation strategy {text!r} (expected structured-query, ccdl or cql)") from None


class _StoreSettings(Protocol):
    """What :meth:`EvaluationStore.of` reads from the plugin's per-store settings."""

    @property
    def name(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def request_timeout(self) -> timedelta: ...


@dataclass(frozen=True, slots=True)
class EvaluationStore:
    name: str
    client: FhirClient
    strategy: Strategy = Strategy.STRUCTURED_QUERY
    #: Bound on one CQL evaluation including the async polling (Java ``requestTimeout``, 300 s).
    request_timeout: float = 300.0

    @classmethod
    def of(cls, settings: _StoreSettings, client: FhirClient) -> EvaluationStore:
        return cls(settings.name, client, Strategy.parse(settings.strategy), settings.request_timeout.total_seconds())


@dataclass(frozen=True, slots=True)
class FeasibilityQuery:
    """What the HRP sent: the structured query and/or the Measure + Library for CQL."""

    structured_query: StructuredQuery | None = None
    measure: Mapping[str, Any] | None = None
    library: Mapping[str, Any] | None = None

    @classmethod
    def from_resources(cls, measure: Mapping[str, Any], library: Mapping[str, Any]) -> FeasibilityQuery:
        """Measure + Library of the feasibility profiles; the structured query is read from the
        Library's ``application/json`` attachment when there is one (errors name its JSON path)."""
        attachment = next(
            (a for a in library.get("content") or [] if str(a.get("contentType", "")).lower() == STRUCTURED_QUERY_TYPE),
            None,
        )
        query = None
        if attachment is not None:
            try:
                raw = base64.b64decode(str(attachment.get("data", "")), validate=True)
            except binascii.Error as exc:
                raise FeasibilityResourceError(f"Library {library.get('url')}: structured query is not base64: {exc}") from None
            query = parse_structured_query(raw)
        return cls(query, measure, library)


@dataclass(frozen=True, slots=True)
class StoreResult:
    store: str
    strategy: Strategy
    count: int
    seconds: float
    #: structured-query: searches issued, pages read, resources seen; cql: status polls in ``searches``.
    searches: int = 0
    pages: int = 0
    resources: int = 0


@dataclass(frozen=True, slots=True)
class Evaluation:
    count: int
    stores: tuple[StoreResult, ...]
    seconds: float

    @property
    def searches(self) -> int:
        return sum(s.searches for s in self.stores)


async def evaluate(
    query: FeasibilityQuery | StructuredQuery,
    stores: Sequence[EvaluationStore],
    *,
    today: date | None = None,
    mapping: MappingTable | None = None,
    concurrency: int = 4,
    page_size: int = 1000,
) -> Evaluation:
    """The summed count over *stores*; :class:`StoreEvaluationError` when any store fails."""
    start = time.monotonic()
    if not stores:
        raise EvaluationError("no data stores to evaluate on")
    names = [s.name for s in stores]
    if len(set(names)) != len(names):
        raise EvaluationError(f"data store names repeat: {', '.join(names)}")
    feasibility = query if isinstance(query, FeasibilityQuery) else FeasibilityQuery(query)
    plan: QueryPlan | None = None
    if any(s.strategy is Strategy.STRUCTURED_QUERY for s in stores):
        if feasibility.structured_query is None:
            missing = [s.name for s in stores if s.strategy is Strategy.STRUCTURED_QUERY]
            raise FeasibilityResourceError(
                f"store(s) {', '.join(missing)} evaluate structured queries, but the Library has no {STRUCTURED_QUERY_TYPE} content"
            )
        table = mapping if mapping is not None else load_mapping()
        plan = plan_query(feasibility.structured_query, table, today or datetime.now(UTC).date())
    if any(s.strategy is Strategy.CQL for s in stores) and (feasibility.measure is None or feasibility.library is None):
        raise FeasibilityResourceError("a CQL store needs the Measure and Library, not only a structured query")

    async def one(store: EvaluationStore) -> StoreResult:
        try:
            return await _evaluate_store(store, feasibility, plan, concurrency, page_size)
        except (EvaluationError, FhirClientError) as exc:
            raise StoreEvaluationError(store.name, str(exc)) from exc

    results = tuple(await gather_or_cancel([one(s) for s in stores]))
    return Evaluation(sum(r.count for r in results), results, time.monotonic() - start)


async def _evaluate_store(
    store: EvaluationStore, query: FeasibilityQuery, plan: QueryPlan | None, concurrency: int, page_size: int
) -> StoreResult:
    if store.strategy is Strategy.CQL:
        assert query.measure is not None and query.library is not None
        cql = await evaluate_cql(store.client, query.measure, query.library, request_timeout=store.request_timeout)
        return StoreResult(store.name, store.strategy, cql.count, cql.seconds, cql.polls)
    assert plan is not None
    counter = CohortCounter(store.client, page_size=page_size, concurrency=concurrency)
    result = await counter.count(plan)
    return StoreResult(store.name, store.strategy, result.count, result.seconds, result.searches, result.pages, result.resources)


_MAPPINGS: dict[tuple[str, float], MappingTable] = {}


def _mapping(path: str | None) -> MappingTable:
    """The default table plus the site file, read again only when the file changes."""
    if path is None:
        key = ("", 0.0)
    else:
        try:
            key = (str(path), Path(path).stat().st_mtime)
        except OSError:
            key = (str(path), -1.0)  # load_mapping reports the unreadable file
    table = _MAPPINGS.get(key)
    if table is None:
        table = load_mapping(Path(path) if path else None)
        _MAPPINGS.clear()
        _MAPPINGS[key] = table
    return table


async def evaluate_feasibility(
    measure: Mapping[str, Any],
    library: Mapping[str, Any],
    stores: Sequence[EvaluationStore],
    *,
    today: date,
    mapping_file: str | None = None,
    concurrency: int = 4,
    page_size: int = 1000,
) -> Evaluation:
    """For the execute activity: the HRP's Measure + Library on the network's stores."""
    query = FeasibilityQuery.from_resources(measure, library) if any(
        s.strategy is Strategy.STRUCTURED_QUERY for s in stores
    ) else FeasibilityQuery(None, measure, library)
    return await evaluate(query, stores, today=today, mapping=_mapping(mapping_file), concurrency=concurrency, page_size=page_size)
