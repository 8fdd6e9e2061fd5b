"""The plugin's settings: the node config's ``[plugins.site_inventory]`` table.

::

    [plugins.site_inventory]
    answer_timeout = "PT5M"    # how long to wait for an answer (ISO-8601 duration)

The node calls :func:`check_settings` when it starts, before anything deploys, so a wrong value
stops the start with the file and key instead of failing the first inventory.
"""

from __future__ import annotations

import re

from dsf_core.api import PluginSettings, SettingsError

__all__ = ["DEFAULT_ANSWER_TIMEOUT", "SETTINGS_NAME", "answer_timeout", "check_settings"]

SETTINGS_NAME = "site_inventory"
DEFAULT_ANSWER_TIMEOUT = "PT5M"
_KEYS = frozenset({"answer_timeout"})
# Days and time parts, as BPMN timer durations are written (PT30S, PT5M, P1DT12H).
_DURATION = re.compile(r"^P(?=\d|T\d)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def answer_timeout(settings: PluginSettings) -> str:
    """The ``answer_timeout`` as an ISO-8601 duration (the BPMN timer's value)."""
    value = settings.get("answer_timeout", DEFAULT_ANSWER_TIMEOUT)
    if not isinstance(value, str) or not _DURATION.match(value):
        raise SettingsError(f"{settings.where('answer_timeout')} must be an ISO-8601 duration such as PT5M, got {value!r}")
    return value


def check_settings(settings: PluginSettings) -> None:
    unknown = sorted(set(settings.table) - _KEYS)
    if unknown:
        raise SettingsError(f"{settings.where(unknown[0])} is not a setting of this plugin (known: {', '.join(sorted(_KEYS))})")
    answer_timeout(settings)
