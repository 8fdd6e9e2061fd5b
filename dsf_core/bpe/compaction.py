"""Engine steps that keep the task tree bounded: long (endless) BPMN loops in one instance.

Stock SpiffWorkflow 3.2.0 keeps every task it ever ran. A loop (exclusive merge → activity
→ exclusive gateway back) adds about three tasks per pass, each with its own copy of the
data, and ``do_engine_steps()`` finds READY tasks with a ``TaskIterator(max_depth=1000)``:
after ~333 passes it silently stops (``completed`` stays False, no exception) and every
step costs time proportional to the tree (python-stack.md §1.8). DSF processes loop by
design (ping autostart: timer → send → again, until a stop signal), so the engine calls

* :func:`run_engine_steps` instead of ``workflow.do_engine_steps()`` after every event —
  the same steps in the same order, found without a depth limit, with :func:`compact`
  between them; and
* :func:`compact` on its own wherever it wants a small tree (before saving, say).

What :func:`compact` removes
----------------------------

Only *links of a finished chain*: a task ``T`` with parent ``P`` and single child ``C``
where

1. ``P``, ``T`` and ``C`` are all COMPLETED, ``P`` has no other child and ``T`` has no
   other child — so ``P → T → C`` becomes ``P → C`` and no task gains or loses a branch;
2. ``T`` is an ordinary element — not the root or a start construct (``Start``, a start
   event, the start-event split/join), not a join of any kind (parallel gateway,
   boundary-event join, the ``EndJoin``; a parallel fork is a join spec too), not a
   boundary-event split or boundary event, not a multi-instance/loop activity and not a
   sub-process task;
3. ``P`` is not an event split (boundary or start events) nor a multi-instance/loop
   activity (their children are their structure), and ``C`` is not a join (a join reads
   its parent);
4. ``T`` is not ``workflow.last_task`` and not waiting for an event.

``T`` is deleted from ``workflow.tasks`` and ``C`` takes its place among ``P``'s children.
Each (sub)workflow is compacted in its own task dict; sub-process *tasks* are never removed.

Finished sub-processes go too: a sub-process that has completed, once its task in the parent
has completed as well (the task copied the sub-process's final data; a multi-instance
instance's data was merged into the multi-instance task), is deleted from ``subprocesses``
with the sub-processes nested in it; and a completed multi-instance instance that was merged
keeps no data of its own. A fan-out to 30 targets otherwise carries every finished branch —
its tasks and each of their copies of the process variables — in every later save of the
instance.

Why that is safe
----------------

* **Data.** SpiffWorkflow reads a parent's data when a task is updated (``_inherit_data``:
  the parent's values win), when a branch is reset (``reset_branch``), when a join merges
  the inputs of finished instances (``UnstructuredJoin._run_hook``: ``task.parent.data``)
  and when the serializer stores a task as a delta against its parent. Rule 1 keeps every
  task that has an unfinished or failed child, so nothing can re-inherit from, or be reset
  against, a different parent; joins keep their parents (rule 3). The serializer computes
  deltas against whatever the parent is and restores them in ``workflow.tasks`` order,
  where an ancestor always comes before its descendants — a re-parented ``C`` round-trips
  with exactly its data (tested).
* **Joins.** ``ParallelGateway`` and ``InclusiveGateway`` decide by the spec and state of
  each instance's *parent*; ``UnstructuredJoin`` looks through ``workflow.tasks`` for
  waiting and finished instances of its spec and merges their parents' data; structured
  joins (boundary events, several start events) find their split with ``find_ancestor``
  and look at its children. Join tasks, their parents, and splits with their children are
  all kept; splicing only removes tasks, so ancestor/descendant relations among the
  remaining tasks do not change.
* **Multi-instance.** The instances are the children of the multi-instance task and are
  merged by id; both are kept (rule 2, 3).
* **Events.** Waiting catch events are registered in the event manager; the start event
  of a message start may be re-triggered; ``last_task`` is what the serializer and
  ``SubWorkflowTask.update_data`` read. All are kept (rules 2, 4).
* **Observers.** Cancelled and failed tasks are never removed, so ``get_tasks(state=
  CANCELLED)`` still says which activity a boundary event interrupted — unless they were
  inside a sub-process that has finished.
* **Finished sub-processes.** SpiffWorkflow looks a sub-process up by its task only while that
  task is unfinished (``SubWorkflowTask._update_hook``, which would start a new one for a
  missing entry) or being cancelled; a completed task is neither. A merged instance's data is
  read only by ``merge_child``, once, when the instance completes.

What stays, and the limits
--------------------------

A loop made of ordinary elements (tasks, exclusive and event-based gateways, intermediate
events) runs in a tree of constant size: 5–16 tasks for ``bpmn/loop.bpmn``, 12 for the
Java ping autostart. A loop *through* a boundary event, a sub-process or a multi-instance
activity keeps that structure per pass (10 tasks per pass instead of 20–21 in the test
"gauntlet"), so it still grows — and SpiffWorkflow's own depth-limited iterators
(``update_waiting_tasks``, ``get_tasks``, the ``EndJoin`` check) give such a loop a limit
of its own; model that kind of periodic work as new instances. A loop back through a
*parallel* join fails in stock SpiffWorkflow 3.2.0 regardless (``RecursionError`` in
``ParallelGateway._check_threshold_unstructured``, or the join firing on the inputs of
earlier passes). ``reset_from_task_id`` to a COMPLETED task whose parent was spliced out
would take the older data of its new parent; the engine only resets failed tasks, whose
parents are always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from SpiffWorkflow.bpmn.specs.control import EventSplit  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask  # type: ignore[import-untyped]
from SpiffWorkflow.specs.Join import Join  # type: ignore[import-untyped]
from SpiffWorkflow.specs.StartTask import StartTask  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

__all__ = ["compact", "has_ready_tasks", "run_engine_steps"]

# SpiffWorkflow is untyped; name its objects for readers.
SpiffTask = Any
SpiffWorkflow = Any
TaskCallback = Callable[[SpiffTask], None]

_COMPLETED: Final = TaskState.COMPLETED
_READY: Final = TaskState.READY
_FUTURE: Final = TaskState.FUTURE

# Never spliced out, whatever their state (rule 2 of the module docstring). StartTask is
# the root ``Start`` (BpmnStartTask), EventSplit the boundary-event and start-event
# splits, Join every kind of join, LoopTask multi-instance and standard loops.
_KEPT_SPECS: Final = (StartTask, StartEvent, EventSplit, Join, BoundaryEvent, LoopTask, SubWorkflowTask)
# Their children are their structure (rule 3).
_STRUCTURAL_PARENTS: Final = (EventSplit, LoopTask)
# Tasks run between two compactions inside one call: bounds how far the tree grows in
# between; compacting walks the tree, so not after every single task.
_COMPACT_EVERY: Final = 8


def run_engine_steps(
    workflow: SpiffWorkflow,
    *,
    will_complete_task: TaskCallback | None = None,
    did_complete_task: TaskCallback | None = None,
) -> None:
    """``workflow.do_engine_steps()`` for loops of any length.

    Runs every READY task that is not manual (user tasks wait), in the order SpiffWorkflow
    3.2.0 would — innermost active sub-processes first, depth first through the tree —
    until nothing is left to run, then refreshes timers as ``do_engine_steps`` does. READY
    tasks are found without a depth limit, and the tree is compacted before the steps,
    after every few tasks run and at the end, so it stays small however many loop passes
    run. The callbacks are those of ``do_engine_steps``. An exception from a task
    propagates as it would from ``do_engine_steps`` (the task is left in ERROR).
    """
    steps = _Steps(workflow, will_complete_task, did_complete_task)
    compact(workflow)
    while steps.round():
        pass
    compact(workflow)
    workflow.refresh_timers()


def has_ready_tasks(workflow: SpiffWorkflow) -> bool:
    """Whether ``workflow`` (its top workflow and every sub-process) has a READY task that is
    not manual: one :func:`run_engine_steps` would run. Timers refreshed at the end of the steps
    can leave such tasks behind."""
    return any(not task.task_spec.manual for task in _ready_tasks(workflow.top_workflow))


def compact(workflow: SpiffWorkflow) -> int:
    """Remove finished chain links from ``workflow``, its top workflow and every sub-process.

    Returns how many tasks were removed. The module docstring says which tasks go and why
    that changes neither how the instance runs nor what it serializes to.
    """
    top = workflow.top_workflow
    removed = _prune_finished(top)
    removed += _compact_tree(top, top)
    for subprocess in list(top.subprocesses.values()):
        removed += _compact_tree(subprocess, top)
    return removed


def _prune_finished(top: SpiffWorkflow) -> int:
    """Delete finished sub-processes whose task completed; empty merged instances' data."""
    subprocesses = top.subprocesses
    removed = 0
    done = [key for key, sp in subprocesses.items() if sp.completed]
    while done:
        pruned = []
        for key in done:
            task = top.get_task_from_id(key)
            if task is None or task._state == _COMPLETED:
                removed += len(subprocesses.pop(key).tasks)
                pruned.append(key)
        # A sub-process nested in a pruned one has lost its task: prune it in the next pass.
        done = [key for key in done if key not in pruned] if pruned else []
    for workflow in (top, *subprocesses.values()):
        tasks = workflow.tasks
        last = workflow.last_task.id if workflow.last_task is not None else None
        for task in tasks.values():
            if task._state != _COMPLETED or not task.data or task.id == last:
                continue
            parent = tasks.get(task._parent)
            if (
                parent is not None
                and isinstance(parent.task_spec, LoopTask)
                and str(task.id) in parent.internal_data.get("merged", ())
            ):
                task.data = {}
    return removed


