"""The DMS's process ``medizininformatik-initiativede_dataReceive``: download, decrypt, validate, store, answer.

Started by ``dataSend`` from a DIC. Each step that fails records ``receive-error`` with what
failed ("Download/Decrypt/Validate/Insert data-set failed") on the Task and takes the error
boundary path, so the DIC always gets a receipt. The data set is decrypted as it is downloaded
into a private directory of this instance (``transfer.work_directory``), removed before the
receipt goes out; the decrypted data is only read after its GCM tag verified.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, NoReturn

from dsf_core.api import BpmnError, FhirClient, FhirClientError, MessageSend, ProcessPluginApi, ServiceTask, Target, Variables, tasks
from dsf_core.api.fhir_xml import to_xml
from dsf_plugin_data_transfer import mime
from dsf_plugin_data_transfer.crypto import DecryptionError
from dsf_plugin_data_transfer.data_set import PROJECT_IDENTIFIER, DataSetError, Extracted, read_skeleton
from dsf_plugin_data_transfer.keys import KeyConfigurationError, load_private_key
from dsf_plugin_data_transfer.send import FHIR_XML, project_identifier
from dsf_plugin_data_transfer.status import (
    DATA_TRANSFER,
    DMS_STORE,
    WORK_DIRECTORY,
    add_status_output,
    config,
    config_of,
    status_inputs_from_outputs,
    status_parameter,
)
from dsf_plugin_data_transfer.transfer import (
    OCTET_STREAM,
    REFERENCE,
    download_and_decrypt,
    file_chunks,
    remove_work_directory,
    work_directory,
)

__all__ = [
    "DecryptData",
    "DeleteTemporaryData",
    "DownloadData",
    "HandleErrorReceive",
    "InsertData",
    "SelectTargetDic",
    "SendReceipt",
    "ValidateData",
]

log = logging.getLogger("dsf.plugin.data_transfer")

RECEIVE_ERROR = "dataReceiveError"
DATA_SET = "data-set"
_ORGANIZATION_IDENTIFIER = "http://dsf.dev/sid/organization-identifier"


async def receive_failed(variables: Variables, step: str, error: BaseException) -> NoReturn:
    """``receive-error`` with ``step`` on the Task, which fails; then the error boundary path."""
    start = variables.start_task
    start["status"] = "failed"
    add_status_output(start, "receive-error", step)
    await variables.update_task(start)
    log.warning("data set %s from %s: %s - %s", variables.get("dataSetReference"), tasks.requester_identifier(start),
                step, error)
    variables.set(RECEIVE_ERROR, RECEIVE_ERROR)
    variables.set("dataReceiveErrorMessage", f"{step} - {error}")
    raise BpmnError(RECEIVE_ERROR, f"{step} - {error}")


def _directory(api: ProcessPluginApi, variables: Variables) -> Path:
    return work_directory(config(api, WORK_DIRECTORY), variables.business_key)


def _extracted(api: ProcessPluginApi, variables: Variables) -> Extracted:
    directory = _directory(api, variables) / DATA_SET
    payloads = variables.get("dataSetFiles") or {}
    return Extracted(directory / "skeleton.xml", {token: directory / name for token, name in payloads.items()})


def _sender(variables: Variables) -> str:
    sender = tasks.requester_identifier(variables.start_task)
    if not sender:
        raise ValueError("the Task names no requester")
    return sender


class DownloadData(ServiceTask):
    """The encrypted data set from the DIC's mailbox (the Task's ``data-set-reference``), decrypted as it
    arrives (DMS private key; AAD requester|this organisation) into the work directory."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        try:
            variables.set("projectIdentifier", project_identifier(start))
            references = [p["valueReference"]["reference"] for p in tasks.input_parameters(start, DATA_TRANSFER, "data-set-reference")
                          if (p.get("valueReference") or {}).get("reference")]
            if not references:
                raise ValueError(f"no data-set-reference in Task/{start.get('id')}")
            if len(references) > 1:
                log.warning("%d data-set references in Task/%s, using the first", len(references), start.get("id"))
            reference = str(references[0])
            variables.set("dataSetReference", reference)
            match = REFERENCE.match(reference)
            if match is None or not match["base"] or match["type"] != "Binary":
                raise ValueError(f"{reference} is no absolute reference to a Binary")
            sender = _sender(variables)
            endpoint = await api.endpoints.of_organization(sender)
            if endpoint is None or str(endpoint.get("address", "")).rstrip("/") != match["base"].rstrip("/"):
                # The DMS downloads with its own client certificate: only from the sender's own server.
                raise ValueError(f"{reference} is not on the endpoint of the requesting organization {sender}")
            key = load_private_key(config_of(api))
            if key is None:
                raise KeyConfigurationError("no DMS private key configured")
            directory = _directory(api, variables) / DATA_SET
            shutil.rmtree(directory, ignore_errors=True)  # what an interrupted earlier attempt left
            extracted = await download_and_decrypt(api.fhir.by_url(match["base"]), reference, directory, key, sender,
                                                   api.organization_identifier)
        except BpmnError:
            raise
        except (DecryptionError, DataSetError, KeyConfigurationError) as exc:
            await receive_failed(variables, "Decrypt data-set failed", exc)
        except Exception as exc:
            await receive_failed(variables, "Download data-set failed", exc)
        variables.set("dataSetFiles", {token: path.name for token, path in extracted.payloads.items()})
        log.info("downloaded and decrypted data set %s from %s", reference, sender)


