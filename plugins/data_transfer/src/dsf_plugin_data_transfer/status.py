"""The data-set-status vocabulary shared by both sides, and the settings the plugin reads.

A status travels as a Task parameter typed ``data-transfer|data-set-status`` whose value is a
Coding of ``http://medizininformatik-initiative.de/fhir/CodeSystem/data-set-status``, with the
extension ``extension-data-set-status-error`` (valueString) saying what failed (as the Java
``DataSetStatusGenerator`` writes them). The DMS reports ``receive-ok``/``receive-error`` on its own
Task and answers ``receipt-ok``/``receipt-error`` to the DIC, which copies the answer onto its
start Task — or writes ``not-allowed``, ``not-reachable`` or ``receipt-missing`` itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dsf_core.api import PluginSettings, ProcessPluginApi, SettingsError, tasks

__all__ = [
    "DATA_SET_STATUS",
    "DATA_TRANSFER",
    "ERROR_EXTENSION",
    "MII_PARENT",
    "add_status_output",
    "config",
    "status_inputs_from_outputs",
    "status_outputs_from_inputs",
    "status_parameter",
]

MII = "http://medizininformatik-initiative.de"
DATA_TRANSFER = f"{MII}/fhir/CodeSystem/data-transfer"
DATA_SET_STATUS = f"{MII}/fhir/CodeSystem/data-set-status"
ERROR_EXTENSION = f"{MII}/fhir/StructureDefinition/extension-data-set-status-error"
#: The consortium whose DIC and DMS roles the processes use (as the Java plugin, fixed).
MII_PARENT = "medizininformatik-initiative.de"

#: Settings: the node's data store for the DIC's and the DMS's data sets (``[data_stores.<name>]``,
#: default ``default``), how long the DIC waits for the receipt (ISO-8601, default ``PT5M``), and
#: where the DMS keeps a data set while it processes it. Each is read from the node config's
#: ``[plugins.data_transfer]`` table (key in :data:`SETTINGS_KEYS`), else from the environment
#: under the Java plugin's name below.
DIC_STORE = "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_DIC_STORE"
DMS_STORE = "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_DMS_STORE"
RECEIPT_TIMEOUT = "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_RECEIPT_TIMEOUT"
WORK_DIRECTORY = "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_WORK_DIRECTORY"
DEFAULTS = {DIC_STORE: "default", DMS_STORE: "default", RECEIPT_TIMEOUT: "PT5M"}

#: ``[plugins.data_transfer]`` key → the Java environment name it stands for.
SETTINGS_NAME = "data_transfer"
SETTINGS_KEYS = {
    "dms_private_key": "DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY",
    "dms_public_key": "DE_MEDIZININFORMATIK_INITIATIVE_DMS_PUBLIC_KEY",
    "dic_store": DIC_STORE,
    "dms_store": DMS_STORE,
    "receipt_timeout": RECEIPT_TIMEOUT,
    "work_directory": WORK_DIRECTORY,
}
_PATHS = {"dms_private_key", "dms_public_key", "work_directory"}


def check_settings(settings: PluginSettings) -> None:
    """Unknown keys in ``[plugins.data_transfer]`` stop the node at start, naming the key."""
    known = set(SETTINGS_KEYS) | {f"{k}_file" for k in ("dms_private_key", "dms_public_key")}
    for key in settings.table:
        if key not in known:
            raise SettingsError(f"{settings.where(key)}: unknown setting (known: {', '.join(sorted(SETTINGS_KEYS))})")


def config(api: ProcessPluginApi, name: str) -> str | None:
    """A setting of this plugin: ``[plugins.data_transfer]``, else the node's environment, else the default.

    ``name`` is the Java environment name (``…_FILE`` for a key given as a file)."""
    table = api.plugin_settings(SETTINGS_NAME)
    base = name.removesuffix("_FILE")
    key = next((k for k, java in SETTINGS_KEYS.items() if java == base), None)
    if key is not None:
        wanted = f"{key}_file" if name.endswith("_FILE") else key
        if wanted in table.table:
            raw = str(table.get(wanted))
            if wanted.endswith("_file") or (key in _PATHS and not raw.lstrip().startswith("-----BEGIN")):
                return str(table.path(wanted))  # relative to the config file
            return raw
    return api.config(name, DEFAULTS.get(name))


def config_of(api: ProcessPluginApi) -> Callable[[str], str | None]:
    """:func:`config` bound to ``api`` (what the key loaders take)."""
    return lambda name: config(api, name)


def status_parameter(code: str, error: str | None = None) -> dict[str, Any]:
    """A ``data-set-status`` input or output (the two have the same shape)."""
    extension = [{"url": ERROR_EXTENSION, "valueString": error}] if error else None
    return tasks.parameter(DATA_TRANSFER, "data-set-status", "Coding", {"system": DATA_SET_STATUS, "code": code},
                           extension=extension)


def add_status_output(task: dict[str, Any], code: str, error: str | None = None) -> None:
    task.setdefault("output", []).append(status_parameter(code, error))


def _statuses(parameters: list[Any]) -> Iterator[dict[str, Any]]:
    for parameter in parameters:
        codings = parameter.get("type", {}).get("coding", [])
        if any(c.get("system") == DATA_TRANSFER and c.get("code") == "data-set-status" for c in codings):
            yield copy.deepcopy(parameter)


def status_outputs_from_inputs(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``data-set-status`` inputs of a receipt, as outputs for the start Task (extension kept)."""
    return list(_statuses(task.get("input", [])))


def status_inputs_from_outputs(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``data-set-status`` outputs of the DMS's Task as receipt inputs, ``receive-error`` → ``receipt-error``."""
    inputs = list(_statuses(task.get("output", [])))
    for parameter in inputs:
        coding = parameter.get("valueCoding") or {}
        if coding.get("system") == DATA_SET_STATUS and coding.get("code") == "receive-error":
            coding["code"] = "receipt-error"
    return inputs


def has_error(parameter: Mapping[str, Any]) -> bool:
    return any(e.get("url") == ERROR_EXTENSION for e in parameter.get("extension", []))
