"""The plugin definition: what a process plugin distribution exports.

A plugin registers one :class:`ProcessPlugin` under the entry-point group
``dsf.process_plugins``::

    [project.entry-points."dsf.process_plugins"]
    ping_pong = "dsf_plugin_ping_pong:PLUGIN"

Resource paths are relative to ``package`` (the package holding them as package data).
``a.b`` of the version ``a.b.c.d`` is the resource version used in every canonical URL
and BPMN ``versionTag`` (placeholder ``#{version}``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsf_core.settings import PluginSettings

if TYPE_CHECKING:
    from dsf_core.api.services import ProcessPluginApi

__all__ = ["PluginDefinitionError", "ProcessPlugin"]

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PluginDefinitionError(ValueError):
    """A plugin definition is malformed; the message names the plugin and the field."""


@dataclass(frozen=True)
class ProcessPlugin:
    name: str
    version: str
    release_date: date
    package: str
    #: BPMN files, relative to ``package``.
    models: tuple[str, ...]
    #: Process id (``<domain>_<name>``) → FHIR resource files (JSON or XML) deployed with it.
    fhir_resources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``camunda:class`` name → activity class, for names that are not importable dotted paths
    #: (e.g. the Java class names of models drawn for the Java DSF).
    class_map: Mapping[str, type[Any]] = field(default_factory=dict)
    title: str | None = None
    publisher: str | None = None
    #: The key of the plugin's table in the node config (``[plugins.<settings_name>]``); default: ``name``.
    settings_name: str | None = None
    #: Called with that table when the node starts, before anything deploys: raise
    #: :class:`dsf_core.settings.SettingsError` naming the key (``settings.where(key)``) to refuse
    #: the start, so a wrong setting shows at start-up, not at the first Task.
    check_settings: Callable[[PluginSettings], object] | None = None
    #: Called once the node has deployed the plugin, with the engine's API and the ids of the
    #: plugin's processes that are active there (the Java DSF's ``onProcessesDeployed``): publish
    #: a key, check a connection. May be a coroutine function; an exception stops the node's start.
    on_deployed: Callable[[ProcessPluginApi, Sequence[str]], Awaitable[object] | object] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PluginDefinitionError(f"plugin name {self.name!r} is not a valid name")
        if not _VERSION.match(self.version):
            raise PluginDefinitionError(f"plugin {self.name}: version {self.version!r} is not a.b.c.d")
        if not self.models:
            raise PluginDefinitionError(f"plugin {self.name}: no BPMN models")

    @property
    def resource_version(self) -> str:
        """``a.b``: the version in canonical URLs and BPMN version tags."""
        major, minor = self.version.split(".")[:2]
        return f"{major}.{minor}"

    @property
    def settings_key(self) -> str:
        return self.settings_name or self.name

    @property
    def pre_release(self) -> bool:
        """Versions ``0.x`` are pre-releases: their FHIR resources deploy as ``draft``."""
        return self.version.startswith("0.")

    def file(self, path: str) -> Traversable:
        """A resource file of the plugin (an absolute path is taken as it is)."""
        if Path(path).is_absolute():
            return Path(path)
        return resources.files(self.package).joinpath(path)
