"""The HRP's search Bundle: the count-only searches every DIC runs for its report.

The plugin ships one (``fhir/Bundle/search-bundle.json``, written for dsf-py: counts per KDS
module profile and per code system in use, Encounters per year, the store's ``metadata``); an
HRP may publish its own instead (``search_bundle_file``). When the node starts, an HRP member
of the consortium running ``reportReceive`` publishes it on its mailbox by conditional update on
the identifier ``…/CodeSystem/report|search-bundle-v<a.b>``, readable by all; DICs fetch it from
there. Whatever is published has passed the DICs' checker first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

from dsf_core.api import ProcessPluginApi, tasks

from dsf_plugin_report.checker import check_search_bundle
from dsf_plugin_report.codes import (
    MII_PARENT,
    ORGANIZATION_IDENTIFIER,
    PROFILE_SEARCH_BUNDLE,
    READ_ACCESS_TAG,
    REPORT,
    RESOURCE_VERSION,
    search_bundle_code,
)
from dsf_plugin_report.config import ReportSettings, settings_of
from dsf_plugin_report.mailbox import put_by_identifier

__all__ = ["PROCESS_RECEIVE_ID", "publish_search_bundle", "search_bundle"]

log = logging.getLogger("dsf.plugin.report")

PROCESS_RECEIVE_ID = "medizininformatik-initiativede_reportReceive"


def search_bundle(settings: ReportSettings | None = None, version: str = RESOURCE_VERSION) -> dict[str, Any]:
    """The search Bundle to publish: the configured one or the shipped one, with identifier, profile
    and read access set for ``version``, checked against every rule."""
    if settings is not None and settings.search_bundle is not None:
        bundle = json.loads(json.dumps(settings.search_bundle))
    else:
        text = resources.files(__package__).joinpath("fhir/Bundle/search-bundle.json").read_text(encoding="utf-8")
        bundle = json.loads(text.replace("#{version}", version))
    for key in ("id", "timestamp"):
        bundle.pop(key, None)
    bundle["meta"] = {
        "profile": [f"{PROFILE_SEARCH_BUNDLE}|{version}"],
        "tag": [{"system": READ_ACCESS_TAG, "code": "ALL"}],
    }
    bundle["identifier"] = {"system": REPORT, "value": search_bundle_code(version)}
    check_search_bundle(bundle)
    return dict(bundle)


async def publish_search_bundle(api: ProcessPluginApi, active: Sequence[str]) -> None:
    """``on_deployed``: an HRP of the consortium running ``reportReceive`` publishes the search Bundle."""
    settings = settings_of(api)
    if PROCESS_RECEIVE_ID not in active or not settings.publish_search_bundle:
        return
    hrps = {tasks.identifier_value(o, ORGANIZATION_IDENTIFIER) for o in await api.organizations.members(MII_PARENT, "HRP")}
    if api.organization_identifier not in hrps:
        return
    bundle = search_bundle(settings)
    where = await put_by_identifier(api.fhir.local(), bundle, REPORT, search_bundle_code())
    log.info("search Bundle %s|%s (%d searches) published as %s", REPORT, search_bundle_code(),
             len(bundle["entry"]), where)
