"""docs/bpmn.md stays complete: every conformance model in bpmn/ is linked, and every rule of the
subset check (each element it runs, each construct it refuses by name) is named on the page."""

from __future__ import annotations

import re
from pathlib import Path

from dsf_core.bpe import subset

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bpmn.md"
LINK = re.compile(r"\]\((\.\./bpmn/[^)#]+)\)")


def test_every_conformance_model_is_linked() -> None:
    linked = {target.removeprefix("../bpmn/") for target in LINK.findall(PAGE.read_text())}
    models = {p.name for p in (ROOT / "bpmn").glob("*.bpmn")}
    assert not models - linked, f"conformance models not linked from docs/bpmn.md: {sorted(models - linked)}"


def test_every_link_into_bpmn_names_a_file_that_exists() -> None:
    missing = [t for t in LINK.findall(PAGE.read_text()) if not (PAGE.parent / t).exists()]
    assert not missing, f"docs/bpmn.md links files that do not exist: {missing}"


def test_every_element_and_extension_the_subset_check_knows_is_named() -> None:
    text = PAGE.read_text()
    refused_elements = [f"bpmn:{name}" for name in subset._ELEMENT_REASONS]
    refused_camunda = [f"camunda:{name}" for name in (*subset._CAMUNDA_HINTS, *subset._EXTENSION_REASONS)]
    supported_extensions = [f"camunda:{name}" for name in subset._EXTENSION_CHECKS]
    missing = [n for n in (*refused_elements, *refused_camunda, *supported_extensions) if f"`{n}`" not in text]
    assert not missing, f"named by dsf_core/bpe/subset.py but not in docs/bpmn.md: {missing}"


def test_every_supported_flow_node_has_a_row() -> None:
    # the element names the check dispatches on (startEvent, serviceTask, …), in the words of the page
    words = {"startEvent": "start event", "endEvent": "end event", "intermediateCatchEvent": "catch event",
             "intermediateThrowEvent": "throw event", "boundaryEvent": "boundary event", "serviceTask": "service task",
             "sendTask": "send task", "receiveTask": "receive task", "userTask": "user task",
             "subProcess": "sub-process", "exclusiveGateway": "exclusive gateway",
             "parallelGateway": "parallel gateway", "eventBasedGateway": "event-based gateway"}
    assert set(words) == set(subset._NODE_CHECKS), "a new kind of flow node: add it to docs/bpmn.md and here"
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| ")]
    missing = [kind for kind, word in words.items() if not any(word in row for row in rows)]
    assert not missing, f"flow nodes without a row in docs/bpmn.md: {missing}"
