"""Identities: who sent a request.

A client certificate's SHA-512 thumbprint is matched against the
``extension-certificate-thumbprint`` of an active Organization.  The organisation whose
identifier is configured as local gets full rights; every other allow-listed
organisation is remote.  In data-store mode there is no allow list: callers are
``store`` users.  The start-up loader acts as ``system``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dsf_core.errors import Unauthorized
from dsf_core.fhir import codes
from dsf_core.fhir.indexing import parse_reference
from dsf_core.fhir.search import find, find_internal, index_equals
from dsf_core.fhir.storage.store import ReadTx, Stored

Kind = Literal["local", "remote", "store", "system"]


@dataclass(frozen=True)
class Role:
    parent: str  # parent organization identifier value
    system: str | None
    code: str


@dataclass(frozen=True)
class Identity:
    kind: Kind
    name: str
    organization_identifier: str | None = None
    organization_id: str | None = None
    thumbprint: str | None = None
    roles: frozenset[Role] = field(default_factory=frozenset)

    @property
    def is_local(self) -> bool:
        return self.kind in ("local", "system")

    @property
    def is_remote(self) -> bool:
        return self.kind == "remote"

    @property
    def unrestricted(self) -> bool:
        """No DSF rules apply (start-up loader, data-store mode)."""
        return self.kind in ("store", "system")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Identity("system", "initial-data-loader")


def organization_identifier_of(resource: dict[str, object]) -> str | None:
    for ident in resource.get("identifier") or ():  # type: ignore[attr-defined]
        if isinstance(ident, dict) and ident.get("system") == codes.ORGANIZATION_IDENTIFIER:
            value = ident.get("value")
            return str(value) if value is not None else None
    return None


async def organization_by_identifier(tx: ReadTx, identifier: str) -> Stored | None:
    found = await find(tx, "Organization", [("identifier", f"{codes.ORGANIZATION_IDENTIFIER}|{identifier}")], limit=2)
    return found[0] if found else None


async def _resolve_org_reference(tx: ReadTx, reference: dict[str, object]) -> Stored | None:
    ref = reference.get("reference")
    if isinstance(ref, str):
        literal = parse_reference(ref)
        if literal is not None and literal.type == "Organization":
            current = await tx.current("Organization", literal.id)
            return current if current is not None and not current.deleted else None
    ident = reference.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == codes.ORGANIZATION_IDENTIFIER and ident.get("value"):
        return await organization_by_identifier(tx, str(ident["value"]))
    return None


async def roles_of(tx: ReadTx, organization: Stored) -> frozenset[Role]:
    """Roles from active OrganizationAffiliations whose parent organisation is active too."""
    identifier = organization_identifier_of(organization.resource)
    affiliations = await find_internal(
        tx,
        "OrganizationAffiliation",
        [index_equals("OrganizationAffiliation", "active", "true")],
        limit=10_000,
    )
    roles: set[Role] = set()
    for aff in affiliations:
        res = aff.resource
        member = res.get("participatingOrganization") or {}
        member_org = await _resolve_org_reference(tx, member)
        if member_org is None or member_org.id != organization.id:
            if not (identifier and (member.get("identifier") or {}).get("value") == identifier):
                continue
        parent = await _resolve_org_reference(tx, res.get("organization") or {})
        if parent is None or parent.resource.get("active") is False:
            continue
        parent_identifier = organization_identifier_of(parent.resource)
        if not parent_identifier:
            continue
        for concept in res.get("code") or ():
            for coding in concept.get("coding") or ():
                if coding.get("code"):
                    roles.add(Role(parent_identifier, coding.get("system"), coding["code"]))
    return frozenset(roles)


async def identity_for_thumbprint(tx: ReadTx, thumbprint: str, local_identifier: str) -> Identity:
    """The organisation identity of a client certificate thumbprint, or Unauthorized."""
    thumbprint = thumbprint.lower()
    matches = await find_internal(
        tx,
        "Organization",
        [
            index_equals("Organization", "_thumbprint", thumbprint),
            index_equals("Organization", "active", "true"),
        ],
        limit=2,
    )
    if not matches:
        raise Unauthorized("client certificate is not allow-listed (no active Organization with its thumbprint)")
    if len(matches) > 1:
        raise Unauthorized("client certificate thumbprint matches more than one Organization")
    org = matches[0]
    identifier = organization_identifier_of(org.resource)
    if identifier is None:
        raise Unauthorized("allow-listed Organization has no organization identifier")
    kind: Kind = "local" if identifier == local_identifier else "remote"
    return Identity(kind, identifier, identifier, org.id, thumbprint, await roles_of(tx, org))


__all__ = ["SYSTEM", "Identity", "Role", "identity_for_thumbprint", "organization_by_identifier", "roles_of"]