class DecryptData(ServiceTask):
    """The decrypted data set must be a FHIR XML resource (its GCM tag verified while it was downloaded)."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        try:
            read_skeleton(_extracted(api, variables))
        except Exception as exc:
            await receive_failed(variables, "Decrypt data-set failed", exc)


def _entries(bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The DocumentReference entry, the other entry and that one's index (after validation)."""
    entries = bundle.get("entry") or []
    index = next(i for i, e in enumerate(entries) if e["resource"]["resourceType"] != "DocumentReference")
    return entries[1 - index], entries[index], index


def validate(bundle: dict[str, Any], sender: str, project: str) -> None:
    """The checks of the Java ``ValidateDataDms``, plus: the project is the Task's."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise ValueError(f"Bundle is not of type transaction ({bundle.get('type')})")
    entries = bundle.get("entry") or []
    if len(entries) != 2:
        raise ValueError(f"Bundle contains {len(entries)} entries (expected 2)")
    resources = [e.get("resource") or {} for e in entries]
    documents = [r for r in resources if r.get("resourceType") == "DocumentReference"]
    if len(documents) != 1:
        raise ValueError(f"Bundle contains {len(documents)} DocumentReferences (expected 1)")
    authors = [a["identifier"]["value"] for a in documents[0].get("author", [])
               if (a.get("identifier") or {}).get("value")]
    author = authors[0] if authors else "no-author"
    if author != sender:
        raise ValueError(f"Requester in Task does not match author in DocumentReference ({sender} != {author})")
    master = documents[0].get("masterIdentifier") or {}
    if master.get("system") != PROJECT_IDENTIFIER or not master.get("value"):
        raise ValueError("DocumentReference contains 0 project-identifiers (expected 1)")
    if master["value"] != project:
        raise ValueError(f"the DocumentReference's project-identifier {master['value']} is not the Task's {project}")
    if not all(e.get("request", {}).get("method") == "POST" for e in entries):
        raise ValueError("Bundle entries must be POSTs")


class ValidateData(ServiceTask):
    """The decrypted Bundle as the DMS accepts it, and its data against the declared MIME type."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        try:
            bundle, streamed = read_skeleton(_extracted(api, variables))
            validate(bundle, _sender(variables), str(variables.get("projectIdentifier")))
            _, other, index = _entries(bundle)
            resource = other["resource"]
            if resource["resourceType"] == "Binary":
                head = b""
                if path := streamed.get(index):
                    with path.open("rb") as data:
                        head = data.read(mime.HEAD_SIZE)
                mime.check(head, resource.get("contentType"))
            else:
                mime.check(to_xml(resource)[:mime.HEAD_SIZE], FHIR_XML)
        except Exception as exc:
            await receive_failed(variables, "Validate data-set failed", exc)


