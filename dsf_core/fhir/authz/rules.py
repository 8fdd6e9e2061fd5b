"""Write authorization and integrity rules, per resource type.

Every decision is written to the audit log (logger ``dsf.audit``): who, what, which
rule, allowed or denied.  Remote organisations may create Tasks and nothing else;
the local organisation may write everything its rules admit; uniqueness of the keys
below holds under concurrent writers (``WriteTx.lock``):

* metadata resources: ``url|version``
* Organization: organization identifier; each certificate thumbprint
* Endpoint: endpoint identifier
* Subscription: criteria + channel type + payload
* draft Task: task identifier (``task_rules``)
"""

from __future__ import annotations

import logging
import re
from typing import Any

from dsf_core.errors import DsfError, Forbidden, NotValid
from dsf_core.fhir import codes
from dsf_core.fhir.authz import task_rules
from dsf_core.fhir.authz.identity import Identity, organization_by_identifier
from dsf_core.fhir.authz.process_authorization import validate_activity_definition
from dsf_core.fhir.indexing import parse_reference, walk_references
from dsf_core.fhir.read_access import read_access_of, validate_tags
from dsf_core.fhir.resource_types import METADATA_TYPES
from dsf_core.fhir.search import find_internal, index_equals
from dsf_core.fhir.storage.store import Stored, WriteTx

audit = logging.getLogger("dsf.audit")

_THUMBPRINT = re.compile(r"^[a-f0-9]{128}$")
_UNTAGGED = {"Task", "QuestionnaireResponse", "Binary"}


def audit_decision(identity: Identity, action: str, target: str, allowed: bool, reason: str) -> None:
    audit.info(
        "%s of %s %s for identity '%s' (%s): %s",
        action,
        target,
        "allowed" if allowed else "denied",
        identity.name,
        identity.kind,
        reason,
    )


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def thumbprints_of(resource: dict[str, Any]) -> list[str]:
    return [
        str(e.get("valueString"))
        for e in resource.get("extension") or ()
        if isinstance(e, dict) and e.get("url") == codes.EXT_THUMBPRINT
    ]


async def _unique(tx: WriteTx, type_: str, key: str, clauses: list[Any], own_id: str | None, what: str) -> None:
    await tx.lock(f"{type_}|{key}")
    for other in await find_internal(tx, type_, clauses, limit=2):
        if other.id != own_id:
            raise Forbidden(f"{type_} with {what} exists already ({other.reference})")


async def _check_read_access(tx: WriteTx, resource: dict[str, Any]) -> None:
    problem = validate_tags(resource)
    if problem:
        raise NotValid(problem, expression=[f"{resource['resourceType']}.meta.tag"])
    for entry in read_access_of(resource):
        if entry.access == "ORGANIZATION" and entry.organization:
            if await organization_by_identifier(tx, entry.organization) is None:
                raise NotValid(f"read-access tag names unknown organization {entry.organization}")
        if entry.access == "ROLE" and entry.parent:
            if await organization_by_identifier(tx, entry.parent) is None:
                raise NotValid(f"read-access tag names unknown parent organization {entry.parent}")


#: Metadata types the Java DSF stores without url/version and without uniqueness (e.g. the
#: FDPG's feasibility Measure and Library, whose Library url is a urn:uuid and neither has a version).
_NO_UNIQUE_CRITERIA = frozenset({"Library", "Measure", "Questionnaire"})