# ---------------------------------------------------------------------------- steps


class _Steps:
    """``BpmnWorkflow._do_engine_steps`` rounds, compacting after every ``_COMPACT_EVERY`` tasks run."""

    def __init__(
        self, workflow: SpiffWorkflow, will_complete: TaskCallback | None, did_complete: TaskCallback | None
    ) -> None:
        self.workflow = workflow
        self.will_complete = will_complete
        self.did_complete = did_complete
        self.since_compaction = 0

    def round(self) -> bool:
        """One round: True if it ran a task or started a sub-process."""
        workflow = self.workflow
        active = workflow.get_active_subprocesses()
        for subprocess in sorted(active, key=lambda sp: sp.depth, reverse=True):
            while self.run_ready(subprocess) > 0:
                pass
            if subprocess.parent_task_id is not None:
                task = workflow.get_task_from_id(subprocess.parent_task_id)
                task.task_spec._update(task)
        ran = self.run_ready(workflow)
        return ran > 0 or len(workflow.get_active_subprocesses()) > len(active)

    def run_ready(self, workflow: SpiffWorkflow) -> int:
        # Like SpiffWorkflow: take the READY tasks first, then run them one after the other.
        count = 0
        for task in _ready_tasks(workflow):
            if not task.task_spec.manual:
                if self.will_complete is not None:
                    self.will_complete(task)
                task.run()
                count += 1
                if self.did_complete is not None:
                    self.did_complete(task)
        # Between two batches the instance is in the same state as between two calls of
        # do_engine_steps: a safe point to compact. Only the top workflow and the active
        # sub-processes can have grown; completed ones are compacted at the end.
        self.since_compaction += count
        if self.since_compaction >= _COMPACT_EVERY:
            top = self.workflow.top_workflow
            _compact_tree(top, top)
            for subprocess in top.get_active_subprocesses():
                _compact_tree(subprocess, top)
            self.since_compaction = 0
        return count


