"""The public plugin API — the only ``dsf_core`` module a process plugin imports.

* :class:`ProcessPlugin` — the definition a plugin exports (entry point ``dsf.process_plugins``);
* :class:`ServiceTask`, :class:`MessageSend`, :class:`ExecutionListener`, :class:`UserTaskListener` —
  what ``camunda:class`` binds;
* :class:`Variables` — the instance's variables and Tasks; :class:`ProcessPluginApi` — services;
* :class:`Target`, :class:`Targets` — recipients; :class:`BpmnError` — the error boundary path;
* :mod:`dsf_core.api.tasks` — Task inputs/outputs; :class:`FhirClient`, :class:`FhirClientError`,
  :func:`classify` — talking to mailboxes and data stores;
* :class:`PluginSettings` — the plugin's ``[plugins.<name>]`` table; :class:`SettingsError` for what is wrong in it.
"""

from dsf_core.api import tasks
from dsf_core.api.activities import ExecutionListener, MessageSend, ServiceTask, SetCorrelationKey, UserTaskListener
from dsf_core.api.errors import BpmnError
from dsf_core.api.plugin import PluginDefinitionError, ProcessPlugin
from dsf_core.api.services import EndpointProvider, FhirClients, OrganizationProvider, ProcessPluginApi, TargetProvider
from dsf_core.api.targets import Target, Targets
from dsf_core.api.variables import Variables
from dsf_core.client import FhirClient, FhirClientError, classify
from dsf_core.settings import PluginSettings, SettingsError

__all__ = [
    "BpmnError",
    "EndpointProvider",
    "ExecutionListener",
    "FhirClient",
    "FhirClientError",
    "FhirClients",
    "MessageSend",
    "OrganizationProvider",
    "PluginDefinitionError",
    "PluginSettings",
    "ProcessPlugin",
    "ProcessPluginApi",
    "ServiceTask",
    "SetCorrelationKey",
    "SettingsError",
    "Target",
    "TargetProvider",
    "Targets",
    "UserTaskListener",
    "Variables",
    "classify",
    "tasks",
]