async def check_integrity(tx: WriteTx, resource: dict[str, Any], own_id: str | None) -> None:
    """Type rules that hold for every writer: valid tags, required keys, uniqueness."""
    type_ = resource["resourceType"]
    if type_ not in _UNTAGGED:
        await _check_read_access(tx, resource)
    if type_ == "Task":
        task_rules.check_profile(resource)
    elif type_ == "Binary":
        if not (resource.get("securityContext") or {}).get("reference"):
            raise NotValid("Binary.securityContext with a literal reference is required", expression=["Binary.securityContext"])
    elif type_ == "NamingSystem":
        await _check_naming_system(tx, resource, own_id)
    elif type_ in METADATA_TYPES and type_ not in _NO_UNIQUE_CRITERIA:
        url, version = resource.get("url"), resource.get("version")
        if not url or not version:
            raise NotValid(f"{type_}.url and {type_}.version are required")
        await _unique(
            tx,
            type_,
            f"{url}|{version}",
            [index_equals(type_, "url", url), index_equals(type_, "version", version)],
            own_id,
            f"url|version {url}|{version}",
        )
        if type_ == "ActivityDefinition":
            problem = validate_activity_definition(resource)
            if problem:
                raise NotValid(problem, expression=["ActivityDefinition.extension"])
    elif type_ == "Organization":
        identifier = _identifier(resource, codes.ORGANIZATION_IDENTIFIER)
        parent_profile = any("organization-parent" in str(p) for p in (resource.get("meta") or {}).get("profile") or ())
        if identifier is None:
            raise NotValid("Organization.identifier with system http://dsf.dev/sid/organization-identifier is required")
        await _unique(
            tx,
            "Organization",
            f"identifier|{identifier}",
            [index_equals("Organization", "identifier", identifier, codes.ORGANIZATION_IDENTIFIER)],
            own_id,
            f"identifier {identifier}",
        )
        for thumbprint in thumbprints_of(resource):
            if not _THUMBPRINT.match(thumbprint):
                raise NotValid("certificate thumbprint must be 128 lower-case hex characters (SHA-512)")
            await _unique(
                tx,
                "Organization",
                f"thumbprint|{thumbprint}",
                [index_equals("Organization", "_thumbprint", thumbprint)],
                own_id,
                "the same certificate thumbprint",
            )
        if not parent_profile and resource.get("active") and not thumbprints_of(resource):
            pass  # an active member without thumbprint cannot authenticate, but is valid (Java accepts it)
    elif type_ == "Endpoint":
        identifier = _identifier(resource, codes.ENDPOINT_IDENTIFIER)
        if identifier is None:
            raise NotValid("Endpoint.identifier with system http://dsf.dev/sid/endpoint-identifier is required")
        if not resource.get("address"):
            raise NotValid("Endpoint.address is required")
        await _unique(
            tx,
            "Endpoint",
            f"identifier|{identifier}",
            [index_equals("Endpoint", "identifier", identifier, codes.ENDPOINT_IDENTIFIER)],
            own_id,
            f"identifier {identifier}",
        )
    elif type_ == "Subscription":
        channel = resource.get("channel") or {}
        key = f"{resource.get('criteria')}|{channel.get('type')}|{channel.get('payload')}"
        clauses = [index_equals("Subscription", "type", str(channel.get("type")))]
        await tx.lock(f"Subscription|{key}")
        for other in await find_internal(tx, "Subscription", clauses, limit=1000):
            o = other.resource
            if other.id != own_id and (o.get("criteria"), (o.get("channel") or {}).get("payload")) == (
                resource.get("criteria"),
                channel.get("payload"),
            ):
                raise Forbidden(f"Subscription with criteria {resource.get('criteria')} exists already")


async def _check_naming_system(tx: WriteTx, resource: dict[str, Any], own_id: str | None) -> None:
    """NamingSystem has no url|version: unique by name and by each uri-type uniqueId (as the Java DSF)."""
    name = resource.get("name")
    if not name:
        raise NotValid("NamingSystem.name is required", expression=["NamingSystem.name"])
    if resource.get("status") not in ("draft", "active", "retired"):
        raise NotValid("NamingSystem.status must be draft, active or retired", expression=["NamingSystem.status"])
    uris = [u.get("value") for u in resource.get("uniqueId") or () if u.get("type") == "uri" and u.get("value")]
    if len(uris) != len(set(uris)):
        raise NotValid("NamingSystem.uniqueId values of type uri must be distinct", expression=["NamingSystem.uniqueId"])
    await tx.lock("NamingSystem|unique")
    if own_id is not None:
        previous = await tx.current("NamingSystem", own_id)
        if previous is not None and not previous.deleted and previous.resource.get("name") != name:
            raise Forbidden("NamingSystem.name may not change")
    for other in await find_internal(tx, "NamingSystem", [], limit=100_000):
        if other.id == own_id:
            continue
        o = other.resource
        if o.get("name") == name:
            raise Forbidden(f"NamingSystem with name {name} exists already ({other.reference})")
        taken = {u.get("value") for u in o.get("uniqueId") or () if u.get("type") == "uri"}
        clash = taken.intersection(uris)
        if clash:
            raise Forbidden(f"NamingSystem with uniqueId {sorted(clash)[0]} exists already ({other.reference})")


