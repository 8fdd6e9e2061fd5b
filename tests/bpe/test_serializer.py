"""Every DSF spec survives SpiffWorkflow's serializer (needed for persistence)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsf_core.bpe.scripting import DsfScriptEngine
from dsf_core.bpe.serializer import create_serializer
from dsf_core.bpe.specs import DsfElement, JuelCondition
from tests.bpe.runner import BPMN_DIR, Run

MODELS = sorted(BPMN_DIR.glob("*.bpmn"))
START_VARIABLES: dict[str, Any] = {"timerInterval": "PT1M", "amount": 5, "label": "x", "limit": 2, "name": "Ada", "count": 0}


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_round_trip(path: Path) -> None:
    run = Run.of(path.stem).start(**START_VARIABLES)
    serializer = create_serializer()
    text = serializer.serialize_json(run.workflow)
    restored = serializer.deserialize_json(text)
    restored.script_engine = DsfScriptEngine(run.host, clock=run.clock)
    assert json.loads(serializer.serialize_json(restored)) == json.loads(text)

    for name, spec in run.workflow.spec.task_specs.items():
        again = restored.spec.task_specs[name]
        assert type(again) is type(spec)
        if isinstance(spec, DsfElement):
            assert again.binding == spec.binding
        if hasattr(spec, "event_definition"):
            assert type(again.event_definition) is type(spec.event_definition)
        for condition, _ in getattr(again, "cond_task_specs", []):
            assert condition is None or isinstance(condition, JuelCondition)


def test_restored_workflow_continues() -> None:
    run = Run.of("timer-boundary-non-interrupting").start()
    run.advance_to_next_timer()
    serializer = create_serializer()
    restored = serializer.deserialize_json(serializer.serialize_json(run.workflow))
    restored.script_engine = DsfScriptEngine(run.host, clock=run.clock)
    run.workflow = restored
    run.advance_to_next_timer()
    assert run.host.elements() == ["Remind", "Remind"]
    run.deliver("reply", run.waiting("AwaitReply")[0])
    assert run.completed
