"""Start-up data: the DSF Subscriptions, the local Organization and Endpoint, the allow list.

Everything is written by the ``system`` identity through the same transaction code a
client uses, as conditional writes, so running it at every start is idempotent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from dsf_core import pki
from dsf_core.fhir import codes
from dsf_core.fhir.authz.identity import SYSTEM
from dsf_core.fhir.storage.store import Store
from dsf_core.fhir.xml import parse_xml
from dsf_core.server import transaction
from dsf_core.server.interactions.context import Ctx
from dsf_core.settings import Settings, SettingsError

log = logging.getLogger(__name__)

_ALL = [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]
_LOCAL = [{"system": codes.READ_ACCESS_TAG, "code": "LOCAL"}]


def _subscription(criteria: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/subscription"], "tag": _LOCAL},
        "status": "active",
        "reason": "Business Process Engine",
        "criteria": criteria,
        "channel": {"type": "websocket", "payload": "application/fhir+json"},
    }


def subscriptions_bundle() -> dict[str, Any]:
    entries = []
    for criteria in (codes.TASK_SUBSCRIPTION_CRITERIA, codes.QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA):
        query = urlencode(
            [("criteria:exact", criteria), ("type", "websocket"), ("payload", "application/fhir+json")], quote_via=quote
        )
        entries.append(
            {
                "resource": _subscription(criteria),
                "request": {"method": "POST", "url": "Subscription", "ifNoneExist": query},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def local_thumbprint(settings: Settings) -> str | None:
    org = settings.organization
    if org.thumbprint:
        return org.thumbprint.lower()
    if org.client_certificate is None:
        return None
    try:
        password = str(org.client_private_key_password).encode() if org.client_private_key_password else None
        return pki.thumbprint(pki.load_certificate(org.client_certificate, password))
    except pki.PkiError as exc:
        raise SettingsError(f"organization.client_certificate: {exc}") from None


def local_bundle(settings: Settings, thumbprint: str | None) -> dict[str, Any]:
    identifier = settings.organization.identifier
    endpoint_identifier = settings.organization.endpoint_identifier or identifier
    org_url, endpoint_url = "urn:uuid:0b6a3fb4-6d1c-4d0e-8a41-0c7a3e5a9e01", "urn:uuid:0b6a3fb4-6d1c-4d0e-8a41-0c7a3e5a9e02"
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/organization"], "tag": _ALL},
        "identifier": [{"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}],
        "active": True,
        "endpoint": [{"reference": endpoint_url, "type": "Endpoint"}],
    }
    if thumbprint:
        organization["extension"] = [{"url": codes.EXT_THUMBPRINT, "valueString": thumbprint}]
    if settings.organization.name:
        organization["name"] = settings.organization.name
    endpoint = {
        "resourceType": "Endpoint",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/endpoint"], "tag": _ALL},
        "identifier": [{"system": codes.ENDPOINT_IDENTIFIER, "value": endpoint_identifier}],
        "status": "active",
        "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-rest"},
        "managingOrganization": {"reference": org_url, "type": "Organization"},
        "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Task"}]}],
        "payloadMimeType": ["application/fhir+json", "application/fhir+xml"],
        "address": settings.server.base_url.rstrip("/"),
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": org_url,
                "resource": organization,
                "request": {"method": "PUT", "url": f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|{identifier}"},
            },
            {
                "fullUrl": endpoint_url,
                "resource": endpoint,
                "request": {"method": "PUT", "url": f"Endpoint?identifier={codes.ENDPOINT_IDENTIFIER}|{endpoint_identifier}"},
            },
        ],
    }


def read_bundle_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"organization.init_bundle: cannot read {path}: {exc.strerror}") from None
    try:
        bundle = parse_xml(data) if data.lstrip().startswith(b"<") else orjson.loads(data)
    except Exception as exc:
        raise SettingsError(f"organization.init_bundle: {path} is not a FHIR Bundle: {exc}") from None
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
        raise SettingsError(f"organization.init_bundle: {path} must be a transaction or batch Bundle")
    result: dict[str, Any] = bundle
    return result


async def load_initial(settings: Settings, store: Store) -> None:
    ctx = Ctx(
        store=store,
        identity=SYSTEM,
        local_identifier=settings.organization.identifier,
        base_url=settings.server.base_url.rstrip("/"),
        mode=settings.node.mode,
    )
    if settings.node.mode != "dsf":
        return
    await transaction.process(ctx, subscriptions_bundle(), strict=True)
    thumbprint = local_thumbprint(settings)
    if thumbprint is None:
        log.warning("no organization.client_certificate or thumbprint configured: the local engine cannot authenticate")
    if settings.organization.init_bundle is not None:
        await transaction.process(ctx, read_bundle_file(settings.organization.init_bundle), strict=True)
    await transaction.process(ctx, local_bundle(settings, thumbprint), strict=True)
    log.info("initial data loaded for %s", settings.organization.identifier)
