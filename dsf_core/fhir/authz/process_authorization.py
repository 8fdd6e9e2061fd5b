"""Process authorization: may this identity send this Task to this organisation?

An ActivityDefinition (url = the process URL, version = ``major.minor``, status draft
or active) holds one ``extension-process-authorization`` per accepted message, each
with one ``message-name``, one ``task-profile`` and ≥1 ``requester`` / ``recipient``
codings from ``http://dsf.dev/fhir/CodeSystem/process-authorization``:

======================================  ==========================  ==================================
code                                    who                         narrowing extension on the coding
======================================  ==========================  ==================================
LOCAL_ALL                               any local identity          —
LOCAL_ORGANIZATION                      the local organisation X    …-organization (identifier)
LOCAL_ROLE                              local, role R in parent P   …-parent-organization-role
REMOTE_ALL                              any allow-listed remote     —
REMOTE_ORGANIZATION                     remote organisation X       …-organization (identifier)
REMOTE_ROLE                             remote with role R in P     …-parent-organization-role
*_PRACTITIONER                          practitioner identities     (+ practitioner-role)
======================================  ==========================  ==================================

A Task profile matches the ``task-profile`` when equal, or when the Task names the
profile without a version and the ActivityDefinition with one.
"""

from __future__ import annotations

from typing import Any

from dsf_core.fhir import codes
from dsf_core.fhir.authz.identity import Identity

CODES = frozenset(
    {
        "LOCAL_ALL",
        "LOCAL_ALL_PRACTITIONER",
        "LOCAL_ORGANIZATION",
        "LOCAL_ORGANIZATION_PRACTITIONER",
        "LOCAL_ROLE",
        "LOCAL_ROLE_PRACTITIONER",
        "REMOTE_ALL",
        "REMOTE_ORGANIZATION",
        "REMOTE_ROLE",
    }
)
RECIPIENT_CODES = frozenset({"LOCAL_ALL", "LOCAL_ORGANIZATION", "LOCAL_ROLE"})


def _sub(extension: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in extension.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def authorization_blocks(activity_definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e
        for e in activity_definition.get("extension") or ()
        if isinstance(e, dict) and e.get("url") == codes.EXT_PROCESS_AUTHORIZATION
    ]


def _profile_matches(block: dict[str, Any], task_profiles: list[str]) -> bool:
    for ext in _sub(block, "task-profile"):
        value = ext.get("valueCanonical")
        if not isinstance(value, str):
            continue
        base = value.split("|", 1)[0]
        if any(p == value or p == base for p in task_profiles):
            return True
    return False


def _block_for(activity_definition: dict[str, Any], message_name: str, task_profiles: list[str]) -> dict[str, Any] | None:
    for block in authorization_blocks(activity_definition):
        names = [e.get("valueString") for e in _sub(block, "message-name")]
        if message_name in names and _profile_matches(block, task_profiles):
            return block
    return None


def _organization_of(coding: dict[str, Any]) -> str | None:
    for ext in coding.get("extension") or ():
        if ext.get("url") in (codes.EXT_PA_ORGANIZATION, codes.EXT_PA_ORGANIZATION_PRACTITIONER):
            ident = ext.get("valueIdentifier")
            if ident is None:
                ident = next((e.get("valueIdentifier") for e in _sub(ext, "organization")), None)
            if isinstance(ident, dict):
                value = ident.get("value")
                return str(value) if value is not None else None
    return None


def _role_of(coding: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    for ext in coding.get("extension") or ():
        if ext.get("url") in (codes.EXT_PA_ROLE, codes.EXT_PA_ROLE_PRACTITIONER):
            parent = next((e.get("valueIdentifier") for e in _sub(ext, "parent-organization")), None) or {}
            role = next((e.get("valueCoding") for e in _sub(ext, "organization-role")), None) or {}
            return parent.get("value"), role.get("system"), role.get("code")
    return None, None, None


def coding_matches(coding: dict[str, Any], identity: Identity) -> bool:
    """Does one requester/recipient coding admit this identity?"""
    if coding.get("system") != codes.PROCESS_AUTHORIZATION:
        return False
    code = coding.get("code")
    if code is None or code.endswith("_PRACTITIONER"):
        return False  # practitioner identities (role config) are not supported yet
    scope, _, kind = code.partition("_")
    if scope == "LOCAL" and not identity.is_local:
        return False
    if scope == "REMOTE" and not identity.is_remote:
        return False
    if kind == "ALL":
        return True
    if kind == "ORGANIZATION":
        return _organization_of(coding) == identity.organization_identifier is not None
    if kind == "ROLE":
        parent, system, role = _role_of(coding)
        return any(
            r.parent == parent and r.code == role and (system is None or r.system == system) for r in identity.roles
        )
    return False


def is_authorized(
    activity_definition: dict[str, Any],
    message_name: str,
    task_profiles: list[str],
    requester: Identity,
    recipient: Identity,
) -> tuple[bool, str]:
    """Whether the ActivityDefinition admits requester → recipient for this message, and why not."""
    block = _block_for(activity_definition, message_name, task_profiles)
    if block is None:
        return False, f"no process authorization for message-name {message_name!r} and Task profile(s) {task_profiles}"
    requesters = [e.get("valueCoding") or {} for e in _sub(block, "requester")]
    recipients = [e.get("valueCoding") or {} for e in _sub(block, "recipient")]
    ok_requester = any(coding_matches(c, requester) for c in requesters)
    ok_recipient = any(coding_matches(c, recipient) for c in recipients)
    if not ok_requester and not ok_recipient:
        return False, "requester and recipient not authorized by the ActivityDefinition"
    if not ok_requester:
        return False, f"requester {requester.name} not authorized by the ActivityDefinition"
    if not ok_recipient:
        return False, "local organization not authorized as recipient by the ActivityDefinition"
    return True, "authorized by ActivityDefinition"


def validate_activity_definition(activity_definition: dict[str, Any]) -> str | None:
    """Why the process-authorization extensions are malformed, or None."""
    names: list[str] = []
    for block in authorization_blocks(activity_definition):
        message_names = _sub(block, "message-name")
        profiles = _sub(block, "task-profile")
        requesters = _sub(block, "requester")
        recipients = _sub(block, "recipient")
        if len(message_names) != 1 or not message_names[0].get("valueString"):
            return "process-authorization needs exactly one message-name"
        if len(profiles) != 1 or not profiles[0].get("valueCanonical"):
            return "process-authorization needs exactly one task-profile"
        if not requesters or not recipients:
            return "process-authorization needs at least one requester and one recipient"
        for ext in requesters:
            coding = ext.get("valueCoding") or {}
            if coding.get("system") != codes.PROCESS_AUTHORIZATION or coding.get("code") not in CODES:
                return f"invalid requester coding {coding.get('system')}|{coding.get('code')}"
        for ext in recipients:
            coding = ext.get("valueCoding") or {}
            if coding.get("system") != codes.PROCESS_AUTHORIZATION or coding.get("code") not in RECIPIENT_CODES:
                return f"invalid recipient coding {coding.get('system')}|{coding.get('code')}"
        names.append(message_names[0]["valueString"] + "|" + profiles[0]["valueCanonical"])
    if len(names) != len(set(names)):
        return "process-authorization message-name/task-profile pairs must be unique"
    return None
