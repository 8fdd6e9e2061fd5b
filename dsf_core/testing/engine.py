"""One organisation's engine in a test: a real Engine, a real database, a real local mailbox, a clock you move.

In the spirit of temporalio's ``WorkflowEnvironment``: plugin authors (and our own tests) run
their processes in a few lines, with nothing faked but the clock and the pause between
retries::

    async with EngineHarness(tmp_path, plugin=PLUGIN) as h:
        task = await h.send(await h.task("dsfdev_helloWorld", "helloWorld"))
        assert task["status"] == "completed"

        instance_id = await h.start("dsfdev_timerDuration", variables={"x": 1})
        assert (await h.instance(instance_id)).next_due == h.clock.now + timedelta(seconds=30)
        h.clock.advance(seconds=30)
        await h.run_due_timers()

        await h.restart()  # a new Engine on the same database: nothing survives but what was stored

What is real: the :class:`~dsf_core.bpe.engine.Engine` with its
:class:`~dsf_core.bpe.store.EngineStore` (SQLite in ``directory``, or PostgreSQL when a
``database_url`` is given), and the local mailbox — a :class:`MailboxHarness` with mTLS on
loopback — which the engine reaches with the organisation's client certificate, exactly as a
node does. Tasks the harness sends are POSTed to that mailbox (so its Task rules and the
ActivityDefinitions authorise them), handed to ``engine.handle_task`` and read back with the
status the engine wrote. QuestionnaireResponses of user tasks are created there by the
engine and answered there by :meth:`EngineHarness.answer`.

What is in the test's hands: the clock (:class:`ManualClock`; nothing fires until
:meth:`EngineHarness.run_due_timers`, the background scheduler does not run), the sleep
between activity retries (:class:`RecordingSleep`: records, never waits), and the moment
messages arrive (:meth:`EngineHarness.send` hands one Task over;
:meth:`EngineHarness.deliver_requested` runs the connector's catch-up over every requested
Task, as a node would on start). Every call returns once the engine is idle, so a test
asserts right after it without waiting.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]
from sqlalchemy import select

from dsf_core.api.plugin import ProcessPlugin
from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter
from dsf_core.bpe.connector import TaskConnector
from dsf_core.bpe.deployment import DeployedProcess, load_plugin, placeholders_for, plugin_resources, resource_upload_bundle
from dsf_core.bpe.engine import Engine
from dsf_core.bpe.messages import MessageError, process_key
from dsf_core.bpe.plugin_api import EngineApi
from dsf_core.bpe.serializer import InstanceSerializer
from dsf_core.bpe.store import EngineStore, instances
from dsf_core.client import ClientFactory, FhirClient
from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness
from dsf_core.settings import PluginSettings

__all__ = [
    "START",
    "EngineHarness",
    "HarnessError",
    "InstanceView",
    "ManualClock",
    "RecordingSleep",
    "item_answer",
    "local_activity_definition",
]

#: Where a harness clock starts (any fixed, aware instant would do).
START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)

_RELEASE = date(2026, 1, 1)


class HarnessError(AssertionError):
    """The harness cannot do what the test asked (unknown process, message not authorised …)."""


class ManualClock:
    """The engine's clock: stands still until the test moves it."""

    def __init__(self, start: datetime = START) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs an aware datetime")
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """``advance(seconds=30)``, ``advance(minutes=1, milliseconds=-1)`` …; returns the new now."""
        self.now += timedelta(**delta)
        return self.now

    def set(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("the clock needs an aware datetime")
        self.now = at
        return self.now


@dataclass
class RecordingSleep:
    """The engine's pause between activity retries: records the seconds, returns at once."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass(frozen=True)
class InstanceView:
    """An instance as the engine stored it (read from the database, not from the engine's memory)."""

    id: str
    process_key: str
    business_key: str
    status: str  # running | completed | failed
    next_due: datetime | None
    revision: int
    state_size: int  # characters of the stored state (the spec is stored once, apart)
    tasks: Mapping[str, dict[str, Any]]  # the instance's FHIR Tasks by id
    start_task_id: str | None
    workflow: Any  # the deserialized SpiffWorkflow workflow (no activity host: look, don't run)

    @property
    def variables(self) -> dict[str, Any]:
        """The process variables: the final data of an ended instance, else those of every open task."""
        if self.status != "running":
            return dict(self.workflow.data)
        merged: dict[str, Any] = {}
        for task in self.workflow.get_tasks(state=TaskState.WAITING | TaskState.READY | TaskState.STARTED):
            merged.update(task.data)
        return merged

    def waiting(self) -> list[str]:
        """Element ids of the tasks waiting for an event (message, timer, signal), sorted."""
        return sorted(
            t.task_spec.bpmn_id for t in self.workflow.get_tasks(state=TaskState.WAITING)
            if getattr(t.task_spec, "bpmn_id", None)
        )

    def waiting_tasks(self, element: str) -> list[Any]:
        return [t for t in self.workflow.get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id == element]

    def user_tasks(self) -> list[Any]:
        """The user tasks waiting for their QuestionnaireResponse."""
        tasks: list[Any] = self.workflow.get_tasks(state=TaskState.READY, manual=True)
        return tasks

    def cancelled(self) -> set[str]:
        return {
            t.task_spec.bpmn_id for t in self.workflow.get_tasks(state=TaskState.CANCELLED)
            if getattr(t.task_spec, "bpmn_id", None)
        }


def local_activity_definition(
    process_url: str, version: str, messages: Iterable[str], task_profile: str, *, status: str = "active"
) -> dict[str, Any]:
    """An ActivityDefinition letting the local organisation send ``messages`` to itself (``LOCAL_ALL``).

    For models a test draws inline, which come without the FHIR resources of a plugin.
    """

    def coding(code: str) -> dict[str, Any]:
        return {"system": codes.PROCESS_AUTHORIZATION, "code": code}

    blocks = [
        {
            "url": codes.EXT_PROCESS_AUTHORIZATION,
            "extension": [
                {"url": "message-name", "valueString": name},
                {"url": "task-profile", "valueCanonical": task_profile},
                {"url": "requester", "valueCoding": coding("LOCAL_ALL")},
                {"url": "recipient", "valueCoding": coding("LOCAL_ALL")},
            ],
        }
        for name in messages
    ]
    return {
        "resourceType": "ActivityDefinition",
        "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]},
        "extension": blocks,
        "url": process_url,
        "version": version,
        "status": status,
        "kind": "Task",
    }


class EngineHarness:
    """A real engine on a real database with a real local mailbox (see the module docstring).

    Give either ``plugin``/``plugins`` (deployed as a node deploys them, FHIR resources
    included) or ``models`` (BPMN files) with a ``class_map``; ``resources`` are extra FHIR
    resources put on the mailbox before deployment (e.g. :func:`local_activity_definition`
    for inline models). ``pki_dir`` lets several harnesses share one development PKI (faster).
    ``parent`` and ``roles`` make the local organisation a member of that parent organisation with
    those roles in the mailbox's allow list (what ActivityDefinitions with ``LOCAL_ROLE`` check).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        plugin: ProcessPlugin | None = None,
        plugins: Sequence[ProcessPlugin] = (),
        models: Sequence[Path | str] = (),
        class_map: Mapping[str, type[Any]] | None = None,
        version: str = "1.0.0.0",
        resources: Sequence[Mapping[str, Any]] = (),
        database_url: str | None = None,
        mailbox_database_url: str | None = None,
        organization: str = "local.test",
        clock: ManualClock | None = None,
        environ: Mapping[str, str] | None = None,
        pki_dir: Path | None = None,
        plugin_settings: Mapping[str, Mapping[str, Any]] | None = None,
        parent: str = "parent.test",
        roles: Sequence[str] = ("DIC",),
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dsf-engine-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self.plugins = [*([plugin] if plugin is not None else []), *plugins]
        if models:
            self.plugins.append(ProcessPlugin(
                name="harness-models", version=version, release_date=_RELEASE, package="dsf_core",
                models=tuple(str(Path(m).resolve()) for m in models), class_map=dict(class_map or {}),
            ))
        elif class_map:
            raise ValueError("class_map goes with models (a plugin brings its own)")
        if not self.plugins:
            raise ValueError("give a plugin, plugins or models to deploy")
        self.resources = [dict(r) for r in resources]
        self.database_url = database_url or f"sqlite+aiosqlite:///{directory / 'engine.sqlite'}"
        self.organization = organization
        self.clock = clock or ManualClock()
        self.sleep = RecordingSleep()
        self.environ = dict(environ or {})
        #: ``[plugins.<name>]`` tables, as a node config would have them.
        self.plugin_settings = {name: PluginSettings(name, dict(table)) for name, table in (plugin_settings or {}).items()}
        self.mailbox = MailboxHarness(
            directory / "mailbox", local=organization, database_url=mailbox_database_url, pki_dir=pki_dir,
            parent=parent, local_roles=roles,
        )
        self._engine: Engine | None = None
        self._store: EngineStore | None = None
        self._clients: ClientFactory | None = None  # the engine's (a new one per engine)
        self._user: ClientFactory | None = None  # the test's, as the local organisation
        self._serializer = InstanceSerializer()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> EngineHarness:
        await self.open()
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    async def open(self) -> None:
        """Start the mailbox, put the resources and plugin resources on it, start the engine."""
        await self.mailbox.start()
        self._user = self._client_factory()
        try:
            if self.resources:
                await self.upload(self.resources)
            await self._start_engine(upload=True)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._stop_engine()
        if self._user is not None:
            await self._user.close()
            self._user = None
        await self.mailbox.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def restart(self) -> None:
        """Stop the engine and forget every object of it; start a new Engine on the same database.

        Whatever a test sees afterwards was persisted: instances resume from their stored
        state (activities that were running run again, due timers fire, open Tasks are written).
        """
        await self._stop_engine()
        await self._start_engine(upload=False)

    def _client_factory(self) -> ClientFactory:
        files = self.mailbox.orgs[self.organization].client
        return ClientFactory.from_files(
            cafile=self.mailbox.pki.ca_cert_path, cert_file=files.cert_path, key_file=files.key_path,
            attempts=1, sleep=self.sleep,
        )

    async def _start_engine(self, *, upload: bool) -> None:
        self._clients = self._client_factory()
        self._store = await EngineStore.open(self.database_url)
        holder: list[Engine] = []
        api = EngineApi(
            organization_identifier=self.organization,
            endpoint_identifier=self.organization,
            endpoint_url=self.mailbox.base_url,
            local_fhir_url=self.mailbox.base_url,
            clients=self._clients,
            clock=self.clock,
            environ=self.environ,
            active_processes=lambda: holder[0].active_processes() if holder else [],
            plugin_settings=lambda name: self.plugin_settings.get(name) or PluginSettings(name),
        )
        for plugin in self.plugins:
            if plugin.check_settings is not None:
                plugin.check_settings(self.plugin_settings.get(plugin.settings_key) or PluginSettings(plugin.settings_key))
        engine = Engine(store=self._store, api=api, local=self._clients.client(self.mailbox.base_url),
                        clock=self.clock, sleep=self.sleep)
        holder.append(engine)
        deployed: list[DeployedProcess] = []
        for plugin in self.plugins:
            placeholders = placeholders_for(plugin, self.organization, self.environ)
            processes = load_plugin(plugin, placeholders)
            if upload:
                resources = []
                for process in processes:
                    resources += plugin_resources(plugin, process.process_id, placeholders, status=process.status)
                await self.upload(_unique(resources))
            deployed += processes
        await engine.deploy(deployed)
        await engine.start(scheduler=False)
        self._engine = engine
        await engine.idle()

    async def _stop_engine(self) -> None:
        if self._engine is not None:
            await self._engine.idle()
            await self._engine.stop()
        if self._store is not None:
            await self._store.close()
        if self._clients is not None:
            await self._clients.close()
        self._engine = self._store = self._clients = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise HarnessError("the engine is not running")
        return self._engine

    @property
    def store(self) -> EngineStore:
        if self._store is None:
            raise HarnessError("the engine is not running")
        return self._store

    @property
    def local(self) -> FhirClient:
        """The local mailbox, as the local organisation (as a local user or admin reaches it)."""
        if self._user is None:
            raise HarnessError("the harness is not open")
        return self._user.client(self.mailbox.base_url)

    # ------------------------------------------------------------------ starting and messages

    def process(self, process: str) -> DeployedProcess:
        """A deployed process by ``<id>|<version>``, or by id when one version is deployed."""
        found = self.engine.processes.get(process)
        if found is not None:
            return found
        matches = [p for p in self.engine.processes.values() if p.process_id == process]
        if len(matches) != 1:
            raise HarnessError(f"{process}: {len(matches)} deployed processes match; deployed: {sorted(self.engine.processes)}")
        return matches[0]

    async def start(
        self, process: str, message: str = "start", variables: Mapping[str, Any] | None = None,
        *, business_key: str | None = None,
    ) -> str:
        """Start an instance by its start message with ``variables`` (no Task); returns its id."""
        instance_id = await self.engine.start_instance(
            self.process(process).key, message, variables, business_key=business_key
        )
        await self.engine.idle()
        return instance_id

    async def task(
        self,
        process: str,
        message: str,
        *,
        business_key: str | None = None,
        correlation_key: str | None = None,
        inputs: Sequence[Mapping[str, Any]] = (),
        profile: str | None = None,
    ) -> dict[str, Any]:
        """A ``requested`` Task from the local organisation to itself, as a peer or a user would send it.

        ``process`` is a deployed process (``dsfdev_ping``, ``dsfdev_ping|1.0``) or an
        ``instantiatesCanonical``. Its ActivityDefinition on the mailbox gives the canonical URL
        and, unless ``profile`` is given, the Task profile authorised for ``message``.
        """
        canonical, definition = await self._canonical(process)
        if profile is None:
            profile = _task_profile(definition, message) if definition is not None else None
            if profile is None:
                raise HarnessError(f"no ActivityDefinition on the mailbox authorises message {message!r} of {canonical}")
        task_inputs = [parameter(BPMN_MESSAGE, "message-name", "String", message)]
        if business_key is not None:
            task_inputs.append(parameter(BPMN_MESSAGE, "business-key", "String", business_key))
        if correlation_key is not None:
            task_inputs.append(parameter(BPMN_MESSAGE, "correlation-key", "String", correlation_key))
        return {
            "resourceType": "Task",
            "meta": {"profile": [profile]},
            "instantiatesCanonical": canonical,
            "status": "requested",
            "intent": "order",
            "authoredOn": self.clock().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "requester": organization_reference(self.organization),
            "restriction": {"recipient": [organization_reference(self.organization)]},
            "input": [*task_inputs, *(dict(i) for i in inputs)],
        }

    async def send(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``task`` to the local mailbox, hand it to the engine, return it as stored afterwards."""
        created = await self.local.create(task, minimal=False)
        assert created.resource is not None
        await self.engine.handle_task(created.resource)
        await self.engine.idle()
        return await self.local.read("Task", created.id)

    async def deliver_requested(self) -> int:
        """Hand every ``requested`` Task on the mailbox to the engine (the Task connector's catch-up)."""
        count = await self._connector("Task", codes.TASK_SUBSCRIPTION_CRITERIA, self.engine.handle_task).catch_up()
        await self.engine.idle()
        return count

    async def deliver_completed_responses(self) -> int:
        """Hand every ``completed`` QuestionnaireResponse to the engine (the QR connector's catch-up)."""
        connector = self._connector(
            "QuestionnaireResponse", codes.QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA,
            self.engine.handle_questionnaire_response,
        )
        count = await connector.catch_up()
        await self.engine.idle()
        return count

    def _connector(self, kind: str, criteria: str, handler: Any) -> TaskConnector:
        assert self._clients is not None
        local = self._clients.client(self.mailbox.base_url)
        return TaskConnector(local, self._clients.session, handler, self.store, kind=kind, criteria=criteria)

    async def run_due_timers(self) -> int:
        """Fire every timer due at ``clock.now``; returns the number of instances advanced."""
        count = await self.engine.run_due_timers()
        await self.engine.idle()
        return count

    # ------------------------------------------------------------------ user tasks

    async def questionnaire_responses(self, status: str | None = None, business_key: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        found = [r async for r in self.local.search_all("QuestionnaireResponse", params)]
        if business_key is not None:
            found = [r for r in found if item_answer(r, "business-key") == business_key]
        return found

    async def answer(self, response: Mapping[str, Any], answers: Mapping[str, Any], *, deliver: bool = True) -> dict[str, Any]:
        """Answer a QuestionnaireResponse as a local user does in the mailbox UI: fill the items,
        PUT it ``completed``; then (``deliver``) hand it to the engine as the QR connector would.

        ``answers`` maps linkId → value (``str`` → valueString, ``bool`` → valueBoolean,
        ``int`` → valueInteger, ``float`` → valueDecimal, ``date`` → valueDate) or a FHIR answer dict.
        """
        completed = orjson.loads(orjson.dumps(response))
        unknown = set(answers) - {item.get("linkId") for item in completed.get("item", [])}
        if unknown:
            raise HarnessError(f"QuestionnaireResponse/{response.get('id')} has no items {sorted(unknown)}")
        for item in completed.get("item", []):
            if item.get("linkId") in answers:
                item["answer"] = [_answer(answers[item["linkId"]])]
        completed["status"] = "completed"
        completed["authored"] = self.clock().isoformat(timespec="seconds").replace("+00:00", "Z")
        stored = await self.local.update(completed)
        if deliver:
            await self.engine.handle_questionnaire_response(stored)
            await self.engine.idle()
            stored = await self.local.read("QuestionnaireResponse", str(stored["id"]))
        return stored

    # ------------------------------------------------------------------ looking at what is stored

    async def instance(self, instance_id: str) -> InstanceView:
        """The instance as stored (state, status, next timer, Tasks)."""
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(instances).where(instances.c.id == instance_id))).first()
        if row is None:
            raise HarnessError(f"no instance {instance_id} in the engine database")
        m = row._mapping
        process = self.engine.processes.get(f"{m['process_id']}|{m['version']}")
        if process is None:
            raise HarnessError(f"instance {instance_id}: process {m['process_id']}|{m['version']} is not deployed")
        workflow = self._serializer.state_from_json(m["state"], process.model.spec, process.model.subprocess_specs)
        document = orjson.loads(m["tasks"])
        due = m["next_due"]
        return InstanceView(
            id=instance_id,
            process_key=process.key,
            business_key=m["business_key"],
            status=m["status"],
            next_due=None if due is None else datetime.fromtimestamp(due / 1000, timezone.utc),
            revision=m["revision"],
            state_size=len(m["state"]),
            tasks=document["tasks"],
            start_task_id=document["start"],
            workflow=workflow,
        )

    async def instance_ids(self, process: str | None = None, *, status: str | None = None) -> list[str]:
        """Ids of the stored instances (of one process, with one status), oldest first."""
        stmt = select(instances.c.id).order_by(instances.c.created_at, instances.c.id)
        if process is not None:
            deployed = self.process(process)
            stmt = stmt.where(instances.c.process_id == deployed.process_id, instances.c.version == deployed.version)
        if status is not None:
            stmt = stmt.where(instances.c.status == status)
        async with self.store.engine.connect() as conn:
            return [r.id for r in await conn.execute(stmt)]

    async def instance_of_task(self, task: Mapping[str, Any]) -> InstanceView:
        """The instance a Task started or was delivered to."""
        owner = await self.store.handled_by(str(task["id"]))
        if not isinstance(owner, str):
            raise HarnessError(f"Task/{task.get('id')} went to no instance (status {task.get('status')!r})")
        return await self.instance(owner)

    async def search(self, type_: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Search the local mailbox as the local organisation (every page)."""
        return [r async for r in self.local.search_all(type_, dict(params or {}))]

    async def upload(self, resources: Sequence[Mapping[str, Any]]) -> None:
        """Put FHIR resources on the local mailbox (conditional updates by url + version)."""
        if not resources:
            return
        reply = await self.local.transaction(resource_upload_bundle(resources))
        failed = [
            f"{r['resourceType']} {r.get('url')}: {e.get('response', {}).get('status')} {e.get('response', {}).get('outcome')}"
            for r, e in zip(resources, reply.get("entry", []), strict=False)
            if not str(e.get("response", {}).get("status", "")).startswith("2")
        ]
        if failed:
            raise HarnessError("the mailbox refused: " + " | ".join(failed))

    async def _canonical(self, process: str) -> tuple[str, dict[str, Any] | None]:
        if process.startswith(("http://", "https://")):
            url, _, version = process.partition("|")
            found = await self.search("ActivityDefinition", {"url": url, "version": version})
            return process, found[0] if found else None
        deployed = self.process(process)
        for definition in await self.search("ActivityDefinition", {"version": deployed.version}):
            canonical = f"{definition.get('url')}|{definition.get('version')}"
            try:
                if process_key(canonical) == (deployed.process_id, deployed.version):
                    return canonical, definition
            except MessageError:
                continue
        raise HarnessError(f"no ActivityDefinition on the mailbox for {deployed.key}: upload one (local_activity_definition)")


def item_answer(response: Mapping[str, Any], link_id: str) -> Any:
    """The first answer value of item ``link_id`` of a QuestionnaireResponse, or ``None``."""
    for item in response.get("item", []):
        if item.get("linkId") == link_id:
            for answer in item.get("answer", []):
                return next((v for k, v in answer.items() if k.startswith("value")), None)
    return None


def _answer(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    if isinstance(value, date):
        return {"valueDate": value.isoformat()}
    return {"valueString": str(value)}


def _task_profile(definition: Mapping[str, Any], message: str) -> str | None:
    for block in definition.get("extension", []):
        if block.get("url") != codes.EXT_PROCESS_AUTHORIZATION:
            continue
        parts = block.get("extension", [])
        if any(p.get("url") == "message-name" and p.get("valueString") == message for p in parts):
            return next((p.get("valueCanonical") for p in parts if p.get("url") == "task-profile"), None)
    return None


def _unique(resources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for resource in resources:
        key = f"{resource['resourceType']}|{resource.get('url') or resource.get('identifier')}|{resource.get('version')}"
        if key not in seen:
            seen.add(key)
            out.append(resource)
    return out