async def _existing_document(store: FhirClient, project: str, sender: str) -> str | None:
    """The id of the DocumentReference of this project authored by the sender (filtered after the search, as Java)."""
    found: list[str] = []
    async for document in store.search_all("DocumentReference", {"identifier": f"{PROJECT_IDENTIFIER}|{project}"}):
        if any((a.get("identifier") or {}).get("system") == _ORGANIZATION_IDENTIFIER
               and a["identifier"].get("value") == sender for a in document.get("author", [])):
            found.append(str(document["id"]))
    if len(found) > 1:
        log.warning("%d DocumentReferences of project %s authored by %s, updating the first", len(found), project, sender)
    return found[0] if found else None


class InsertData(ServiceTask):
    """Into the DMS data store: the attachment (a Binary streamed), then the DocumentReference pointing to it
    (new, or the project's existing one from the same DIC); the attachment is removed again if that fails."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        store = api.fhir.data_store(config(api, DMS_STORE) or "default")
        start = variables.start_task
        stored: str | None = None
        try:
            bundle, streamed = read_skeleton(_extracted(api, variables))
            document_entry, other, index = _entries(bundle)
            document, resource = document_entry["resource"], dict(other["resource"])
            if resource["resourceType"] == "Binary":
                path = streamed.get(index)
                created = await store.create_binary(file_chunks(path) if path else b"",
                                                    content_type=resource.get("contentType") or OCTET_STREAM)
            else:
                resource.pop("id", None)
                created = await store.create(resource)
            stored = f"{resource['resourceType']}/{created.id}"
            for content in document.get("content", []):
                if (content.get("attachment") or {}).get("url") == other.get("fullUrl"):
                    content["attachment"]["url"] = stored
            existing = await _existing_document(store, str(variables.get("projectIdentifier")), _sender(variables))
            if existing:
                document["id"] = existing
                document_entry["request"] = {"method": "PUT", "url": f"DocumentReference/{existing}"}
            else:
                document.pop("id", None)
            response = await store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [document_entry]})
            locations = [str(e.get("response", {}).get("location", "")) for e in response.get("entry", [])]
        except Exception as exc:
            if stored is not None:
                await _forget(store, stored)
            await receive_failed(variables, "Insert data-set failed", exc)
        for location in locations:
            match = REFERENCE.match(location)
            if match and match["type"] == "DocumentReference":
                absolute = location if match["base"] else store.url(location)
                tasks.add_output(start, DATA_TRANSFER, "document-reference-location", "Reference",
                                 {"type": "DocumentReference", "reference": absolute})
        add_status_output(start, "receive-ok")
        await variables.update_task(start)
        log.info("data set of project %s from %s stored: %s", variables.get("projectIdentifier"), _sender(variables),
                 ", ".join([*locations, str(stored)]))


async def _forget(store: FhirClient, reference: str) -> None:
    type_, id_ = reference.split("/")
    try:
        await store.delete(type_, id_)
    except FhirClientError as exc:
        log.warning("could not remove %s from the data store after a failed insert: %s", reference, exc)


class HandleErrorReceive(ServiceTask):
    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        if start.get("status") != "failed":
            start["status"] = "failed"
            await variables.update_task(start)
        log.warning("could not receive data set of project %s from %s: %s", variables.get("projectIdentifier"),
                    tasks.requester_identifier(start), variables.get("dataReceiveErrorMessage"))


class DeleteTemporaryData(ServiceTask):
    """Removes this instance's work directory (what was downloaded and decrypted), whatever happened."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        remove_work_directory(config(api, WORK_DIRECTORY), variables.business_key)


class SelectTargetDic(ServiceTask):
    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        sender = _sender(variables)
        target = await api.targets.of_organization(sender)
        if target is None:
            raise LookupError(f"no active endpoint of the DIC {sender}")
        variables.set_target(target)


class SendReceipt(MessageSend):
    """``dataStatus``: ``receipt-ok``, or this Task's ``receive-error`` as ``receipt-error`` with its error text."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        if variables.has(RECEIVE_ERROR):
            return status_inputs_from_outputs(variables.start_task)
        return [status_parameter("receipt-ok")]
