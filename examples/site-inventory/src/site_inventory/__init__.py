"""DSF process plugin site-inventory: process exampleorg_siteInventory.

The BPMN model is in ``bpe/``, the FHIR resources deployed with it in ``fhir/``, the Python
activities the model binds in ``activities.py``. The plugin imports nothing of dsf-py but
``dsf_core.api``; docs/plugin-authoring.md of dsf-py explains every part.
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import ProcessPlugin

__all__ = ["PLUGIN"]

PLUGIN = ProcessPlugin(
    name="site-inventory",
    # a.b.c.d, the same as in pyproject.toml; "a.b" is the resource version (#{version}) of every
    # canonical URL, and versions 0.x deploy their FHIR resources as draft.
    version="0.1.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/site-inventory.bpmn",),
    fhir_resources={
        "exampleorg_siteInventory": (
            "fhir/ActivityDefinition/site-inventory.json",
            "fhir/StructureDefinition/task-start-site-inventory.json",
            "fhir/Task/task-start-site-inventory.json",
        ),
    },
    title="Site inventory",
    publisher="example.org",
)