async def check_references(tx: WriteTx, resource: dict[str, Any], *, base_url: str | None, content: str | None = None) -> None:
    """Literal references to this server must resolve to a current resource (Bundles are exempt).

    ``content`` is the resource as stored (compact JSON), when at hand: without a ``"reference":``
    key in it there is nothing to walk (a Task sent by a peer names organisations by identifier).
    """
    if resource["resourceType"] == "Bundle" or (content is not None and '"reference":' not in content):
        return
    for ref in walk_references(resource):
        if ref.startswith("#"):
            continue
        target = ref
        if base_url and ref.startswith(base_url.rstrip("/") + "/"):
            target = ref[len(base_url.rstrip("/")) + 1 :]
        literal = parse_reference(target)
        if literal is None or literal.base is not None:
            continue  # external or not a literal reference: not checked here
        current = await tx.current(literal.type, literal.id)
        if current is None or current.deleted:
            raise NotValid(f"reference {ref} does not resolve to an existing resource")


async def authorize_create(tx: WriteTx, identity: Identity, resource: dict[str, Any], local_identifier: str) -> str:
    type_ = resource["resourceType"]
    try:
        if identity.unrestricted:
            reason = f"{identity.kind} identity"
        elif type_ == "Task":
            reason = await task_rules.authorize_create(tx, identity, resource, local_identifier)
        elif identity.is_remote:
            raise Forbidden(f"remote organizations may only create Task resources, not {type_}")
        else:
            reason = "local identity"
        if identity.kind != "store":
            await check_integrity(tx, resource, None)
    except DsfError as exc:
        audit_decision(identity, "Create", type_, False, exc.message)
        raise
    audit_decision(identity, "Create", type_, True, reason)
    return reason


async def authorize_update(tx: WriteTx, identity: Identity, old: Stored, new: dict[str, Any]) -> str:
    try:
        if identity.unrestricted:
            reason = f"{identity.kind} identity"
        elif identity.is_remote:
            raise Forbidden(f"remote organizations may not update {old.type} resources")
        elif old.type == "Task" and not old.deleted:
            reason = await task_rules.authorize_update(identity, old.resource, new)
        else:
            reason = "local identity"
        if identity.kind != "store":
            await check_integrity(tx, new, old.id)
    except DsfError as exc:
        audit_decision(identity, "Update", old.reference, False, exc.message)
        raise
    audit_decision(identity, "Update", old.reference, True, reason)
    return reason


def authorize_delete(identity: Identity, old: Stored) -> str:
    try:
        if identity.unrestricted:
            reason = f"{identity.kind} identity"
        elif identity.is_remote:
            raise Forbidden(f"remote organizations may not delete {old.type} resources")
        elif old.type == "Task":
            reason = task_rules.authorize_delete(identity, old.resource)
        else:
            reason = "local identity"
    except DsfError as exc:
        audit_decision(identity, "Delete", old.reference, False, exc.message)
        raise
    audit_decision(identity, "Delete", old.reference, True, reason)
    return reason


def authorize_permanent_delete(identity: Identity, type_: str, id_: str) -> None:
    if not identity.is_local and identity.kind != "store":
        audit_decision(identity, "Permanent delete", f"{type_}/{id_}", False, "local identity required")
        raise Forbidden("only the local organization may delete permanently")
    audit_decision(identity, "Permanent delete", f"{type_}/{id_}", True, "local identity")
