"""The CapabilityStatement, derived from the route table and the search-parameter registry."""

from __future__ import annotations

from typing import Any

from dsf_core import __version__
from dsf_core.fhir.resource_types import INTERACTIONS, RESOURCE_TYPES, STORE_EXTRA_TYPES, default_profile
from dsf_core.fhir.search_params import INCLUDES, is_internal, params_for
from dsf_core.settings import Settings

_COMMON = (
    {"name": "_id", "type": "token"},
    {"name": "_lastUpdated", "type": "date"},
)


def capability_statement(settings: Settings) -> dict[str, Any]:
    types = RESOURCE_TYPES + (STORE_EXTRA_TYPES if settings.node.mode == "store" else ())
    rest_resources = []
    for type_ in sorted(types):
        params = [dict(p) for p in _COMMON]
        for param in params_for(type_).values():
            if is_internal(param.name):
                continue
            entry: dict[str, Any] = {"name": param.name, "type": param.type}
            if param.documentation:
                entry["documentation"] = param.documentation
            params.append(entry)
        resource: dict[str, Any] = {
            "type": type_,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": False,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": sorted(f"{s}:{p}" for s, p in INCLUDES if s == type_),
            "searchRevInclude": sorted(f"{s}:{p}" for s, p in INCLUDES if any(t == type_ for t in params_for(s)[p].targets)),
            "searchParam": params,
        }
        if settings.node.mode == "dsf":
            resource["profile"] = default_profile(type_)
        rest_resources.append(resource)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "dsf-py",
        "kind": "instance",
        "software": {"name": "dsf-py", "version": __version__},
        "implementation": {"description": "DSF FHIR server (dsf-py)", "url": settings.server.base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+xml", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "resource": rest_resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            }
        ],
    }
