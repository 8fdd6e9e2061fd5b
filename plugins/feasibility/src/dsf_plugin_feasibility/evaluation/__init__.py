"""Feasibility evaluation: how many patients of the site's data stores match the HRP's query.

::

    from dsf_plugin_feasibility.evaluation import EvaluationStore, evaluate_feasibility

    stores = [EvaluationStore("default", api.fhir.data_store("default"))]          # structured query
    evaluation = await evaluate_feasibility(measure, library, stores, today=api.now().date())
    evaluation.count                     # summed over the stores; per store in evaluation.stores

Layers, each usable alone (all pure except the last three)::

    structured_query   CCDL JSON → frozen model (errors name the JSON path)
    mapping            term code → FHIR search table (mapping.json + a site file)
    age                age filters → birthdate bounds against an injected today
    plan               query + mapping → the FHIR searches to run
    cohort             runs a plan on one store: streamed pages, patient id sets, set algebra
    async_fhir, cql    Measure/Library upload and $evaluate-measure with Prefer: respond-async
    evaluate           several stores, strategies, summed; all or nothing

:class:`LaplaceObfuscator` is the separate step after evaluation (noise b = 2, tens, cached
per true count).  The error tree is drawn in :mod:`.errors`.
"""

from dsf_plugin_feasibility.evaluation.cohort import CohortCounter, CohortResult
from dsf_plugin_feasibility.evaluation.cql import CqlEvaluationError, CqlResult, evaluate_cql, prepare_cql_resources
from dsf_plugin_feasibility.evaluation.errors import (
    EvaluationError,
    FeasibilityResourceError,
    MappingError,
    StoreEvaluationError,
    StructuredQueryError,
)
from dsf_plugin_feasibility.evaluation.evaluate import (
    Evaluation,
    EvaluationStore,
    FeasibilityQuery,
    StoreResult,
    Strategy,
    evaluate,
    evaluate_feasibility,
)
from dsf_plugin_feasibility.evaluation.mapping import MappingTable, default_mapping, load_mapping
from dsf_plugin_feasibility.evaluation.obfuscation import LaplaceObfuscator
from dsf_plugin_feasibility.evaluation.plan import QueryPlan, plan_query
from dsf_plugin_feasibility.evaluation.structured_query import StructuredQuery, parse_structured_query

__all__ = [
    "CohortCounter",
    "CohortResult",
    "CqlEvaluationError",
    "CqlResult",
    "Evaluation",
    "EvaluationError",
    "EvaluationStore",
    "FeasibilityQuery",
    "FeasibilityResourceError",
    "LaplaceObfuscator",
    "MappingError",
    "MappingTable",
    "QueryPlan",
    "StoreEvaluationError",
    "StoreResult",
    "Strategy",
    "StructuredQuery",
    "StructuredQueryError",
    "default_mapping",
    "evaluate",
    "evaluate_cql",
    "evaluate_feasibility",
    "load_mapping",
    "parse_structured_query",
    "plan_query",
    "prepare_cql_resources",
]
