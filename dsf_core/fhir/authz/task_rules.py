"""Task rules (the DSF's "TaskAuthorizationRule").

========================  ===============================  ======================================
transition                who                              condition
========================  ===============================  ======================================
create draft              local                            task-identifier set and unique
create requested          local or remote organisation     requester = caller, recipient = local,
                                                           one message-name, no output, valid
                                                           instantiatesCanonical, authorised by a
                                                           draft/active ActivityDefinition
draft → draft             local                            identifier unchanged
requested → in-progress   local                            only business-key may be added
in-progress → in-progress local                            outputs may change
in-progress → completed   local
requested|in-progress →   local                            (also when the process is gone)
failed
delete                    local                            draft Tasks only
========================  ===============================  ======================================
"""

from __future__ import annotations

import re
from typing import Any

from dsf_core.errors import Forbidden, NotValid
from dsf_core.fhir import codes
from dsf_core.fhir.authz.identity import Identity, organization_by_identifier, roles_of
from dsf_core.fhir.authz.process_authorization import is_authorized
from dsf_core.fhir.search import find, find_internal, index_equals
from dsf_core.fhir.storage.store import WriteTx

_CANONICAL = re.compile(codes.INSTANTIATES_CANONICAL_PATTERN)


def _inputs(task: dict[str, Any], code: str) -> list[dict[str, Any]]:
    result = []
    for item in task.get("input") or ():
        for coding in (item.get("type") or {}).get("coding") or ():
            if coding.get("system") == codes.BPMN_MESSAGE and coding.get("code") == code:
                result.append(item)
                break
    return result


def _identifier_value(reference: dict[str, Any] | None) -> tuple[str | None, str | None]:
    ident = (reference or {}).get("identifier") or {}
    return ident.get("system"), ident.get("value")


def _task_identifier(task: dict[str, Any]) -> str | None:
    for ident in task.get("identifier") or ():
        if ident.get("system") == codes.TASK_IDENTIFIER and ident.get("value"):
            return str(ident["value"])
    return None


def check_profile(task: dict[str, Any]) -> None:
    """The structural rules of the DSF Task base profile (raise NotValid)."""
    status = task.get("status")
    requester = task.get("requester")
    if requester is not None and "reference" in requester:
        raise NotValid("Task.requester must be a logical reference (identifier only)", expression=["Task.requester"])
    for recipient in (task.get("restriction") or {}).get("recipient") or ():
        if "reference" in recipient:
            raise NotValid(
                "Task.restriction.recipient must be a logical reference (identifier only)",
                expression=["Task.restriction.recipient"],
            )
    if status in ("in-progress", "completed", "failed") and not _inputs(task, "business-key"):
        raise NotValid("Business key must be set if Task.status = {in-progress, completed, failed}", expression=["Task.input"])
    if status == "draft" and _task_identifier(task) is None:
        raise NotValid(
            "Identifier with system 'http://dsf.dev/sid/task-identifier' must be set if Task.status = draft",
            expression=["Task.identifier"],
        )


def _shape_errors(task: dict[str, Any], requester: str | None, local_identifier: str) -> list[str]:
    """What the Java DSF checks on every new draft or requested Task."""
    errors: list[str] = []
    system, value = _identifier_value(task.get("requester"))
    if system != codes.ORGANIZATION_IDENTIFIER or value != requester:
        errors.append("Task.requester must reference the requesting organization")
    recipients = (task.get("restriction") or {}).get("recipient") or []
    if len(recipients) != 1:
        errors.append("Task.restriction.recipient missing or more than one")
    else:
        r_system, r_value = _identifier_value(recipients[0])
        if r_system != codes.ORGANIZATION_IDENTIFIER or r_value != local_identifier:
            errors.append("Task.restriction.recipient not local organization")
    canonical = task.get("instantiatesCanonical")
    if not isinstance(canonical, str) or _CANONICAL.match(canonical) is None:
        errors.append(f"Task.instantiatesCanonical missing or not matching {codes.INSTANTIATES_CANONICAL_PATTERN}")
    names = _inputs(task, "message-name")
    if len(names) != 1 or not str(names[0].get("valueString") or "").strip():
        errors.append("Task.input with system bpmn-message and code message-name missing, blank or more than one")
    if task.get("output"):
        errors.append("Task.output not expected")
    return errors


