"""The report plugin's settings: the node config's ``[plugins.report]`` table, checked when the node starts.

::

    [plugins.report]
    hrp_identifier = "forschen-fuer-gesundheit.de"   # DIC: the HRP to report to (a Task input wins)
    data_store = "default"                           # DIC: the [data_stores.<name>] holding the KDS data
    receipt_timeout = "PT45M"                        # DIC: how long to wait for the HRP's receipt
    publish_search_bundle = true                     # HRP: publish the search Bundle at start
    search_bundle_file = "my-search-bundle.json"     # HRP: publish this one instead of the shipped one

Every key is optional; errors name the file and the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsf_core.api import PluginSettings, ProcessPluginApi, SettingsError

from dsf_plugin_report.checker import SearchBundleError, check_search_bundle
from dsf_plugin_report.codes import DEFAULT_RECEIPT_TIMEOUT

__all__ = ["ReportSettings", "SETTINGS_NAME", "check_duration", "settings_of"]

#: The ``[plugins.<name>]`` table this plugin reads.
SETTINGS_NAME = "report"

#: An ISO-8601 duration as the Java Task profile's invariant ``timer-interval-regex`` accepts it.
_DURATION = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)(?:[.,](?P<f>\d{0,9}))?S)?)?$"
)
_KEYS = {"hrp_identifier", "data_store", "receipt_timeout", "publish_search_bundle", "search_bundle_file"}


def check_duration(text: object) -> str:
    """``text`` when it is a positive ISO-8601 duration (``P7D``, ``PT45M``, ``P1Y2M``); else ValueError."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT") or str(text).endswith("T"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration like P7D, PT12H or PT45M")
    if not any(int(v) for v in match.groupdict().values() if v):
        raise ValueError(f"{text!r} is no time at all; a duration must be longer than zero")
    return str(text)


@dataclass(frozen=True)
class ReportSettings:
    hrp_identifier: str | None = None
    data_store: str = "default"
    receipt_timeout: str = DEFAULT_RECEIPT_TIMEOUT
    publish_search_bundle: bool = True
    #: The search Bundle the HRP publishes (parsed and checked); None = the one shipped with the plugin.
    search_bundle: dict[str, Any] | None = None

    @classmethod
    def parse(cls, settings: PluginSettings) -> ReportSettings:
        for key in settings.table:
            if key not in _KEYS:
                raise SettingsError(f"{settings.where(key)}: unknown setting (known: {', '.join(sorted(_KEYS))})")
        values: dict[str, Any] = {}
        for key in ("hrp_identifier", "data_store"):
            if key in settings.table:
                value = settings.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise SettingsError(f"{settings.where(key)} must be a non-empty string")
                values[key] = value.strip()
        if "receipt_timeout" in settings.table:
            try:
                values["receipt_timeout"] = check_duration(settings.get("receipt_timeout"))
            except ValueError as exc:
                raise SettingsError(f"{settings.where('receipt_timeout')}: {exc}") from None
        if "publish_search_bundle" in settings.table:
            publish = settings.get("publish_search_bundle")
            if not isinstance(publish, bool):
                raise SettingsError(f"{settings.where('publish_search_bundle')} must be true or false")
            values["publish_search_bundle"] = publish
        path = settings.path("search_bundle_file")
        if path is not None:
            values["search_bundle"] = _search_bundle_file(path, settings.where("search_bundle_file"))
        return cls(**values)


def _search_bundle_file(path: Path, where: str) -> dict[str, Any]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsError(f"{where}: {path} is not JSON: {exc}") from None
    try:
        check_search_bundle(bundle)
    except SearchBundleError as exc:
        raise SettingsError(f"{where}: {path}: {exc}") from None
    return dict(bundle)


def settings_of(api: ProcessPluginApi) -> ReportSettings:
    """This node's parsed ``[plugins.report]`` table (parsed once, kept for the node's lifetime)."""
    return api.shared("report.settings", lambda: ReportSettings.parse(api.plugin_settings(SETTINGS_NAME)))
