"""The script engine: JUEL instead of Python, a replaceable ``execution``, an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.bpe.expressions import Execution
from dsf_core.bpe.scripting import DsfScriptEngine
from tests.bpe.runner import Run, StubHost


class BusinessExecution(Execution):
    def getBusinessKey(self) -> str:  # noqa: N802 - Camunda's name
        return "bk-1"


def waiting_task() -> Any:
    run = Run.of("message-start-service-end")
    [task] = run.workflow.get_tasks(state=TaskState.WAITING)
    task.data.update(x=2)
    return task


def test_evaluates_juel_against_task_data() -> None:
    engine = DsfScriptEngine(StubHost(), execution=lambda task: BusinessExecution(task.data))
    task = waiting_task()
    assert engine.evaluate(task, "${x * 2}") == 4
    assert engine.evaluate(task, "PT20S") == "PT20S"
    assert engine.evaluate(task, "${execution.getBusinessKey()}") == "bk-1"
    assert engine.evaluate(task, "${execution.hasVariable('x')}") is True


def test_errors_carry_the_task() -> None:
    engine = DsfScriptEngine(StubHost())
    task = waiting_task()
    with pytest.raises(WorkflowTaskException, match="unknown variable 'nope'") as info:
        engine.evaluate(task, "${nope}")
    assert info.value.task is task


def test_scripts_are_refused() -> None:
    engine = DsfScriptEngine(StubHost())
    task = waiting_task()
    with pytest.raises(WorkflowTaskException, match="scripts are not part of the DSF BPMN subset"):
        engine.execute(task, "x = 1")
    with pytest.raises(WorkflowTaskException, match="service operators"):
        engine.call_service(task, operation_name="x")


def test_clock() -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert DsfScriptEngine(clock=lambda: moment).now() == moment
    with pytest.raises(ValueError, match="aware"):
        DsfScriptEngine(clock=lambda: datetime(2026, 1, 1)).now()
