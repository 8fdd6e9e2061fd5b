"""DSF process plugin hello world: processes dsfdev_helloWorld and dsfdev_helloUser.

The smallest complete processes, as a template for plugin authors: one service task
(``helloWorld``) and one user task answered through a Questionnaire (``helloUser``). The
BPMN models are in ``bpe/``, the FHIR resources deployed with them in ``fhir/``.
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import ProcessPlugin

__all__ = ["PLUGIN"]

PLUGIN = ProcessPlugin(
    name="dsf-plugin-hello-world",
    version="1.0.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/hello-world.bpmn", "bpe/hello-user.bpmn"),
    fhir_resources={
        "dsfdev_helloWorld": (
            "fhir/ActivityDefinition/hello-world.json",
            "fhir/StructureDefinition/task-hello-world.json",
            "fhir/Task/task-hello-world.json",
            "fhir/CodeSystem/hello-world.json",
            "fhir/ValueSet/hello-world.json",
        ),
        "dsfdev_helloUser": (
            "fhir/ActivityDefinition/hello-user.json",
            "fhir/StructureDefinition/task-hello-user.json",
            "fhir/Task/task-hello-user.json",
            "fhir/Questionnaire/hello-user.json",
            "fhir/CodeSystem/hello-world.json",
            "fhir/ValueSet/hello-world.json",
        ),
    },
    title="Hello world",
    publisher="dsf-py",
)
