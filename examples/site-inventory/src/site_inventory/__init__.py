"""DSF process plugin site-inventory: which processes does another organisation run?

Two processes, two organisations: ``exampleorg_siteInventory`` (started by the local
organisation with the message ``startSiteInventory`` naming another organisation) sends that
organisation a ``siteInventoryRequest``; its ``exampleorg_siteInventoryAnswer`` answers with a
``siteInventoryAnswer`` listing the processes its node runs, which become outputs of the start
Task. The plugin began as ``dsf plugin new site-inventory --domain example.org``.
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import ProcessPlugin

from site_inventory.settings import SETTINGS_NAME, check_settings

__all__ = ["PLUGIN"]

_SHARED = ("fhir/CodeSystem/site-inventory.json", "fhir/ValueSet/site-inventory.json")

PLUGIN = ProcessPlugin(
    name="site-inventory",
    # a.b.c.d, the same as in pyproject.toml; "a.b" is the resource version (#{version}) of every
    # canonical URL. 1.x: the FHIR resources deploy as active.
    version="1.0.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/site-inventory.bpmn", "bpe/site-inventory-answer.bpmn"),
    fhir_resources={
        "exampleorg_siteInventory": (
            "fhir/ActivityDefinition/site-inventory.json",
            "fhir/StructureDefinition/task-start-site-inventory.json",
            "fhir/StructureDefinition/task-site-inventory-answer.json",
            "fhir/Task/task-start-site-inventory.json",
            "fhir/CodeSystem/site-inventory-status.json",
            *_SHARED,
        ),
        "exampleorg_siteInventoryAnswer": (
            "fhir/ActivityDefinition/site-inventory-answer.json",
            "fhir/StructureDefinition/task-site-inventory-request.json",
            *_SHARED,
        ),
    },
    title="Site inventory",
    publisher="example.org",
    settings_name=SETTINGS_NAME,
    check_settings=check_settings,
)
