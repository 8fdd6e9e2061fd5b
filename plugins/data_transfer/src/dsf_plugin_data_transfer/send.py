"""The DIC's process ``medizininformatik-initiativede_dataSend``: read, check, encrypt, offer, send, wait, clean up.

Started by ``dataSendStart`` (inputs ``dms-identifier``, ``project-identifier``). The data set goes
from the DIC's data store through the encryption into a Binary on the DIC's own mailbox in one
stream; the DMS fetches it from there. Whatever the outcome, the Binary is deleted permanently at
the end. The start Task's ``data-set-status`` output says how it went (``status`` module).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from dsf_core.api import (
    BpmnError,
    FhirClient,
    FhirClientError,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Variables,
    classify,
    tasks,
)
from dsf_core.api.fhir_xml import to_xml
from dsf_plugin_data_transfer import mime
from dsf_plugin_data_transfer.crypto import Encryptor
from dsf_plugin_data_transfer.data_set import PROJECT_IDENTIFIER, frame, transfer_bundle
from dsf_plugin_data_transfer.keys import PUBLIC_KEY_IDENTIFIER, PublicKeyBundleError, public_key_der, public_key_from_bundle
from dsf_plugin_data_transfer.status import (
    DATA_TRANSFER,
    DIC_STORE,
    MII_PARENT,
    RECEIPT_TIMEOUT,
    add_status_output,
    config,
    has_error,
    status_outputs_from_inputs,
)
from dsf_plugin_data_transfer.transfer import OCTET_STREAM, REFERENCE, binary_content, encrypted_data_set, read_head

__all__ = [
    "CreateBundle",
    "DeleteData",
    "EncryptAndStoreData",
    "HandleErrorSend",
    "ReadData",
    "ReadPublicKey",
    "SendData",
    "StoreReceipt",
    "ValidateData",
]

log = logging.getLogger("dsf.plugin.data_transfer")

FHIR_XML = "application/fhir+xml"
SEND_ERROR = "dataSendError"


class DataTransferError(Exception):
    """A step of the DIC failed; the message is what the start Task's error output says."""


def project_identifier(task: dict[str, Any]) -> str:
    """The first ``project-identifier`` input of the project-identifier system (as the Java plugin reads it)."""
    for parameter in tasks.input_parameters(task, DATA_TRANSFER, "project-identifier"):
        value = parameter.get("valueIdentifier") or {}
        if value.get("system") == PROJECT_IDENTIFIER and value.get("value"):
            return str(value["value"])
    raise DataTransferError(f"No project-identifier present in Task/{task.get('id')}")


def store_reference(store: FhirClient, url: str) -> str:
    """``Type/id[/_history/v]`` of an attachment URL that is relative or on the data store's base."""
    match = REFERENCE.match(url.strip())
    if match is None or (match["base"] and not store.on_base(url)):
        raise DataTransferError(
            f"Read data-set failed - attachment URL {url} is not a reference to a resource on the data store {store.base_url}")
    ref = f"{match['type']}/{match['id']}"
    return f"{ref}/_history/{match['vid']}" if match["vid"] else ref


def _public_key(variables: Variables) -> RSAPublicKey:
    key = serialization.load_der_public_key(base64.b64decode(variables.get("dmsPublicKey")))
    assert isinstance(key, RSAPublicKey)
    return key


async def _attachment_resource(store: FhirClient, ref: str) -> dict[str, Any]:
    return await store.read_url(store.url(ref))


async def send_failed(variables: Variables, code: str, error: Exception) -> NoReturn:
    """``not-allowed``/``not-reachable`` on the start Task, which fails; then the error boundary path."""
    start = variables.start_task
    start["status"] = "failed"
    add_status_output(start, code, "Send data-set failed")
    await variables.update_task(start)
    variables.set("dataSendErrorMessage", "Send data-set failed")
    raise BpmnError(SEND_ERROR, f"Send data-set - {error}")


