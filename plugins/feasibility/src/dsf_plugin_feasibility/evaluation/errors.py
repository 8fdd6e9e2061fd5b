"""The evaluation layer's errors, one tree so an activity can catch them all::

    EvaluationError                 anything that stops a feasibility count
    ├── StructuredQueryError        the structured query (CCDL) is malformed; .path names the JSON place
    ├── MappingError                the mapping table is malformed, or a criterion has no usable mapping
    ├── FeasibilityResourceError    Measure/Library unusable (no CQL attachment, no structured query, ...)
    └── StoreEvaluationError        one store failed; .store names it, .reason says why

A failing store always surfaces as :class:`StoreEvaluationError` from
:func:`dsf_plugin_feasibility.evaluation.evaluate`, whatever went wrong underneath (HTTP
error, unreachable store, bad MeasureReport, a criterion the mapping cannot express), so the
Task's error output can say which store failed and why.
"""

from __future__ import annotations

__all__ = [
    "EvaluationError",
    "FeasibilityResourceError",
    "MappingError",
    "StoreEvaluationError",
    "StructuredQueryError",
]


class EvaluationError(Exception):
    """A feasibility evaluation could not produce a count."""


class StructuredQueryError(EvaluationError):
    """The structured query is not one we can read: ``path`` is where (``inclusionCriteria[0][1].valueFilter``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message


class MappingError(EvaluationError):
    """The mapping table is invalid, or it has no (fitting) entry for a criterion."""


class FeasibilityResourceError(EvaluationError):
    """The Measure or Library does not carry what the evaluation needs."""


class StoreEvaluationError(EvaluationError):
    """Evaluating at one data store failed; the whole evaluation fails with it (no partial counts)."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"data store {store!r}: {reason}")
        self.store = store
        self.reason = reason
