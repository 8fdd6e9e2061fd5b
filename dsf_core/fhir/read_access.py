"""Read-access tags (``http://dsf.dev/fhir/CodeSystem/read-access-tag``).

A resource other than Task carries ``meta.tag`` entries that say who may read it:

=============  =============================================================
ALL            every authenticated organisation (local and remote)
LOCAL          the local organisation only
ORGANIZATION   the organisation named by extension-read-access-organization
ROLE           members holding a role in a parent organisation
               (extension-read-access-parent-organization-role)
=============  =============================================================

Valid combinations (as the Java DSF): exactly one ``ALL`` and nothing else, or
``LOCAL`` plus any number of ``ORGANIZATION`` / ``ROLE`` tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsf_core.fhir import codes


@dataclass(frozen=True, slots=True)
class ReadAccess:
    access: str  # ALL, LOCAL, ORGANIZATION, ROLE
    organization: str | None = None
    parent: str | None = None
    role_system: str | None = None
    role_code: str | None = None


KNOWN = {"ALL", "LOCAL", "ORGANIZATION", "ROLE"}


def _extension(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def read_access_of(resource: dict[str, Any]) -> list[ReadAccess]:
    """The read-access entries the tags of a resource grant (unknown or incomplete tags grant nothing)."""
    result: list[ReadAccess] = []
    for tag in (resource.get("meta") or {}).get("tag") or ():
        if not isinstance(tag, dict) or tag.get("system") != codes.READ_ACCESS_TAG:
            continue
        code = tag.get("code")
        if code in ("ALL", "LOCAL"):
            result.append(ReadAccess(code))
        elif code == "ORGANIZATION":
            for ext in _extension(tag, codes.EXT_READ_ACCESS_ORGANIZATION):
                ident = ext.get("valueIdentifier") or {}
                if ident.get("system") == codes.ORGANIZATION_IDENTIFIER and ident.get("value"):
                    result.append(ReadAccess("ORGANIZATION", organization=ident["value"]))
        elif code == "ROLE":
            for ext in _extension(tag, codes.EXT_READ_ACCESS_ROLE):
                parent = next(iter(_extension(ext, "parent-organization")), {}).get("valueIdentifier") or {}
                role = next(iter(_extension(ext, "organization-role")), {}).get("valueCoding") or {}
                if parent.get("value") and role.get("code"):
                    result.append(
                        ReadAccess("ROLE", parent=parent["value"], role_system=role.get("system"), role_code=role["code"])
                    )
    return result


def validate_tags(resource: dict[str, Any]) -> str | None:
    """Why the read-access tags of a resource are invalid, or None when they are valid."""
    tags = [
        t for t in (resource.get("meta") or {}).get("tag") or () if isinstance(t, dict) and t.get("system") == codes.READ_ACCESS_TAG
    ]
    if not tags:
        return "missing read-access tag (system http://dsf.dev/fhir/CodeSystem/read-access-tag)"
    codes_ = [t.get("code") for t in tags]
    unknown = [c for c in codes_ if c not in KNOWN]
    if unknown:
        return f"unknown read-access tag code(s): {', '.join(map(str, unknown))}"
    if "ALL" in codes_:
        return None if len(codes_) == 1 else "read-access tag ALL must be the only read-access tag"
    if codes_.count("LOCAL") != 1:
        return "read-access tags need exactly one ALL, or LOCAL (plus optional ORGANIZATION/ROLE tags)"
    entries = read_access_of(resource)
    if len([e for e in entries if e.access in ("ORGANIZATION", "ROLE")]) != codes_.count("ORGANIZATION") + codes_.count("ROLE"):
        return "ORGANIZATION/ROLE read-access tags need their organization / parent-organization-role extension"
    return None