class ReadData(ServiceTask):
    """The project's DocumentReference in the DIC data store and where its attachment is."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        project = project_identifier(start)
        dms = ((tasks.first_input(start, DATA_TRANSFER, "dms-identifier") or {}).get("identifier") or {}).get("value")
        if not dms:
            raise DataTransferError(f"No dms-identifier present in Task/{start.get('id')}")
        variables.set("projectIdentifier", project)
        variables.set("dmsIdentifier", dms)
        variables.set("receiptTimeout", config(api, RECEIPT_TIMEOUT))
        store = api.fhir.data_store(config(api, DIC_STORE) or "default")
        try:
            found = await store.search("DocumentReference", {"identifier": f"{PROJECT_IDENTIFIER}|{project}"})
        except FhirClientError as exc:
            raise DataTransferError(f"Read data-set failed - {exc}") from exc
        documents = [e["resource"] for e in found.get("entry", []) if e.get("resource", {}).get("resourceType") == "DocumentReference"]
        if not documents:
            raise DataTransferError(f"Read data-set failed - no DocumentReference for project-identifier {project} "
                                    f"on the data store {store.base_url}")
        if len(documents) > 1:
            log.warning("%d DocumentReferences for project-identifier %s, using DocumentReference/%s",
                        len(documents), project, documents[0].get("id"))
        document = documents[0]
        attachments = [c["attachment"] for c in document.get("content", []) if (c.get("attachment") or {}).get("url")]
        if not attachments:
            raise DataTransferError(f"Read data-set failed - DocumentReference/{document.get('id')} has no attachment URL")
        variables.set("documentReference", {"id": document.get("id"), "date": document.get("date"),
                                            "contentType": attachments[0].get("contentType")})
        variables.set("attachmentReference", store_reference(store, str(attachments[0]["url"])))
        log.info("data set of project %s for DMS %s: %s on %s", project, dms, variables.get("attachmentReference"),
                 store.base_url)


class ValidateData(ServiceTask):
    """The attachment's content against its declared MIME type (the Binary's; FHIR XML for a resource)."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        store = api.fhir.data_store(config(api, DIC_STORE) or "default")
        ref = str(variables.get("attachmentReference"))
        try:
            if ref.startswith("Binary/"):
                head, content_type = await read_head(store, ref, mime.HEAD_SIZE)
            else:
                head, content_type = to_xml(await _attachment_resource(store, ref))[:mime.HEAD_SIZE], FHIR_XML
            mime.check(head, content_type)
        except (FhirClientError, ValueError) as exc:
            raise DataTransferError(f"Validate data-set failed - {exc}") from exc
        variables.set("attachmentContentType", content_type)


class CreateBundle(ServiceTask):
    """The transaction Bundle to send (a Binary's data is added while encrypting)."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        ref = str(variables.get("attachmentReference"))
        document = variables.get("documentReference")
        if ref.startswith("Binary/"):
            attachment: dict[str, Any] = {"resourceType": "Binary", "contentType": variables.get("attachmentContentType")}
        else:
            store = api.fhir.data_store(config(api, DIC_STORE) or "default")
            attachment = await _attachment_resource(store, ref)
            attachment.pop("meta", None)
        variables.set("dataSet", transfer_bundle(
            project=str(variables.get("projectIdentifier")), organization=api.organization_identifier,
            date=document.get("date"), content_type=document.get("contentType"), attachment=attachment))


class ReadPublicKey(ServiceTask):
    """The DMS's public key from its mailbox, checked against the published SHA-256; the DMS becomes the target."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        dms = str(variables.get("dmsIdentifier"))
        members = await api.organizations.members(MII_PARENT, role="DMS")
        if dms not in {tasks.identifier_value(m, tasks.ORGANIZATION_IDENTIFIER) for m in members}:
            raise DataTransferError(f"Encrypt data-set failed - {dms} is not a DMS of {MII_PARENT}")
        target = await api.targets.of_organization(dms)
        if target is None:
            raise DataTransferError(f"Encrypt data-set failed - no active endpoint of DMS {dms}")
        variables.set_target(target)
        try:
            found = await api.fhir.by_url(target.endpoint_url).search("Bundle", {"identifier": PUBLIC_KEY_IDENTIFIER})
        except FhirClientError as exc:
            log.warning("public key of DMS %s at %s: %s", dms, target.endpoint_url, exc)
            await send_failed(variables, classify(exc), exc)
        bundles = [e["resource"] for e in found.get("entry", []) if e.get("resource", {}).get("resourceType") == "Bundle"]
        if not bundles:
            raise DataTransferError(f"Encrypt data-set failed - DMS {dms} publishes no public key at {target.endpoint_url}")
        try:
            key = public_key_from_bundle(bundles[0])
        except PublicKeyBundleError as exc:
            raise DataTransferError(f"Encrypt data-set failed - {exc}") from exc
        variables.set("dmsPublicKey", base64.b64encode(public_key_der(key)).decode())