def _ready_tasks(workflow: SpiffWorkflow) -> list[SpiffTask]:
    """``workflow.get_tasks(state=READY)`` without ``max_depth``: the same depth-first order,
    descending into the sub-process of a task before its children, and not below predicted
    (MAYBE/LIKELY) tasks."""
    subprocesses = workflow.top_workflow.subprocesses
    found = []
    stack = [workflow.task_tree]
    while stack:
        task = stack.pop()
        state = task._state
        if state == _READY:
            found.append(task)
        # Only a sub-process task can have a sub-process (and hashing a UUID is not free).
        subprocess = (
            subprocesses.get(task.id) if subprocesses and isinstance(task.task_spec, SubWorkflowTask) else None
        )
        if subprocess is not None or (task._children and state >= _FUTURE):
            tasks = task.workflow.tasks
            stack.extend([tasks.get(child) for child in reversed(task._children)])
            if subprocess is not None:
                stack.append(subprocess.task_tree)
    return found


# ---------------------------------------------------------------------------- compaction


def _compact_tree(workflow: SpiffWorkflow, top: SpiffWorkflow) -> int:
    """Splice the removable tasks out of one (sub)workflow's tree."""
    tasks = workflow.tasks
    kept = {workflow.task_tree.id}
    if workflow.last_task is not None:
        kept.add(workflow.last_task.id)
    waiting = top.event_manager.tasks
    removed = 0
    # Insertion order puts a parent before its children, so a whole chain collapses in one
    # pass: once T is spliced out, its child is judged with its new parent.
    for task in list(tasks.values()):
        if not _removable(task, tasks) or task.id in kept or task.id in waiting:
            continue
        parent = tasks[task._parent]
        child_id = task._children[0]
        parent._children[parent._children.index(task.id)] = child_id
        tasks[child_id]._parent = parent.id
        del tasks[task.id]
        task._children = []
        workflow._task_removed_notify(task)
        removed += 1
    return removed


def _removable(task: SpiffTask, tasks: dict[Any, SpiffTask]) -> bool:
    """Rules 1–3 of the module docstring (rule 4 is checked by the caller)."""
    if task._state != _COMPLETED or len(task._children) != 1 or isinstance(task.task_spec, _KEPT_SPECS):
        return False
    parent = tasks.get(task._parent)
    if (
        parent is None
        or parent._state != _COMPLETED
        or len(parent._children) != 1
        or isinstance(parent.task_spec, _STRUCTURAL_PARENTS)
    ):
        return False
    child = tasks.get(task._children[0])
    return child is not None and child._state == _COMPLETED and not isinstance(child.task_spec, Join)