async def _check_requested(tx: WriteTx, identity: Identity, task: dict[str, Any], local_identifier: str) -> str:
    errors = _shape_errors(task, identity.organization_identifier, local_identifier)
    if _task_identifier(task) is not None:
        errors.insert(0, "Task.identifier with system task-identifier not allowed for requested Tasks")
    if errors:
        raise Forbidden("; ".join(errors))
    canonical = task.get("instantiatesCanonical")
    match = _CANONICAL.match(canonical) if isinstance(canonical, str) else None
    assert match is not None
    message_name = str(_inputs(task, "message-name")[0]["valueString"])
    profiles = [p for p in (task.get("meta") or {}).get("profile") or () if isinstance(p, str)]
    # The decision depends on nothing else; peers send the same few combinations again and again.
    decisions = tx.store.type_cache(
        "task-authorizations", "ActivityDefinition", "Organization", "OrganizationAffiliation"
    )
    key = (match["url"], match["version"], message_name, tuple(profiles), identity, local_identifier)
    decision: tuple[bool, str] | None = decisions.get(key)
    if decision is None:
        definition = await _activity_definition(tx, match["url"], match["version"])
        if definition is None:
            raise Forbidden(f"no draft or active ActivityDefinition for {canonical}")
        recipient = await _local_recipient(tx, local_identifier)
        decision = is_authorized(definition, message_name, profiles, identity, recipient)
        decisions.put(key, decision)
    ok, reason = decision
    if not ok:
        raise Forbidden(f"Task not authorized: {reason}")
    return f"Task.status requested, {reason}"


async def _activity_definition(tx: WriteTx, url: str, version: str) -> dict[str, Any] | None:
    """The draft or active ActivityDefinition of a process version (cached until one is written)."""
    cache = tx.store.type_cache("activity-definitions", "ActivityDefinition")
    key = (url, version)
    cached = cache.get(key)
    if cached is not None:
        return cached[0]  # type: ignore[no-any-return]
    found = await find(tx, "ActivityDefinition", [("url", url), ("version", version), ("status", "draft,active")], limit=2)
    definition = found[0].resource if found else None
    cache.put(key, (definition,))
    return definition


async def _local_recipient(tx: WriteTx, local_identifier: str) -> Identity:
    """The local organisation as recipient, with its roles (cached until the allow list changes)."""
    cache = tx.store.type_cache("local-recipient", "Organization", "OrganizationAffiliation")
    cached = cache.get(local_identifier)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    local_org = await organization_by_identifier(tx, local_identifier)
    recipient = Identity(
        "local",
        local_identifier,
        local_identifier,
        local_org.id if local_org else None,
        roles=await roles_of(tx, local_org) if local_org else frozenset(),
    )
    cache.put(local_identifier, recipient)
    return recipient


async def authorize_create(tx: WriteTx, identity: Identity, task: dict[str, Any], local_identifier: str) -> str:
    status = task.get("status")
    if status == "draft":
        if not identity.is_local:
            raise Forbidden("only the local organization may create draft Tasks")
        errors = _shape_errors(task, local_identifier, local_identifier)
        if errors:
            raise Forbidden("; ".join(errors))
        identifier = _task_identifier(task)
        if identifier is not None:
            await tx.lock(f"Task.identifier|{identifier}")
            existing = await find_internal(
                tx, "Task", [index_equals("Task", "identifier", identifier, codes.TASK_IDENTIFIER)], limit=1
            )
            if existing:
                raise Forbidden(f"a Task with identifier {identifier} exists already")
        return "local identity, Task.status draft"
    if status == "requested":
        return await _check_requested(tx, identity, task, local_identifier)
    raise Forbidden(f"Task.status {status!r} not allowed on create (draft or requested only)")


_IMMUTABLE = ("requester", "restriction", "instantiatesCanonical", "intent")


def _without_business_key(task: dict[str, Any]) -> list[Any]:
    return [i for i in task.get("input") or () if i not in _inputs(task, "business-key")]


async def authorize_update(identity: Identity, old: dict[str, Any], new: dict[str, Any]) -> str:
    if not identity.is_local:
        raise Forbidden("only the local organization may update Tasks")
    before, after = old.get("status"), new.get("status")
    changed = [k for k in _IMMUTABLE if old.get(k) != new.get(k)]
    if before == "draft" and after == "draft":
        if _task_identifier(old) != _task_identifier(new):
            raise Forbidden("Task.identifier of a draft Task may not change")
        return "draft -> draft"
    if before == "requested" and after == "in-progress":
        if changed:
            raise Forbidden(f"Task {', '.join(changed)} may not change from requested to in-progress")
        if _without_business_key(old) != _without_business_key(new):
            raise Forbidden("only the business-key input may be added from requested to in-progress")
        if new.get("output"):
            raise Forbidden("Task.output not allowed from requested to in-progress")
        return "requested -> in-progress"
    if before == "in-progress" and after in ("in-progress", "completed", "failed"):
        if changed:
            raise Forbidden(f"Task {', '.join(changed)} may not change")
        return f"in-progress -> {after}"
    if before == "requested" and after == "failed":
        return "requested -> failed"
    raise Forbidden(f"Task status transition {before} -> {after} not allowed")


def authorize_delete(identity: Identity, old: dict[str, Any]) -> str:
    if not identity.is_local:
        raise Forbidden("only the local organization may delete Tasks")
    if old.get("status") != "draft":
        raise Forbidden("only draft Tasks may be deleted")
    return "local identity, draft Task"