class EncryptAndStoreData(ServiceTask):
    """Attachment → Bundle XML → AES-GCM → Binary on the DIC's mailbox readable like the DMS's Organization, in one stream."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        dms = str(variables.get("dmsIdentifier"))
        organization = await api.organizations.by_identifier(dms)
        if organization is None:
            raise DataTransferError(f"Store data-set failed - organization {dms} not found")
        bundle = variables.get("dataSet")
        encryptor = Encryptor(_public_key(variables), api.organization_identifier, dms)
        ref = str(variables.get("attachmentReference"))
        if ref.startswith("Binary/"):
            head, tail = frame(bundle)
            payload = binary_content(api.fhir.data_store(config(api, DIC_STORE) or "default"), ref)
        else:
            head, tail, payload = to_xml(bundle), b"", _nothing()
        local = api.fhir.local()
        try:
            created = await local.create_binary(encrypted_data_set(encryptor, head, payload, tail),
                                                content_type=OCTET_STREAM, security_context=f"Organization/{organization['id']}")
        except FhirClientError as exc:
            raise DataTransferError(f"Store data-set failed - {exc}") from exc
        reference = f"{api.endpoint_url}/Binary/{created.id}"
        if created.version_id:
            reference += f"/_history/{created.version_id}"
        variables.set("dataSetReference", reference)
        log.info("encrypted data set of project %s for DMS %s stored as %s", variables.get("projectIdentifier"), dms, reference)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


class SendData(MessageSend):
    """``dataSend`` to the DMS: where the data set is, and the project; a refusal becomes a status."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [
            tasks.parameter(DATA_TRANSFER, "data-set-reference", "Reference",
                            {"type": "Binary", "reference": str(variables.get("dataSetReference"))}),
            tasks.parameter(DATA_TRANSFER, "project-identifier", "Identifier",
                            {"system": PROJECT_IDENTIFIER, "value": str(variables.get("projectIdentifier"))}),
        ]

    async def on_send_error(self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError) -> None:
        log.warning("data set of project %s to DMS %s: %s", variables.get("projectIdentifier"), target.organization_identifier, error)
        await send_failed(variables, classify(error), error)


class HandleErrorSend(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        log.warning("could not send the data set of project %s to DMS %s: %s", variables.get("projectIdentifier"),
                    variables.get("dmsIdentifier"), variables.get("dataSendErrorMessage"))


class StoreReceipt(ServiceTask):
    """The DMS's answer (or its absence) onto the start Task."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start, latest = variables.start_task, variables.latest_task
        if start.get("status") == "failed":  # written when the send failed; a failed Task stays as it is
            return
        if latest.get("id") != start.get("id"):
            outputs = status_outputs_from_inputs(latest)
            start.setdefault("output", []).extend(outputs)
            if any(has_error(o) for o in outputs):
                start["status"] = "failed"
        else:
            start["status"] = "failed"
            add_status_output(start, "receipt-missing")
        for output in start.get("output", []):
            code = (output.get("valueCoding") or {}).get("code")
            if code == "receipt-ok":
                log.info("data set of project %s delivered to DMS %s", variables.get("projectIdentifier"), variables.get("dmsIdentifier"))
            elif code:
                log.warning("data set of project %s for DMS %s: %s %s", variables.get("projectIdentifier"),
                            variables.get("dmsIdentifier"), code, [e.get("valueString") for e in output.get("extension", [])])
        await variables.update_task(start)


class DeleteData(ServiceTask):
    """The encrypted data set off the DIC's mailbox: deleted, then every version removed."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        reference = variables.get("dataSetReference")
        if not reference:
            return
        match = REFERENCE.match(str(reference))
        assert match is not None, reference
        local = api.fhir.local()
        try:
            await local.delete("Binary", match["id"])
        except FhirClientError as exc:
            if exc.status not in (404, 410):
                raise
        await local.delete_permanently("Binary", match["id"])
        log.info("encrypted data set %s deleted permanently", reference)
