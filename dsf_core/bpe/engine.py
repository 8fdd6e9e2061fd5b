"""The engine: Tasks in, process instances stepped, persisted, timed, and Tasks out.

Life of a received Task (``handle_task``, fed by the connectors)::

    requested Task ─► handled before? ─yes─► (re-write its status) done
          │no
          ▼
    TaskMessage.of (instantiatesCanonical, message-name, business-key, correlation-key)
          │                                   └── malformed ─► Task failed (error output)
          ▼
    running instance of that process with that business key?
          ├─yes─► exactly one waiting element catches message-name (and correlation-key)
          │        ├─yes─► delivered to that (sub)workflow only ─► advance
          │        └─no──► Task failed: "Unable to correlate Task"
          └─no──► message-name starts the process? ─yes─► new instance ─► advance
                                                  └─no──► Task failed

``advance`` is the one loop every event goes through (start, delivery, due timer, answered
user task, recovery): run engine steps; save the instance (state without spec, Tasks, next
timer, signal waits, handled Task ids — one transaction); write Task status changes to the
local mailbox; post the QuestionnaireResponse of every user task reached (see
:mod:`dsf_core.bpe.user_tasks`); run the activities the steps started, concurrently;
complete their tasks (or take the BPMN error path); repeat until nothing is pending. An
activity failing after its retries, an unhandled BPMN error, a broken expression or a user
task without its Questionnaire fails the instance: every open Task of it becomes ``failed``
with an ``error`` output. At the end every Task still ``in-progress`` becomes ``completed``
with the outputs activities put on it (a Task that started or reached the instance in the
step that ended it goes ``requested → in-progress → completed``, as the mailbox requires).

A completed QuestionnaireResponse (``handle_questionnaire_response``, fed by the second
connector) completes the user task named by its ``user-task-id`` item in the instance with
its ``business-key``; it is stored as the variable ``questionnaireResponse`` and set
``amended`` on the mailbox. One for no running instance or no waiting user task is ignored
with a warning.

Signals thrown by an instance reach every other instance of this node waiting for them, and
start a new instance of every active process with a matching signal start event.

Crash safety: state is saved before any side effect. A restarted engine re-runs the
activities that were running (at-least-once, as Camunda's jobs), posts the
QuestionnaireResponses of user tasks reached but not yet posted, fires overdue timers and
re-writes the statuses of open Tasks; a Task seen again is recognised as handled, a
QuestionnaireResponse seen again (answered, not yet ``amended``) is set ``amended``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import orjson
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from dsf_core.api.errors import BpmnError
from dsf_core.api.tasks import BPMN_MESSAGE, error_output, parameter
from dsf_core.bpe.compaction import has_ready_tasks, run_engine_steps
from dsf_core.bpe.deployment import DeployedProcess
from dsf_core.bpe.events import message_event, next_timer_due, signal_event
from dsf_core.bpe.instance import LATEST_TASK, Instance, InstanceHost, Pending, TaskVariables, activity_kind
from dsf_core.bpe.messages import MessageError, TaskMessage
from dsf_core.bpe.plugin_api import EngineApi
from dsf_core.bpe.scripting import DsfScriptEngine
from dsf_core.bpe.serializer import InstanceSerializer
from dsf_core.bpe.specs import DsfUserTask, UnhandledBpmnError, throw_bpmn_error
from dsf_core.bpe.store import EngineStore, InstanceRow, SpecRow
from dsf_core.bpe.timers import TimerError, parse_retry_cycle
from dsf_core.bpe.user_tasks import (
    BUSINESS_KEY,
    RESPONSE_KEY,
    USER_TASK_ID,
    VARIABLE,
    UserTaskContext,
    UserTaskError,
    item_string,
    open_user_task,
    run_task_listeners,
)
from dsf_core.bpe.writes import MailboxWriter
from dsf_core.client import FhirClient, FhirClientError

__all__ = ["Engine", "EngineError"]

log = logging.getLogger("dsf.bpe.engine")

#: Rounds of steps in a row that may end with tasks ready but no activity to run (timers falling
#: due during an advance) before the instance fails instead of spinning.
_MAX_SETTLING_ROUNDS = 1000

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def quiet_spiffworkflow() -> None:
    """Keep SpiffWorkflow's per-state-change logging off unless a logging config asked for it.

    SpiffWorkflow logs every task state change at INFO, and while its loggers' *own* level is
    unset (below INFO) it also collects every task's data and the id of every task in the
    workflow for each of those records — whether or not a handler ever emits them. That is more
    than half the cost of a step. Loggers given a level explicitly are left alone.
    """
    for name in ("spiff", "spiff.task", "spiff.workflow", "spiff.metrics"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class EngineError(Exception):
    """The engine cannot do what it was asked (unknown process, nothing to correlate)."""


class _Failure(Exception):
    """An activity failed for good: the instance fails with this message."""


class Engine:
    """One organisation's business process engine (see the module docstring)."""

    def __init__(
        self,
        *,
        store: EngineStore,
        api: EngineApi,
        local: FhirClient,
        clock: Clock = _utc_now,
        sleep: Sleep = asyncio.sleep,
        max_concurrent_activities: int = 64,
    ) -> None:
        quiet_spiffworkflow()
        self.store = store
        self.api = api
        self.local = local
        self._writes = MailboxWriter(local)
        self.clock = clock
        self._sleep = sleep
        self.processes: dict[str, DeployedProcess] = {}
        self._instances: dict[str, Instance] = {}
        self._serializer = InstanceSerializer()
        self._slots = asyncio.Semaphore(max_concurrent_activities)
        self._in_flight: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def deploy(self, processes: Iterable[DeployedProcess]) -> None:
        """Register deployed processes; each spec is stored once per process id + version."""
        for process in processes:
            if process.key in self.processes:
                other = self.processes[process.key].plugin.name
                raise EngineError(f"process {process.key} is deployed twice (plugins {other} and {process.plugin.name})")
            existing = await self.store.load_spec(process.process_id, process.version)
            if existing is None or existing.digest != process.digest or existing.status != process.status:
                spec = self._serializer.specs_to_json(process.model.spec, process.model.subprocess_specs)
                await self.store.save_spec(
                    SpecRow(process.process_id, process.version, process.plugin.name, process.plugin.version,
                            process.digest, spec, process.status),
                    now=self.clock(),
                )
            self.processes[process.key] = process
            log.info("deployed %s (%s) from plugin %s %s", process.key, process.status, process.plugin.name,
                     process.plugin.version)

    async def start(self, *, scheduler: bool = True) -> None:
        """Resume every running instance, then start the timer scheduler.

        ``scheduler=False`` leaves firing timers to explicit :meth:`run_due_timers` calls (the
        test harness, whose clock only moves when the test moves it).
        """
        for instance_id in await self.store.running_ids():
            await self._resume(instance_id)
        if scheduler:
            self._scheduler = asyncio.create_task(self._schedule(), name="dsf-bpe-scheduler")

    async def stop(self) -> None:
        self._closing = True
        tasks = [t for t in (self._scheduler, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = None

    def active_processes(self) -> list[str]:
        return sorted(k for k, p in self.processes.items() if p.status == "active")

    # ------------------------------------------------------------------ Tasks in

    async def handle_task(self, task: dict[str, Any]) -> None:
        """The connector's handler: a Task addressed to this organisation (idempotent)."""
        if task.get("resourceType") != "Task" or task.get("status") != "requested" or not task.get("id"):
            return
        await self._exclusively(f"Task/{task['id']}", lambda: self._handle(task))

    async def _exclusively(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` unless ``key`` is being handled already (a push and a catch-up racing);
        an error is logged, never raised into the connector."""
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        try:
            await work()
        except Exception:
            log.exception("%s could not be handled", key)
        finally:
            self._in_flight.discard(key)

    async def _handle(self, task: dict[str, Any]) -> None:
        task_id = str(task["id"])
        seen = await self.store.handled_by(task_id)
        if seen is not False:
            await self._handled_again(task, seen)
            return
        try:
            message = TaskMessage.of(task)
        except MessageError as exc:
            await self._refuse(task, str(exc))
            return
        key = f"{message.process_id}|{message.version}"
        if message.business_key:
            for instance_id in await self.store.running_by_business_key(message.business_key):
                instance = await self._load(instance_id)
                if instance is not None and instance.process.key == key:
                    await self._deliver(instance, task, message)
                    return
        process = self.processes.get(key)
        if process is None:
            await self._refuse(task, f"process {key} is not deployed at this organisation")
        elif message.message_name not in process.model.start_messages:
            if message.business_key:
                await self._refuse(task, f"Unable to correlate Task: no instance of {key} with business-key "
                                         f"{message.business_key} waits for message {message.message_name!r}")
            else:
                await self._refuse(task, f"process {key} has no start message {message.message_name!r}")
        elif process.status != "active":
            await self._refuse(task, f"process {key} is retired: it starts no new instances")
        else:
            await self._start(process, task, message)

    async def _handled_again(self, task: dict[str, Any], instance_id: str | None | bool) -> None:
        # Seen before but still `requested`: the status write after the save was lost.
        task_id = str(task["id"])
        if isinstance(instance_id, str):
            instance = await self._load(instance_id)
            if instance is not None:
                async with instance.lock:
                    if task_id in instance.tasks:
                        instance.unwritten.add(task_id)
                        instance.dirty_tasks.add(task_id)
                        await self._writes.flush_tasks(instance)
                return
            row = await self.store.load_instance(instance_id)
            known = orjson.loads(row.tasks)["tasks"].get(task_id) if row is not None else None
            if known is not None:  # the instance ended: write the Task as it left it
                try:
                    await self._writes.put_task(known, from_requested=True)
                except FhirClientError as exc:
                    log.error("Task/%s (%s): cannot write: %s", task_id, known.get("status"), exc)
                return
        await self._writes.write_failed(task, "the Task could not be handled")

    async def _refuse(self, task: dict[str, Any], reason: str) -> None:
        log.warning("Task/%s failed: %s", task.get("id"), reason)
        await self.store.mark_handled(str(task["id"]), None, self.clock())
        await self._writes.write_failed(task, reason)

    # ------------------------------------------------------------------ QuestionnaireResponses in

    async def handle_questionnaire_response(self, response: dict[str, Any]) -> None:
        """The QR connector's handler: a ``completed`` QuestionnaireResponse answers a user task (idempotent)."""
        if response.get("resourceType") != "QuestionnaireResponse" or response.get("status") != "completed":
            return
        if not response.get("id"):
            return
        await self._exclusively(f"QuestionnaireResponse/{response['id']}", lambda: self._answer(response))

    async def _answer(self, response: dict[str, Any]) -> None:
        name = f"QuestionnaireResponse/{response['id']}"
        business_key, user_task_id = item_string(response, BUSINESS_KEY), item_string(response, USER_TASK_ID)
        if business_key is None or user_task_id is None:
            log.warning("%s has no %s or %s answer: ignored", name, BUSINESS_KEY, USER_TASK_ID)
            return
        for instance_id in await self.store.running_by_business_key(business_key):
            instance = await self._load(instance_id)
            if instance is None:
                continue
            async with instance.lock:
                task = _user_task(instance, user_task_id)
                if task is None or instance.status != "running":
                    continue
                if task.state == TaskState.COMPLETED:
                    answered = task.data.get(VARIABLE)
                    if isinstance(answered, dict) and answered.get("id") == response["id"]:
                        # Answered before a crash, not yet amended: finish that write.
                        instance.dirty_responses[str(response["id"])] = answered
                        await self._writes.flush_responses(instance)
                        return
                    log.warning("%s: user task %s of instance %s is answered already: ignored",
                                name, user_task_id, instance.id)
                    return
                if task.state != TaskState.READY:
                    log.warning("%s: user task %s of instance %s is %s, not waiting: ignored",
                                name, user_task_id, instance.id, TaskState.get_name(task.state))
                    return
                amended = {**response, "status": "amended"}
                try:
                    await run_task_listeners(task, "complete", amended, self._user_task_context(instance, task))
                    task.data[VARIABLE] = amended
                    task.run()
                except Exception as exc:  # a listener, or an output parameter that does not evaluate
                    await self._fail(instance, _reason(exc))
                    return
                instance.dirty_responses[str(response["id"])] = amended
                log.info("%s completes user task %s of instance %s", name, task.task_spec.bpmn_id, instance.id)
                await self._advance(instance)
                return
        log.warning("%s: no running instance with business-key %s waits in user task %s: ignored",
                    name, business_key, user_task_id)

    def _user_task_context(self, instance: Instance, task: Any) -> UserTaskContext:
        return UserTaskContext(
            local=self.local, api=self.api, classes=instance.process.classes, business_key=instance.business_key,
            variables=TaskVariables(instance, task, self.api, writer=self._writes.write_task), now=self.clock(),
        )

    # ------------------------------------------------------------------ instances

    def _new_instance(self, process: DeployedProcess, business_key: str, start_task: dict[str, Any] | None) -> Instance:
        instance_id = str(uuid.uuid4())
        holder: list[Instance] = []
        workflow = BpmnWorkflow(
            process.model.spec, process.model.subprocess_specs,
            script_engine=self._script_engine(lambda: holder[0]),
        )
        tasks = {str(start_task["id"]): start_task} if start_task is not None else {}
        instance = Instance(
            id=instance_id, process=process, workflow=workflow, business_key=business_key, tasks=tasks,
            start_task_id=str(start_task["id"]) if start_task is not None else None,
        )
        holder.append(instance)
        workflow.do_engine_steps()  # the start event waits for its message
        self._instances[instance_id] = instance
        return instance

    def _script_engine(self, instance: Callable[[], Instance]) -> DsfScriptEngine:
        return DsfScriptEngine(InstanceHost(instance, self.api), clock=self.clock)

    async def _start(self, process: DeployedProcess, task: dict[str, Any], message: TaskMessage) -> None:
        business_key = message.business_key or str(uuid.uuid4())
        if not message.business_key:
            task.setdefault("input", []).append(parameter(BPMN_MESSAGE, "business-key", "String", business_key))
        instance = self._new_instance(process, business_key, task)
        async with instance.lock:
            self._accept(instance, task)
            instance.workflow.send_event(message_event(message.message_name, {LATEST_TASK: message.task_id}))
            await self._advance(instance)

    async def start_instance(
        self, process_key: str, message_name: str, variables: Mapping[str, Any] | None = None,
        *, business_key: str | None = None,
    ) -> str:
        """Start an instance without a Task (tests, benchmarks, autostart): returns its id."""
        process = self.processes.get(process_key)
        if process is None:
            raise EngineError(f"process {process_key} is not deployed")
        if message_name not in process.model.start_messages:
            raise EngineError(f"process {process_key} has no start message {message_name!r}")
        instance = self._new_instance(process, business_key or str(uuid.uuid4()), None)
        async with instance.lock:
            instance.workflow.send_event(message_event(message_name, dict(variables or {})))
            await self._advance(instance)
        return instance.id

    def _accept(self, instance: Instance, task: dict[str, Any]) -> None:
        task_id = str(task["id"])
        task["status"] = "in-progress"
        instance.tasks[task_id] = task
        instance.handled.append(task_id)
        instance.dirty_tasks.add(task_id)
        instance.unwritten.add(task_id)

    async def _deliver(self, instance: Instance, task: dict[str, Any], message: TaskMessage) -> None:
        async with instance.lock:
            if instance.status != "running":
                await self._refuse(task, f"Unable to correlate Task: the instance {instance.business_key} has ended")
                return
            event = message_event(message.message_name, {LATEST_TASK: message.task_id})
            catchers = [
                t for t in instance.workflow.get_tasks(state=TaskState.WAITING)
                if (definition := getattr(t.task_spec, "event_definition", None)) is not None
                and definition.catches(t, event)
                and (message.correlation_key is None or t.data.get("correlationKey") == message.correlation_key)
            ]
            if len(catchers) != 1:
                why = "no element waits" if not catchers else f"{len(catchers)} elements wait"
                await self._refuse(
                    task,
                    f"Unable to correlate Task: {why} for message {message.message_name!r} with business-key "
                    f"{message.business_key}" + (f" and correlation-key {message.correlation_key}" if message.correlation_key else ""),
                )
                return
            self._accept(instance, task)
            event.target = catchers[0].workflow
            instance.workflow.send_event(event)
            await self._advance(instance)

    # ------------------------------------------------------------------ the loop

    async def _advance(self, instance: Instance) -> None:
        """Step, save, write Tasks, run activities — until the instance waits or ends (caller holds the lock)."""
        settling = 0  # rounds in a row that ran no activity but left tasks ready
        while True:
            try:
                run_engine_steps(instance.workflow)
            except Exception as exc:
                await self._fail(instance, _reason(exc))
                return
            if instance.workflow.completed:
                instance.status = "completed"
                self._close_tasks(instance, "completed", None)
            signals = self._thrown_signals(instance)
            pending = instance.take_pending()
            user_tasks = _new_user_tasks(instance) if instance.status == "running" else []
            await self._save(instance)
            await self._writes.flush_tasks(instance)
            await self._writes.flush_responses(instance)
            for name in signals:
                self._spawn(self._broadcast_signal(name, instance.id))
            if instance.status != "running":
                self._instances.pop(instance.id, None)
                log.info("instance %s of %s %s", instance.id, instance.process.key, instance.status)
                return
            if not pending and not user_tasks:
                if has_ready_tasks(instance.workflow):
                    # Timers that fell due while this advance ran (a slow activity) were fired
                    # by the refresh at the end of the steps; nothing else would run what they
                    # made ready, since the due-time index only knows timers still waiting.
                    settling += 1
                    if settling > _MAX_SETTLING_ROUNDS:  # a timer cycle faster than a round
                        await self._fail(instance, f"timers keep tasks ready after {_MAX_SETTLING_ROUNDS} rounds of steps")
                        return
                    continue
                return
            settling = 0
            try:
                for user_task in user_tasks:
                    await open_user_task(user_task, self._user_task_context(instance, user_task))
            except UserTaskError as exc:
                await self._fail(instance, _reason(exc))
                return
            outcomes = await asyncio.gather(*(self._run(instance, p) for p in pending))
            try:
                for item, outcome in zip(pending, outcomes, strict=True):
                    if item.task.state != TaskState.STARTED:
                        continue  # cancelled meanwhile (e.g. by a boundary event)
                    if isinstance(outcome, BpmnError):
                        throw_bpmn_error(item.task, outcome.code, outcome.message)
                    elif isinstance(outcome, _Failure):
                        raise outcome
                    else:
                        item.task.complete()
            except (UnhandledBpmnError, _Failure) as exc:
                await self._fail(instance, _reason(exc))
                return
            except Exception as exc:
                await self._fail(instance, _reason(exc))
                return

    async def _run(self, instance: Instance, item: Pending) -> BpmnError | _Failure | None:
        process = instance.process
        cls = process.classes[item.class_name]
        variables = TaskVariables(instance, item.task, self.api, writer=self._writes.write_task)
        delays = _retry_delays(item.task)
        attempt = 0
        while True:
            try:
                async with self._slots:
                    activity = cls(item.fields)
                    result = activity.execute(self.api, variables)
                    if inspect.isawaitable(result):
                        await result
                return None
            except BpmnError as error:
                return error
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                element = item.spec.bpmn_id
                if attempt < len(delays):
                    log.warning("%s %s in %s failed (%s); retry %d/%d in %ss", item.kind, element, process.key,
                                _reason(exc), attempt + 1, len(delays), delays[attempt])
                    await self._sleep(delays[attempt])
                    attempt += 1
                    continue
                log.error("%s %s in %s failed: %s", item.kind, element, process.key, _reason(exc), exc_info=exc)
                return _Failure(f"{element} ({item.class_name}) failed: {_reason(exc)}")

    async def _fail(self, instance: Instance, reason: str) -> None:
        log.error("instance %s of %s failed: %s", instance.id, instance.process.key, reason)
        instance.status = "failed"
        instance.take_pending()
        self._close_tasks(instance, "failed", reason)
        await self._save(instance)
        await self._writes.flush_tasks(instance)
        self._instances.pop(instance.id, None)

    def _close_tasks(self, instance: Instance, status: str, reason: str | None) -> None:
        for task_id, task in instance.tasks.items():
            if task.get("status") in ("requested", "in-progress"):
                task["status"] = status
                if reason is not None:
                    task.setdefault("output", []).append(error_output(reason))
                instance.dirty_tasks.add(task_id)

    def _thrown_signals(self, instance: Instance) -> list[str]:
        return [
            e.event_definition.name for e in instance.workflow.get_events()
            if isinstance(e.event_definition, SignalEventDefinition)
        ]

    async def _broadcast_signal(self, name: str, sender: str) -> None:
        """A signal thrown by one instance reaches every other instance of this node that waits for it,
        and starts an instance of every active process with a signal start event for it (as Camunda)."""
        for process in [p for p in self.processes.values() if p.status == "active" and name in p.model.start_signals]:
            started = self._new_instance(process, str(uuid.uuid4()), None)
            async with started.lock:
                log.info("signal %s starts instance %s of %s", name, started.id, process.key)
                started.workflow.send_event(signal_event(name))
                await self._advance(started)
        for instance_id in await self.store.waiting_for("signal", name):
            if instance_id == sender:
                continue
            instance = await self._load(instance_id)
            if instance is None:
                continue
            async with instance.lock:
                if instance.status != "running":
                    continue
                try:
                    instance.workflow.send_event(signal_event(name))
                except Exception:
                    continue  # no longer waiting
                await self._advance(instance)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ persistence

    async def _save(self, instance: Instance) -> None:
        state = self._serializer.state_to_json(instance.workflow)
        tasks = orjson.dumps({"start": instance.start_task_id, "tasks": instance.tasks}).decode()
        due = next_timer_due(instance.workflow) if instance.status == "running" else None
        await self.store.save_instance(
            InstanceRow(instance.id, instance.process.process_id, instance.process.version, instance.business_key,
                        instance.status, state, tasks, instance.revision + 1),
            next_due=_ceil_ms(due) if due is not None else None,
            waits_for=instance.waits() if instance.status == "running" else (),
            handled=instance.handled,
            now=self.clock(),
            new=instance.new,
        )
        instance.revision += 1
        instance.new = False
        instance.handled = []
        if due is not None:
            self._wake.set()

    async def _load(self, instance_id: str) -> Instance | None:
        cached = self._instances.get(instance_id)
        if cached is not None:
            return cached
        row = await self.store.load_instance(instance_id)
        if row is None or row.status != "running":
            return None
        process = self.processes.get(f"{row.process_id}|{row.version}")
        if process is None:
            log.error("instance %s: process %s|%s is no longer deployed; it stays suspended",
                      instance_id, row.process_id, row.version)
            return None
        holder: list[Instance] = []
        workflow = self._serializer.state_from_json(row.state, process.model.spec, process.model.subprocess_specs)
        workflow.script_engine = self._script_engine(lambda: holder[0])
        document = orjson.loads(row.tasks)
        instance = Instance(
            id=row.id, process=process, workflow=workflow, business_key=row.business_key,
            tasks=document["tasks"], start_task_id=document["start"], revision=row.revision, new=False,
        )
        holder.append(instance)
        self._instances[instance_id] = instance
        return instance

    async def _resume(self, instance_id: str) -> None:
        instance = await self._load(instance_id)
        if instance is None:
            return
        async with instance.lock:
            for task in instance.workflow.get_tasks(state=TaskState.STARTED):
                spec = task.task_spec
                binding = getattr(spec, "binding", None)
                if binding is not None and binding.class_name and spec.bpmn_id is not None and _is_activity(spec):
                    instance.pending.append(
                        Pending(task, spec, activity_kind(spec), binding.class_name, binding.field_values(task.data))
                    )
            instance.dirty_tasks.update(t for t, task in instance.tasks.items() if task.get("status") == "in-progress")
            instance.workflow.refresh_timers()
            log.info("resuming instance %s of %s (%d activities to re-run)", instance.id, instance.process.key,
                     len(instance.pending))
            await self._advance(instance)

    # ------------------------------------------------------------------ timers

    async def run_due_timers(self) -> int:
        """Fire every timer due now; returns the number of instances advanced (the scheduler calls this)."""
        count = 0
        for instance_id in await self.store.due(self.clock()):
            instance = await self._load(instance_id)
            if instance is None:
                continue
            async with instance.lock:
                if instance.status != "running":
                    continue
                instance.workflow.refresh_timers()
                await self._advance(instance)
            count += 1
        return count

    def wake(self) -> None:
        """Re-check timers now (after a clock change in tests)."""
        self._wake.set()

    async def _schedule(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self.run_due_timers()
                due = await self.store.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer scheduler")
                due = None
            timeout = 30.0 if due is None else min(30.0, max(0.0, (due - self.clock()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass

    async def idle(self) -> None:
        """Wait until background work (signal broadcasts) is done — for tests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _new_user_tasks(instance: Instance) -> list[Any]:
    """User tasks reached whose QuestionnaireResponse is not posted yet."""
    return [
        t for t in instance.workflow.get_tasks(state=TaskState.READY, manual=True)
        if isinstance(t.task_spec, DsfUserTask) and RESPONSE_KEY not in t.internal_data
    ]


def _user_task(instance: Instance, user_task_id: str) -> Any:
    """The user task with this SpiffWorkflow task id, or ``None``."""
    try:
        task_id = uuid.UUID(user_task_id)
    except ValueError:
        return None
    workflow = instance.workflow
    for tasks in (workflow.tasks, *(sub.tasks for sub in workflow.subprocesses.values())):
        task = tasks.get(task_id)
        if task is not None:
            return task if isinstance(task.task_spec, DsfUserTask) else None
    return None


def _is_activity(spec: Any) -> bool:
    from dsf_core.bpe.specs import DsfEndEvent, DsfIntermediateThrowEvent, DsfSendTask, DsfServiceTask

    return isinstance(spec, (DsfServiceTask, DsfSendTask, DsfIntermediateThrowEvent, DsfEndEvent))


def _retry_delays(task: Any) -> list[float]:
    """The pauses of the ``camunda:failedJobRetryTimeCycle`` (``R3/PT5S`` → three retries 5 s apart) of
    the activity itself or, failing that, of the elements enclosing it — a multi-instance element
    around its instances, a sub-process around its content — never of an activity before it."""
    current = task
    while current is not None:
        binding = getattr(current.task_spec, "binding", None)
        if binding is not None and binding.retry_cycle:
            try:
                return parse_retry_cycle(binding.retry_cycle)
            except TimerError:
                return []
        parent = current.parent
        if parent is not None and getattr(parent.task_spec, "task_spec", None) == current.task_spec.name:
            current = parent  # an instance of a multi-instance activity: the activity's own setting
        elif current.workflow is not current.workflow.top_workflow:
            current = current.workflow.top_workflow.get_task_from_id(current.workflow.parent_task_id)
        else:
            current = None
    return []


def _ceil_ms(at: datetime) -> datetime:
    ms = math.ceil(at.timestamp() * 1000)
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 2000 else text[:2000] + "…"


