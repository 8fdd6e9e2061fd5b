"""Build allow-list transaction Bundles (Organization, Endpoint, parent Organization, OrganizationAffiliation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsf_core.fhir import codes

_ALL = [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]


@dataclass(frozen=True)
class Member:
    identifier: str
    thumbprint: str | None
    base_url: str
    roles: Sequence[str] = field(default_factory=tuple)
    endpoint_identifier: str | None = None
    active: bool = True
    #: Organization.name; give the same value as the node's organization.name so the allow-list
    #: entry and the Organization the node writes for itself at start-up agree.
    name: str | None = None


def _org(
    identifier: str,
    thumbprint: str | None,
    endpoint_ref: str | None,
    *,
    parent: bool,
    active: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    profile = "organization-parent" if parent else "organization"
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "meta": {"profile": [f"http://dsf.dev/fhir/StructureDefinition/{profile}"], "tag": _ALL},
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}],
        "active": active,
    }
    if thumbprint:
        org["extension"] = [{"url": codes.EXT_THUMBPRINT, "valueString": thumbprint}]
    if name:
        org["name"] = name
    if endpoint_ref:
        org["endpoint"] = [{"reference": endpoint_ref, "type": "Endpoint"}]
    return org


def allow_list_bundle(members: Sequence[Member], parent: str | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    if parent:
        entries.append(
            {
                "fullUrl": f"urn:uuid:parent-{parent}",
                "resource": _org(parent, None, None, parent=True),
                "request": {"method": "PUT", "url": f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|{parent}"},
            }
        )
    for m in members:
        endpoint_id = m.endpoint_identifier or m.identifier
        org_url, ep_url = f"urn:uuid:org-{m.identifier}", f"urn:uuid:ep-{m.identifier}"
        entries.append(
            {
                "fullUrl": org_url,
                "resource": _org(m.identifier, m.thumbprint, ep_url, parent=False, active=m.active, name=m.name),
                "request": {"method": "PUT", "url": f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|{m.identifier}"},
            }
        )
        entries.append(
            {
                "fullUrl": ep_url,
                "resource": {
                    "resourceType": "Endpoint",
                    "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/endpoint"], "tag": _ALL},
                    "identifier": [{"system": codes.ENDPOINT_IDENTIFIER, "value": endpoint_id}],
                    "status": "active",
                    "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-rest"},
                    "managingOrganization": {"reference": org_url, "type": "Organization"},
                    "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]}],
                    "payloadMimeType": ["application/fhir+json", "application/fhir+xml"],
                    "address": m.base_url,
                },
                "request": {"method": "PUT", "url": f"Endpoint?identifier={codes.ENDPOINT_IDENTIFIER}|{endpoint_id}"},
            }
        )
        if parent and m.roles:
            entries.append(
                {
                    "fullUrl": f"urn:uuid:aff-{m.identifier}",
                    "resource": {
                        "resourceType": "OrganizationAffiliation",
                        "meta": {
                            "profile": ["http://dsf.dev/fhir/StructureDefinition/organization-affiliation"],
                            "tag": _ALL,
                        },
                        "active": True,
                        "organization": {"reference": f"urn:uuid:parent-{parent}", "type": "Organization"},
                        "participatingOrganization": {"reference": org_url, "type": "Organization"},
                        "code": [
                            {"coding": [{"system": codes.ORGANIZATION_ROLE, "code": role}]} for role in m.roles
                        ],
                        "endpoint": [{"reference": ep_url, "type": "Endpoint"}],
                    },
                    "request": {
                        "method": "PUT",
                        "url": "OrganizationAffiliation?primary-organization:identifier="
                        f"{codes.ORGANIZATION_IDENTIFIER}|{parent}&participating-organization:identifier="
                        f"{codes.ORGANIZATION_IDENTIFIER}|{m.identifier}",
                    },
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
