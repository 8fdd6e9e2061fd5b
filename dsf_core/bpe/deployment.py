"""Deployment: process plugins found, their models loaded and bound, their FHIR resources uploaded.

Plugins come from the entry-point group ``dsf.process_plugins`` and from the plugin
folders of the node config (every top-level module or package there exporting
``PLUGIN``). For each plugin, at every start:

1. placeholders are replaced in its BPMN and FHIR files: ``#{version}`` (the resource
   version ``a.b``), ``#{date}`` (release date), ``#{organization}`` (the local
   organisation identifier) and ``#{env.NAME}`` (the environment at start);
2. every BPMN model is parsed (the DSF subset is enforced there); its ``versionTag`` must
   equal the resource version; every ``camunda:class`` must resolve — through the plugin's
   ``class_map`` or as an importable dotted path — to the right kind of activity;
3. a process id + version deployed twice (by two plugins or twice in one) is refused;
4. excluded processes are skipped, retired ones deploy as ``retired`` (no new instances);
5. the FHIR resources of every deployed process are uploaded to the local mailbox in one
   batch of conditional updates (``url`` + ``version``; Task templates by identifier), as
   ``active`` (``draft`` for pre-release plugins, ``retired`` for retired processes).

Any problem stops deployment with a :class:`DeploymentError` naming the plugin, file and
element.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import pkgutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dsf_core.api.activities import ExecutionListener, MessageSend, ServiceTask, UserTaskListener
from dsf_core.api.plugin import ProcessPlugin
from dsf_core.bpe.model import ModelError, ProcessModel
from dsf_core.bpe.parser import parse_bpmn, replace_placeholders
from dsf_core.bpe.specs import DsfServiceTask
from dsf_core.fhir.xml import parse_xml

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeployedProcess",
    "DeploymentError",
    "discover_plugins",
    "load_plugin",
    "placeholders_for",
    "plugin_resources",
    "resource_upload_bundle",
]

log = logging.getLogger("dsf.bpe.deployment")

ENTRY_POINT_GROUP = "dsf.process_plugins"
_METADATA_TYPES = ("ActivityDefinition", "CodeSystem", "Library", "Measure", "NamingSystem", "Questionnaire",
                   "StructureDefinition", "ValueSet")
_ALLOWED_TYPES = (*_METADATA_TYPES, "Task")


class DeploymentError(Exception):
    """A plugin cannot be deployed; the message names the plugin, the file and the element."""


@dataclass(frozen=True, eq=False)
class DeployedProcess:
    plugin: ProcessPlugin
    model: ProcessModel
    classes: Mapping[str, type[Any]]
    status: str  # "active" | "retired"
    digest: str

    @property
    def process_id(self) -> str:
        return self.model.process_id

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def key(self) -> str:
        return f"{self.model.process_id}|{self.model.version}"


# ----------------------------------------------------------------------------- discovery


def discover_plugins(plugin_dirs: Sequence[Path] = (), *, entry_points: bool = True) -> list[ProcessPlugin]:
    """Installed plugins (entry points) and those in ``plugin_dirs``, in a stable order."""
    plugins: list[ProcessPlugin] = []
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                plugin = ep.load()
            except Exception as exc:
                raise DeploymentError(f"plugin entry point {ep.name} = {ep.value}: cannot load: {exc}") from exc
            plugins.append(_check_plugin(plugin, f"entry point {ep.name} = {ep.value}"))
    for directory in plugin_dirs:
        if not directory.is_dir():
            raise DeploymentError(f"plugin folder {directory} does not exist")
        path = str(directory.resolve())
        if path not in sys.path:
            sys.path.append(path)
        for wheel in sorted(directory.glob("*.whl")):
            if str(wheel) not in sys.path:
                sys.path.append(str(wheel))
        locations = [path, *(str(w) for w in sorted(directory.glob("*.whl")))]
        for module in sorted(pkgutil.iter_modules(locations), key=lambda m: m.name):
            try:
                loaded = importlib.import_module(module.name)
            except Exception as exc:
                raise DeploymentError(f"plugin folder {directory}: cannot import {module.name}: {exc}") from exc
            plugin = getattr(loaded, "PLUGIN", None)
            if plugin is not None:
                plugins.append(_check_plugin(plugin, f"{directory}/{module.name}"))
    names = [p.name for p in plugins]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DeploymentError(f"plugin(s) found more than once: {', '.join(duplicates)}")
    return plugins


def _check_plugin(plugin: Any, where: str) -> ProcessPlugin:
    if not isinstance(plugin, ProcessPlugin):
        raise DeploymentError(f"{where}: expected a dsf_core.api.ProcessPlugin, got {type(plugin).__name__}")
    return plugin


# ----------------------------------------------------------------------------- models


def placeholders_for(plugin: ProcessPlugin, organization: str, environ: Mapping[str, str]) -> dict[str, str]:
    values = {
        "version": plugin.resource_version,
        "date": plugin.release_date.isoformat(),
        "organization": organization,
    }
    values.update({f"env.{k}": v for k, v in environ.items()})
    return values


def load_plugin(
    plugin: ProcessPlugin,
    placeholders: Mapping[str, str],
    *,
    excluded: Iterable[str] = (),
    retired: Iterable[str] = (),
) -> list[DeployedProcess]:
    """Parse and bind every model of ``plugin``; excluded processes are left out."""
    excluded, retired = set(excluded), set(retired)
    deployed: list[DeployedProcess] = []
    for path in plugin.models:
        file = f"{plugin.name}:{path}"
        try:
            data = plugin.file(path).read_bytes()
        except OSError as exc:
            raise DeploymentError(f"plugin {plugin.name}: BPMN file {path} not found: {exc}") from None
        try:
            model = parse_bpmn(data, file, placeholders=placeholders)
        except ModelError as exc:
            raise DeploymentError(f"plugin {plugin.name}: {exc}") from exc
        if model.version != plugin.resource_version:
            raise DeploymentError(
                f"plugin {plugin.name}: {file}: process {model.process_id} has versionTag {model.version!r}, "
                f"expected the plugin's resource version {plugin.resource_version!r}"
            )
        key = f"{model.process_id}|{model.version}"
        if model.process_id in excluded or key in excluded:
            log.info("process %s of plugin %s excluded by configuration", key, plugin.name)
            continue
        if any(d.key == key for d in deployed):
            raise DeploymentError(f"plugin {plugin.name}: {file}: process {key} is defined twice")
        status = "retired" if (model.process_id in retired or key in retired) else "active"
        digest = hashlib.sha256(data).hexdigest()
        deployed.append(DeployedProcess(plugin, model, _bind_classes(plugin, model, file), status, digest))
    return deployed


def _bind_classes(plugin: ProcessPlugin, model: ProcessModel, file: str) -> dict[str, type[Any]]:
    classes: dict[str, type[Any]] = {}
    for spec in model.elements():
        binding = getattr(spec, "binding", None)
        if binding is None:
            continue
        uses: list[tuple[str, type[Any]]] = []
        if binding.class_name:
            uses.append((binding.class_name, ServiceTask if isinstance(spec, DsfServiceTask) else MessageSend))
        uses += [(x.class_name, ExecutionListener) for x in binding.execution_listeners]
        uses += [(x.class_name, UserTaskListener) for x in binding.task_listeners]
        for name, expected in uses:
            cls = classes.get(name) or _resolve(plugin, name, file, spec.bpmn_id)
            if not (isinstance(cls, type) and issubclass(cls, expected)):
                raise DeploymentError(
                    f"plugin {plugin.name}: {file}: element {spec.bpmn_id!r}: camunda:class {name} is "
                    f"{getattr(cls, '__name__', cls)!r}, not a {expected.__module__.split('.')[0]}.api.{expected.__name__}"
                )
            classes[name] = cls
    return classes


def _resolve(plugin: ProcessPlugin, name: str, file: str, element: str) -> Any:
    if name in plugin.class_map:
        return plugin.class_map[name]
    module_name, _, attr = name.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DeploymentError(
            f"plugin {plugin.name}: {file}: element {element!r}: camunda:class {name} is neither in the plugin's "
            f"class_map nor importable ({exc})"
        ) from None


# ----------------------------------------------------------------------------- FHIR resources


def plugin_resources(
    plugin: ProcessPlugin, process_id: str, placeholders: Mapping[str, str], *, status: str
) -> list[dict[str, Any]]:
    """The FHIR resources deployed with ``process_id``, placeholders replaced, status set."""
    out: list[dict[str, Any]] = []
    for path in plugin.fhir_resources.get(process_id, ()):
        file = f"{plugin.name}:{path}"
        try:
            raw = plugin.file(path).read_bytes()
        except OSError as exc:
            raise DeploymentError(f"plugin {plugin.name}: FHIR resource {path} not found: {exc}") from None
        try:
            data = replace_placeholders(raw, placeholders, file) if path.endswith(".xml") else _replace_json(raw, placeholders, file)
            resource = parse_xml(data) if path.endswith(".xml") else orjson.loads(data)
        except (ModelError, ValueError) as exc:
            raise DeploymentError(f"plugin {plugin.name}: {file}: {exc}") from None
        rtype = resource.get("resourceType")
        if rtype not in _ALLOWED_TYPES:
            raise DeploymentError(f"plugin {plugin.name}: {file}: resource type {rtype} cannot be deployed by a plugin")
        if rtype == "Task":
            resource["status"] = "draft"
        elif rtype == "NamingSystem":  # no url and version in R4: unique by name
            if not resource.get("name"):
                raise DeploymentError(f"plugin {plugin.name}: {file}: NamingSystem needs a name")
            resource["status"] = "draft" if plugin.pre_release else status
        else:
            if not resource.get("url") or not resource.get("version"):
                raise DeploymentError(f"plugin {plugin.name}: {file}: {rtype} needs url and version")
            resource["status"] = "draft" if plugin.pre_release else status
        out.append(resource)
    return out


def _replace_json(raw: bytes, placeholders: Mapping[str, str], file: str) -> bytes:
    # JSON strings: replace inside the text, escaping the values as JSON string content.
    import re

    def value(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode()
        if name not in placeholders:
            line = raw[: match.start()].count(b"\n") + 1
            raise ModelError(file, f"unresolved placeholder #{{{name}}}", line=line)
        return orjson.dumps(placeholders[name])[1:-1]

    return re.sub(rb"#\{([A-Za-z0-9_.\-]+)\}", value, raw)


def resource_upload_bundle(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch of conditional updates: by ``url`` + ``version``, Task templates by identifier, NamingSystems by name."""
    from urllib.parse import quote

    entries = []
    for resource in resources:
        rtype = resource["resourceType"]
        if rtype == "Task":
            identifier: dict[str, Any] = next(iter(resource.get("identifier", [])), {})
            url = f"Task?identifier={quote(identifier.get('system', ''), safe='')}|{quote(identifier.get('value', ''), safe='')}"
        elif rtype == "NamingSystem":
            url = f"NamingSystem?name:exact={quote(resource['name'], safe='')}"
        else:
            url = f"{rtype}?url={quote(resource['url'], safe='')}&version={quote(resource['version'], safe='')}"
        entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}
