"""Engine benchmark: ping round trips and fan-out across real nodes, persisted instances per second.

    python benchmarks/engine.py [--quick] [--skip-postgresql]

Three measurements, each beside a floor measured in the same run (see benchmarks/README.md):

1. **Ping round trip**, 2 organisations: a ``startPing`` Task posted to A's mailbox until A's
   mailbox pushes it ``completed`` on a websocket subscription (``Task?status=completed``) —
   p50, p95 and mean over 200 sequential pings;
2. **Ping fan-out**: the same from one organisation to 10 and to 30 others (wall time per ping);
3. **Persisted instances per second**: ``Engine.start_instance`` of start → service task → end
   (``bpmn/message-start-service-end.bpmn``, a no-op service task) on SQLite and PostgreSQL.

Every organisation runs from the files ``dsf network init`` writes (development PKI, allow
list, node.toml), as real nodes (mailbox + engine + the ping/pong plugin) in child processes
(``benchmarks/peers.py``): the pinging organisation alone, the others in ``--responder-processes``
processes. The floors of 1 and 2 are a script (this process) making the same HTTP calls with
the same dependencies, over the same mTLS keep-alive connections, (a) against bare aiohttp
servers on the same ports with the same certificates (the physical floor), (b) against the
real mailboxes with their engines stopped (what the mailboxes alone cost). The floors of 3 are
bare inserts + updates of rows of the same size in the same database, and the in-memory
SpiffWorkflow run of the same model.

Prints a Markdown table and writes ``benchmarks/results/engine[-quick].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import importlib.util
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from dsf_core.api import ProcessPlugin, ServiceTask
from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter
from dsf_core.client import ClientFactory, FhirClient
from dsf_core.fhir import codes
from dsf_core.network import NetworkLayout, OrgSpec, init_network
from dsf_core.testing import postgres

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def _load_mailbox_benchmark() -> Any:
    # benchmarks/ is no package and `mailbox` is also a stdlib module: load the sibling by path.
    spec = importlib.util.spec_from_file_location("dsf_benchmark_mailbox", HERE / "mailbox.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mb = _load_mailbox_benchmark()  # percentile, machine_info, /proc CPU readers

PING = "http://dsf.dev/bpe/Process/ping|1.0"
START_PING_PROFILE = "http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"
COMPLETED = "Task?status=completed"
REQUESTED = "Task?status=requested"
TINY_MODEL = REPO / "bpmn" / "message-start-service-end.bpmn"
TINY_VARIABLES = {"name": "benchmark", "count": 1}

GOAL_P50_MS = 50.0
GOAL_FANOUT_S = 3.0
GOAL_INSTANCES_PER_S = 300.0
NOISY_OTHER_CORES = 0.25  # CPU used by other processes above which the report warns
#: Requests that are not part of a ping: websocket upgrades, catch-up searches, the observer's setup.
NOT_PING = ("GET ws", "GET Task?", "GET Subscription?", "POST Subscription")


Stats = dict[str, dict[str, list[Any]]]  # organisation -> request kind -> [count, handler ms, bytes, sample path]


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Plan:
    mode: str
    pings: int
    warmup: int  # unmeasured pings before each measurement (1 for the fan-outs)
    fanouts: tuple[int, ...]
    fanout_repeats: int
    responder_processes: int
    instances: int
    concurrency: int
    backends: tuple[str, ...]


def make_plan(args: argparse.Namespace) -> Plan:
    backends = ("sqlite",) if args.skip_postgresql or not postgres.available() else ("sqlite", "postgresql")
    return Plan(
        mode="quick" if args.quick else "full",
        pings=args.pings or (50 if args.quick else 200),
        warmup=5,
        fanouts=tuple(args.fanouts) if args.fanouts else (10, 30),
        fanout_repeats=args.repeats or (3 if args.quick else 5),
        responder_processes=args.responder_processes,
        instances=args.instances or (500 if args.quick else 2_000),
        concurrency=args.concurrency,
        backends=backends,
    )


# --------------------------------------------------------------------------- statistics


def summary(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "p50_ms": round(mb.percentile(ordered, 0.50) * 1000, 2),
        "p95_ms": round(mb.percentile(ordered, 0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


class CpuMeter:
    """CPU seconds of the given processes and of the whole machine between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: mb.proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._busy = mb.system_busy_seconds()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        used = {name: mb.proc_cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        other = max(mb.system_busy_seconds() - self._busy - sum(used.values()), 0.0)
        return {"wall_s": round(wall, 3), **{k: round(v, 3) for k, v in used.items()}, "other": round(other, 3)}


# --------------------------------------------------------------------------- peer processes


class PeerProcess:
    """``benchmarks/peers.py`` in a child process: some organisations as real nodes or bare servers."""

    def __init__(self, name: str, network: Path, organizations: Sequence[str], mode: str, log_path: Path) -> None:
        self.name = name
        self.argv = [sys.executable, str(HERE / "peers.py"), "--network", str(network), "--orgs", ",".join(organizations),
                     "--mode", mode, "--log", str(log_path)]
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 300.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DSF_", "DEV_DSF_"))}
        stderr = os.open(self.log_path.with_suffix(".stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=REPO, env=env,
            )
        finally:
            os.close(stderr)
        try:
            line = await asyncio.wait_for(self._line(), timeout)
        except TimeoutError:
            await self.stop()
            raise BenchmarkError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}") from None
        if line != "peers: ready":
            await self.stop()
            raise BenchmarkError(f"{self.name}: expected 'peers: ready', got {line!r}; see {self.log_path}.stderr")

    async def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            tail = self.log_path.with_suffix(".stderr").read_text(errors="replace")[-3000:]
            raise BenchmarkError(f"{self.name} exited with {code}; log {self.log_path}\n{tail}")
        return line.decode().strip()

    async def command(self, command: str, timeout: float = 60.0) -> str:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._line(), timeout)

    async def stats(self) -> Stats:
        reply = await self.command("stats")
        if not reply.startswith("stats "):
            raise BenchmarkError(f"{self.name}: unexpected reply {reply!r}")
        return orjson.loads(reply[6:])  # type: ignore[no-any-return]

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


class Peers:
    """The pinging organisation in one process, the responders split over ``groups`` processes."""

    def __init__(self, layout: NetworkLayout, mode: str, groups: int, logs: Path) -> None:
        ids = [o.identifier for o in layout.organizations]
        self.a, self.responders = ids[0], ids[1:]
        chunks = [self.responders[i::groups] for i in range(groups)]
        self.processes = [PeerProcess(f"{mode} peers [{self.a}]", layout.directory, [self.a], mode, logs / f"{mode}-a.log")]
        self.processes += [
            PeerProcess(f"{mode} peers [{len(c)} responders]", layout.directory, c, mode, logs / f"{mode}-r{i}.log")
            for i, c in enumerate(chunks) if c
        ]

    @property
    def pids(self) -> dict[str, int]:
        """CPU accounting names: ``pinging process`` and ``responders <n>``."""
        return {"pinging process": self.processes[0].pid,
                **{f"responders {i}": p.pid for i, p in enumerate(self.processes[1:])}}

    async def start(self) -> None:
        try:
            await asyncio.gather(*(p.start() for p in self.processes))
        except BaseException:
            await self.stop()
            raise

    async def stats(self) -> Stats:
        out: Stats = {}
        for process in self.processes:
            out.update(await process.stats())
        return out

    async def stop_engines(self) -> None:
        for process in self.processes:
            if await process.command("stop-engine") != "ok":
                raise BenchmarkError(f"{process.name}: stop-engine failed")

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))


def cpu_per_role(cpu: dict[str, float], pings: int) -> dict[str, float]:
    """CPU milliseconds per ping: pinging process, all responder processes, this driver, the rest."""
    responders = sum(v for k, v in cpu.items() if k.startswith("respond"))
    return {
        "pinging_ms": round(cpu.get("pinging process", 0.0) / pings * 1000, 2),
        "responders_ms": round(responders / pings * 1000, 2),
        "driver_ms": round(cpu.get("driver", 0.0) / pings * 1000, 2),
        "other_ms": round(cpu.get("other", 0.0) / pings * 1000, 2),
    }


# --------------------------------------------------------------------------- census


def census(stats: Stats, a: str, pings: int) -> dict[str, Any]:
    """Calls per ping by organisation role and kind: handler time, response size, a sample path."""
    roles: Stats = {"pinging": {}, "responders": {}}
    for org, kinds in stats.items():
        totals = roles["pinging" if org == a else "responders"]
        for kind, (count, ms, size, sample) in kinds.items():
            entry = totals.setdefault(kind, [0, 0.0, 0, sample])
            entry[0] += count
            entry[1] += ms
            entry[2] += size
    per_ping: dict[str, dict[str, Any]] = {}
    calls = handler_ms = 0.0
    for role, kinds in roles.items():
        for kind, (count, ms, size, sample) in sorted(kinds.items()):
            if kind in NOT_PING:
                continue
            per_ping[f"{role}: {kind}"] = {
                "calls": round(count / pings, 2),
                "handler_ms": round(ms / count, 3) if count else 0.0,
                "response_bytes": round(size / count) if count else 0,
                "sample": sample,
            }
            calls += count / pings
            handler_ms += ms / pings
    return {"per_ping": per_ping, "calls_per_ping": round(calls, 2), "handler_ms_per_ping": round(handler_ms, 2)}


def census_text(c: dict[str, Any]) -> str:
    return ", ".join(f"{k} ×{v['calls']:g}" for k, v in c["per_ping"].items())


# --------------------------------------------------------------------------- clients and pushes


class Identities:
    """One keep-alive connection pool per organisation identity (its client certificate), as the engine's."""

    def __init__(self, layout: NetworkLayout) -> None:
        self.layout = layout
        self.factories: dict[str, ClientFactory] = {}

    def factory(self, identity: str) -> ClientFactory:
        if identity not in self.factories:
            org = self.layout.organization(identity)
            self.factories[identity] = ClientFactory.from_files(
                cafile=self.layout.ca_cert, cert_file=org.client_cert, key_file=org.client_key, attempts=1, timeout=120
            )
        return self.factories[identity]

    def client(self, identity: str, on: str) -> FhirClient:
        return self.factory(identity).client(self.layout.organization(on).base_url)

    def session(self, identity: str) -> aiohttp.ClientSession:
        return self.factory(identity).session

    async def close(self) -> None:
        for factory in self.factories.values():
            await factory.close()
        self.factories.clear()


class Pushes:
    """A websocket bound to one subscription; each pushed message goes to whoever waits for its key."""

    def __init__(self, session: aiohttp.ClientSession, url: str, subscription: str, key: Callable[[str], str | None]) -> None:
        self.session = session
        self.url = url
        self.subscription = subscription
        self.key = key
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._early: dict[str, str] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def start(self) -> Pushes:
        self._ws = await self.session.ws_connect(self.url)
        await self._ws.send_str(f"bind {self.subscription}")
        reply = await self._ws.receive(timeout=30)
        if reply.type != aiohttp.WSMsgType.TEXT or reply.data.strip() != f"bound {self.subscription}":
            raise BenchmarkError(f"bind {self.subscription} on {self.url} refused: {reply.data!r}")
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            key = self.key(msg.data)
            if key is None:
                continue
            future = self._waiting.pop(key, None)
            if future is None:
                self._early[key] = msg.data
            elif not future.done():
                future.set_result(msg.data)

    async def wait(self, key: str, timeout: float = 120.0) -> str:
        if key in self._early:
            return self._early.pop(key)
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BenchmarkError(f"no push for {key} on {self.url} within {timeout:.0f} s") from None
        finally:
            self._waiting.pop(key, None)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()


def task_key(status: str) -> Callable[[str], str | None]:
    """The Task id of a pushed Task with ``status`` (other pushes are ignored)."""

    def key(message: str) -> str | None:
        resource = orjson.loads(message)
        return str(resource["id"]) if resource.get("status") == status else None

    return key


def token_key(message: str) -> str | None:
    return message.split(" ", 1)[0]


def ws_url(base_url: str) -> str:
    return "wss://" + base_url.split("://", 1)[1].rstrip("/") + "/ws"


async def subscription_id(client: FhirClient, criteria: str) -> str:
    bundle = await client.search("Subscription", {"criteria:exact": criteria, "type": "websocket",
                                                  "payload": "application/fhir+json"})
    entries = bundle.get("entry") or []
    if len(entries) != 1:
        raise BenchmarkError(f"expected one Subscription {criteria} on {client.base_url}, found {len(entries)}")
    return str(entries[0]["resource"]["id"])


async def observer(ids: Identities, a: str) -> Pushes:
    """A's ``Task?status=completed`` subscription (created once), bound with A's certificate."""
    client = ids.client(a, a)
    bundle = await client.search("Subscription", {"criteria:exact": COMPLETED})
    if not bundle.get("entry"):
        await client.create({
            "resourceType": "Subscription",
            "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "LOCAL"}]},
            "status": "active",
            "reason": "benchmark observer",
            "criteria": COMPLETED,
            "channel": {"type": "websocket", "payload": "application/fhir+json"},
        })
    sid = await subscription_id(client, COMPLETED)
    return await Pushes(ids.session(a), ws_url(client.base_url), sid, task_key("completed")).start()


# --------------------------------------------------------------------------- Tasks


def start_task(a: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "meta": {"profile": [START_PING_PROFILE]},
        "instantiatesCanonical": PING,
        "status": "requested",
        "intent": "order",
        "authoredOn": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requester": organization_reference(a),
        "restriction": {"recipient": [organization_reference(a)]},
        "input": [parameter(BPMN_MESSAGE, "message-name", "String", "startPing")],
    }


def ping_statuses(task: dict[str, Any]) -> dict[str, str]:
    """organisation identifier → ping-status code of a completed startPing Task."""
    out = {}
    for output in task.get("output", []):
        if output["type"]["coding"][0]["code"] != "ping-status":
            continue
        parts = {e["url"]: e for e in output["extension"][0]["extension"]}
        out[parts["organization-identifier"]["valueIdentifier"]["value"]] = output["valueCoding"]["code"]
    return out


def message_input(task: dict[str, Any], name: str) -> str | None:
    for p in task.get("input", []):
        coding = p["type"]["coding"][0]
        if coding.get("system") == BPMN_MESSAGE and coding.get("code") == name:
            return str(p.get("valueString"))
    return None


def _set_message_input(task: dict[str, Any], name: str, value: str) -> None:
    for p in task["input"]:
        coding = p["type"]["coding"][0]
        if coding.get("system") == BPMN_MESSAGE and coding.get("code") == name:
            p["valueString"] = value
            return
    task["input"].append(parameter(BPMN_MESSAGE, name, "String", value))


@dataclass
class Templates:
    """Tasks as the real run wrote them, to replay with new keys: same shapes, same sizes."""

    ping: dict[str, Any]  # as posted to a responder (requested)
    ping_outputs: list[dict[str, Any]]  # what the responder adds when it completes the ping
    pong: dict[str, Any]  # as posted back to the pinging organisation
    start_outputs: list[dict[str, Any]]  # the ping-status outputs of a completed start Task

    @staticmethod
    def _bare(task: dict[str, Any]) -> dict[str, Any]:
        task = copy.deepcopy(task)
        for key in ("id", "output"):
            task.pop(key, None)
        task["meta"] = {"profile": task.get("meta", {}).get("profile", [])}
        task["status"] = "requested"
        return task

    def new_ping(self, a: str, b: str, business_key: str, correlation_key: str) -> dict[str, Any]:
        task = copy.deepcopy(self.ping)
        task["requester"] = organization_reference(a)
        task["restriction"] = {"recipient": [organization_reference(b)]}
        _set_message_input(task, "business-key", business_key)
        _set_message_input(task, "correlation-key", correlation_key)
        return task

    def new_pong(self, b: str, a: str, business_key: str, correlation_key: str) -> dict[str, Any]:
        task = copy.deepcopy(self.pong)
        task["requester"] = organization_reference(b)
        task["restriction"] = {"recipient": [organization_reference(a)]}
        _set_message_input(task, "business-key", business_key)
        _set_message_input(task, "correlation-key", correlation_key)
        return task


async def read_templates(ids: Identities, a: str, b: str, completed_start: dict[str, Any]) -> Templates:
    pings = await ids.client(b, b).search("Task", {"status": "completed", "_count": "1"})
    ping = pings["entry"][0]["resource"]
    completed = await ids.client(a, a).search("Task", {"status": "completed", "_count": "50"})
    pongs = [e["resource"] for e in completed.get("entry") or [] if message_input(e["resource"], "message-name") == "pong"]
    if not pongs:
        raise BenchmarkError(f"no completed pong Task found on {a}")
    return Templates(
        ping=Templates._bare(ping), ping_outputs=copy.deepcopy(ping.get("output", [])),
        pong=Templates._bare(pongs[0]), start_outputs=copy.deepcopy(completed_start.get("output", [])),
    )


# --------------------------------------------------------------------------- the real ping


class RealPing:
    """POST a startPing Task to A; the round trip ends when A's mailbox pushes it completed."""

    def __init__(self, ids: Identities, a: str, targets: Sequence[str], pushes: Pushes) -> None:
        self.client = ids.client(a, a)
        self.a = a
        self.targets = set(targets)
        self.pushes = pushes
        self.last: dict[str, Any] = {}

    async def __call__(self) -> float:
        t0 = time.perf_counter()
        created = await self.client.create(start_task(self.a))
        message = await self.pushes.wait(created.id)
        elapsed = time.perf_counter() - t0
        task = orjson.loads(message)
        statuses = ping_statuses(task)
        if set(statuses) != self.targets or set(statuses.values()) != {"pong-received"}:
            raise BenchmarkError(f"ping Task/{created.id} completed with statuses {statuses}")
        self.last = task
        return elapsed


async def settled(ids: Identities, organizations: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until no Task is in progress anywhere: a start Task completes before the engine has
    written its last pong Tasks (it writes them in id order), and those writes belong to that ping."""
    deadline = time.monotonic() + timeout
    for org in organizations:
        while (await ids.client(org, org).search("Task", {"status": "in-progress", "_summary": "count"}))["total"]:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"Tasks still in progress on {org} after {timeout:.0f} s")
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- the scripted floors


@dataclass(frozen=True)
class Read:
    """A search or read the engines made in the dsf-py run: replayed as often as the census counted it."""

    kind: str
    path: str  # the first path + query the census saw for this kind
    response_bytes: int


@dataclass(frozen=True)
class Reads:
    """The GETs of one ping: A's before it sends the pings, and each responder's before it answers."""

    pinging: tuple[Read, ...]
    per_responder: tuple[Read, ...]

    @classmethod
    def of(cls, census: dict[str, Any], targets: int) -> Reads:
        def reads(role: str, per: int) -> tuple[Read, ...]:
            out: list[Read] = []
            for key, v in census["per_ping"].items():
                who, _, kind = key.partition(": ")
                if who == role and kind.startswith("GET "):
                    out += [Read(kind, v["sample"], v["response_bytes"])] * round(v["calls"] / per)
            return tuple(out)

        return cls(reads("pinging", 1), reads("responders", targets))


class MailboxTransport:
    """The calls of a ping against the real mailboxes (engines stopped): real Tasks, real searches."""

    def __init__(self, ids: Identities, requested: dict[str, Pushes], completed: Pushes) -> None:
        self.ids = ids
        self.requested_pushes = requested
        self.completed_pushes = completed

    async def create(self, identity: str, on: str, task: dict[str, Any]) -> str:
        return (await self.ids.client(identity, on).create(task)).id

    async def requested(self, on: str, key: str) -> dict[str, Any]:
        return orjson.loads(await self.requested_pushes[on].wait(key))  # type: ignore[no-any-return]

    async def update(self, identity: str, on: str, task: dict[str, Any], *, observed: bool = False) -> dict[str, Any]:
        return await self.ids.client(identity, on).update(task)

    async def completed(self, on: str, key: str) -> None:
        await self.completed_pushes.wait(key)

    async def get(self, identity: str, on: str, read: Read) -> None:
        client = self.ids.client(identity, on)
        await client.read_url(client.base_url.split("/fhir", 1)[0] + read.path)


class BareTransport:
    """The same calls against bare aiohttp servers: same bodies, response sizes and page counts as the real run."""

    def __init__(self, ids: Identities, pushes: dict[str, Pushes]) -> None:
        self.ids = ids
        self.pushes = pushes

    def _url(self, on: str, path: str) -> str:
        return f"{self.ids.layout.organization(on).base_url.rstrip('/')}/{path}"

    async def _write(self, method: str, identity: str, on: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", **headers}
        async with self.ids.session(identity).request(method, self._url(on, path), data=body, headers=headers) as response:
            payload = await response.read()
            if response.status >= 400:
                raise BenchmarkError(f"bare {method} {path} -> {response.status}")
            return payload

    async def create(self, identity: str, on: str, task: dict[str, Any]) -> str:
        token = str(uuid.uuid4())
        await self._write("POST", identity, on, task["resourceType"], orjson.dumps(task),
                          {"X-Bare-Push": token, "Prefer": "return=minimal"})
        return token

    async def requested(self, on: str, key: str) -> dict[str, Any]:
        message = await self.pushes[on].wait(key)
        task = orjson.loads(message.split(" ", 1)[1])
        task["id"] = key
        return task  # type: ignore[no-any-return]

    async def update(self, identity: str, on: str, task: dict[str, Any], *, observed: bool = False) -> dict[str, Any]:
        headers = {"Prefer": "return=representation"} | ({"X-Bare-Push": f"done-{task['id']}"} if observed else {})
        return orjson.loads(await self._write("PUT", identity, on, f"Task/{task['id']}", orjson.dumps(task), headers))  # type: ignore[no-any-return]

    async def completed(self, on: str, key: str) -> None:
        await self.pushes[on].wait(f"done-{key}")

    async def get(self, identity: str, on: str, read: Read) -> None:
        headers = {"Accept": "application/fhir+json", "X-Bare-Size": str(read.response_bytes)}
        async with self.ids.session(identity).get(self._url(on, read.path.split("/fhir/", 1)[-1]), headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise BenchmarkError(f"bare GET {read.path} -> {response.status}")


Transport = MailboxTransport | BareTransport


def _with(task: dict[str, Any], status: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    task = dict(task)
    task["status"] = status
    if outputs is not None:
        task["output"] = outputs
    return task


async def scripted_ping(t: Transport, templates: Templates, reads: Reads, a: str, targets: Sequence[str]) -> float:
    """One ping's HTTP calls made by a script, concurrent wherever the physics allows.

    A: POST start Task → push to A → PUT in-progress → A's searches and reads (as the census of
    the dsf-py run counted them: which targets are there); then per target, concurrently: POST
    ping to B → push to B → B: PUT in-progress, B's searches (where to answer), POST pong to A →
    push to A (and B: PUT completed) → A: PUT pong in-progress; then A: PUT every pong completed
    and the start Task completed, concurrently → the completed start Task pushed to the observer.
    """
    t0 = time.perf_counter()
    start_id = await t.create(a, a, start_task(a))
    start = await t.requested(a, start_id)
    business_key = str(uuid.uuid4())
    start = await t.update(a, a, _with(start, "in-progress") | {
        "input": [*start.get("input", []), parameter(BPMN_MESSAGE, "business-key", "String", business_key)]})
    for read in reads.pinging:
        await t.get(a, a, read)

    async def branch(b: str) -> dict[str, Any]:
        correlation_key = str(uuid.uuid4())
        ping_id = await t.create(a, b, templates.new_ping(a, b, business_key, correlation_key))
        ping = await t.requested(b, ping_id)
        ping = await t.update(b, b, _with(ping, "in-progress"))
        for read in reads.per_responder:
            await t.get(b, b, read)
        pong_id = await t.create(b, a, templates.new_pong(b, a, business_key, correlation_key))
        completed_ping = t.update(b, b, _with(ping, "completed", templates.ping_outputs))
        pong: dict[str, Any] = (await asyncio.gather(completed_ping, t.requested(a, pong_id)))[1]
        return await t.update(a, a, _with(pong, "in-progress"))

    pongs = await asyncio.gather(*(branch(b) for b in targets))
    await asyncio.gather(
        *(t.update(a, a, _with(p, "completed")) for p in pongs),
        t.update(a, a, _with(start, "completed", templates.start_outputs), observed=True),
    )
    await t.completed(a, start["id"])
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- one network


@dataclass
class Variant:
    name: str
    seconds: list[float] = field(default_factory=list)
    census: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def report(self, pings: int) -> dict[str, Any]:
        return {"name": self.name, **summary(self.seconds), "census": self.census, "cpu_per_ping": cpu_per_role(self.cpu, pings),
                "cpu": self.cpu}


async def measure(peers: Peers, name: str, one: Callable[[], Awaitable[float]], warmup: int, count: int, a: str,
                  settle: Callable[[], Awaitable[None]] | None = None) -> Variant:
    for _ in range(warmup):
        await one()
    if settle is not None:
        await settle()
    await peers.stats()  # reset the census
    meter = CpuMeter({**peers.pids, "driver": os.getpid()})
    variant = Variant(name)
    meter.start()
    for _ in range(count):
        variant.seconds.append(await one())
    variant.cpu = meter.stop()
    if settle is not None:
        await settle()
    variant.census = census(await peers.stats(), a, count)
    s = summary(variant.seconds)
    print(f"    {name}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, mean {s['mean_ms']:.1f} ms over {count}; "
          f"{variant.census['calls_per_ping']:g} calls per ping; CPU ms per ping {cpu_per_role(variant.cpu, count)}",
          flush=True)
    return variant


async def run_network(directory: Path, size: int, plan: Plan, count: int, warmup: int, logs: Path) -> dict[str, Any]:
    """Real pings, then the mailbox floor (engines stopped), then the bare floor, on one network."""
    layout = await asyncio.to_thread(
        init_network, directory, organizations=[OrgSpec(f"org{i:02d}.test", ("DIC",)) for i in range(size)])
    a, targets = layout.organizations[0].identifier, [o.identifier for o in layout.organizations[1:]]
    groups = min(plan.responder_processes, len(targets))
    result: dict[str, Any] = {"organizations": size, "targets": len(targets), "pings": count,
                              "processes": f"1 pinging + {groups} responder process(es)"}
    print(f"  network of {size} organisations in {directory}: {result['processes']}", flush=True)

    # real nodes, then the same mailboxes with their engines stopped
    peers = Peers(layout, "node", groups, logs)
    t0 = time.perf_counter()
    await peers.start()
    result["startup_s"] = round(time.perf_counter() - t0, 1)
    print(f"    {size} nodes ready in {result['startup_s']} s", flush=True)
    ids = Identities(layout)
    pushes: list[Pushes] = []
    try:
        completed = await observer(ids, a)
        pushes.append(completed)
        real_ping = RealPing(ids, a, targets, completed)
        real = await measure(peers, "dsf-py (nodes)", real_ping, warmup, count, a,
                             settle=lambda: settled(ids, [a, *targets]))
        templates = await read_templates(ids, a, targets[0], real_ping.last)
        reads = Reads.of(real.census, len(targets))

        await peers.stop_engines()
        requested: dict[str, Pushes] = {}
        for org in [a, *targets]:
            client = ids.client(org, org)
            sid = await subscription_id(client, REQUESTED)
            requested[org] = await Pushes(ids.session(org), ws_url(client.base_url), sid, task_key("requested")).start()
            pushes.append(requested[org])
        transport = MailboxTransport(ids, requested, completed)
        mailboxes = await measure(peers, "floor: mailboxes, engines stopped",
                                  lambda: scripted_ping(transport, templates, reads, a, targets),
                                  warmup, count, a)
    finally:
        for p in pushes:
            await p.stop()
        await ids.close()
        await peers.stop()

    # bare aiohttp servers on the same ports, same certificates
    peers = Peers(layout, "bare", groups, logs)
    await peers.start()
    ids = Identities(layout)
    pushes = []
    try:
        bare_pushes = {}
        for org in [a, *targets]:
            bare_pushes[org] = await Pushes(ids.session(org), ws_url(layout.organization(org).base_url), "bare", token_key).start()
            pushes.append(bare_pushes[org])
        bare_transport = BareTransport(ids, bare_pushes)
        bare = await measure(peers, "floor: bare aiohttp servers",
                             lambda: scripted_ping(bare_transport, templates, reads, a, targets),
                             warmup, count, a)
    finally:
        for p in pushes:
            await p.stop()
        await ids.close()
        await peers.stop()
    result["variants"] = {"real": real.report(count), "mailboxes": mailboxes.report(count), "bare": bare.report(count)}
    busiest = max(v.cpu["other"] / v.cpu["wall_s"] for v in (real, mailboxes, bare))
    result["other_cores_max"] = round(busiest, 2)
    made = {v.name: v.census["calls_per_ping"] for v in (real, mailboxes, bare)}
    if max(made.values()) - min(made.values()) > 0.5:
        result["census_mismatch"] = "calls per ping differ: " + ", ".join(f"{k} {v:g}" for k, v in made.items())
    return result


# --------------------------------------------------------------------------- instances per second


class NoOp(ServiceTask):
    """The benchmark's service task: does nothing, synchronously."""

    def execute(self, api: Any, variables: Any) -> None:
        return None


TINY_PLUGIN = ProcessPlugin(
    name="dsf-benchmark-tiny", version="1.0.0.0", release_date=dt.date(2026, 1, 1), package="dsf_core",
    models=(str(TINY_MODEL),), class_map={"conformance.Record": NoOp},
)
TINY_KEY = "dsfdev_serviceTask|1.0"


class NullStore:
    """An engine store that keeps nothing: the engine's own work without a database."""

    async def load_spec(self, process_id: str, version: str) -> None:
        return None

    async def save_spec(self, row: Any, *, now: Any) -> None:
        return None

    async def save_instance(self, row: Any, **kwargs: Any) -> None:
        return None

    async def running_ids(self) -> list[str]:
        return []

    async def next_due(self) -> None:
        return None

    async def due(self, now: Any, limit: int = 100) -> list[str]:
        return []


@dataclass
class BenchEngine:
    """An engine of the tiny plugin with the client pool it was given (never used: it sends nothing)."""

    engine: Any
    clients: ClientFactory

    async def stop(self) -> None:
        await self.engine.stop()
        await self.clients.close()


async def make_engine(store: Any) -> BenchEngine:
    import ssl

    from dsf_core.bpe.deployment import load_plugin, placeholders_for
    from dsf_core.bpe.engine import Engine
    from dsf_core.bpe.plugin_api import EngineApi

    factory = ClientFactory(ssl.create_default_context())  # never used: these instances send nothing
    api = EngineApi(organization_identifier="bench.test", endpoint_identifier="bench.test",
                    endpoint_url="https://127.0.0.1:1/fhir", local_fhir_url="https://127.0.0.1:1/fhir",
                    clients=factory, clock=lambda: dt.datetime.now(dt.UTC), environ={})
    engine = Engine(store=store, api=api, local=factory.client("https://127.0.0.1:1/fhir"))
    await engine.deploy(load_plugin(TINY_PLUGIN, placeholders_for(TINY_PLUGIN, "bench.test", {})))
    await engine.start()
    return BenchEngine(engine, factory)


async def run_instances(bench: BenchEngine, n: int, concurrency: int) -> float:
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < n:
            issued += 1
            await bench.engine.start_instance(TINY_KEY, "start", TINY_VARIABLES)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


@contextlib.contextmanager
def spiff_logs_off() -> Iterator[None]:
    """SpiffWorkflow logs every task state change at INFO (``spiff.task``): the floor runs without that,
    whatever the engine configured (since 3cad58d the engine keeps those loggers at WARNING too)."""
    spiff = logging.getLogger("spiff")
    level = spiff.level
    spiff.setLevel(logging.WARNING)
    try:
        yield
    finally:
        spiff.setLevel(level)


class _ServiceOnlyHost:
    """An activity host for the tiny model, which has no sends and no listeners."""

    def execute_service_task(self, task: Any, spec: Any) -> bool | None:
        raise NotImplementedError

    def send_message(self, task: Any, spec: Any) -> bool | None:
        raise BenchmarkError("the tiny model sends nothing")

    def run_listener(self, task: Any, spec: Any, listener: Any) -> None:
        raise BenchmarkError("the tiny model has no listeners")


def spiff_in_memory(process: Any, n: int) -> float:
    """The same model run by SpiffWorkflow alone: no engine bookkeeping, no serialisation, no database."""
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]

    from dsf_core.bpe.compaction import run_engine_steps
    from dsf_core.bpe.events import message_event
    from dsf_core.bpe.scripting import DsfScriptEngine

    class Host(_ServiceOnlyHost):
        def execute_service_task(self, task: Any, spec: Any) -> bool:
            process.classes[spec.binding.class_name](spec.binding.field_values(task.data)).execute(None, None)
            return True

    script_engine = DsfScriptEngine(Host())
    t0 = time.perf_counter()
    for _ in range(n):
        workflow = BpmnWorkflow(process.model.spec, process.model.subprocess_specs, script_engine=script_engine)
        workflow.do_engine_steps()
        workflow.send_event(message_event("start", dict(TINY_VARIABLES)))
        run_engine_steps(workflow)
        if not workflow.completed:
            raise BenchmarkError("the in-memory run of the tiny model did not complete")
    return time.perf_counter() - t0


BARE_TABLE = """CREATE TABLE IF NOT EXISTS bench_rows (
    id VARCHAR(36) PRIMARY KEY, process_id VARCHAR(255) NOT NULL, version VARCHAR(40) NOT NULL,
    business_key VARCHAR(255) NOT NULL, status VARCHAR(16) NOT NULL, next_due BIGINT, state TEXT NOT NULL,
    tasks TEXT NOT NULL, revision INTEGER NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"""
BARE_INSERT = ("INSERT INTO bench_rows (id, process_id, version, business_key, status, next_due, state, tasks, revision, "
               "created_at, updated_at) VALUES ({})")
BARE_UPDATE = "UPDATE bench_rows SET status = {0}, state = {1}, revision = {2}, updated_at = {3} WHERE id = {4}"


def bare_sqlite(path: Path, n: int, running_state: str, done_state: str) -> float:
    """N × (INSERT; COMMIT; UPDATE; COMMIT) of rows as large as the engine's, sqlite3 with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(BARE_TABLE)
    insert = BARE_INSERT.format(", ".join("?" * 11))
    update = BARE_UPDATE.format("?", "?", "?", "?", "?")
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for _ in range(n):
        row_id = str(uuid.uuid4())
        conn.execute("BEGIN")
        conn.execute(insert, (row_id, "dsfdev_serviceTask", "1.0", str(uuid.uuid4()), "running", None, running_state,
                              '{"start":null,"tasks":{}}', 1, now, now))
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute(update, ("completed", done_state, 2, now, row_id))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


async def bare_postgresql(url: str, n: int, concurrency: int, running_state: str, done_state: str) -> float:
    """The same through asyncpg, one connection per concurrent writer."""
    import asyncpg  # type: ignore[import-untyped]

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    await conns[0].execute(BARE_TABLE)
    insert = BARE_INSERT.format(", ".join(f"${i}" for i in range(1, 12)))
    update = BARE_UPDATE.format("$1", "$2", "$3", "$4", "$5")
    now = int(time.time() * 1000)
    issued = 0

    async def worker(conn: Any) -> None:
        nonlocal issued
        while issued < n:
            issued += 1
            row_id = str(uuid.uuid4())
            async with conn.transaction():
                await conn.execute(insert, row_id, "dsfdev_serviceTask", "1.0", str(uuid.uuid4()), "running", None,
                                   running_state, '{"start":null,"tasks":{}}', 1, now, now)
            async with conn.transaction():
                await conn.execute(update, "completed", done_state, 2, now, row_id)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for conn in conns:
        await conn.close()
    return elapsed


async def instances_phase(backend: str, directory: Path, plan: Plan) -> dict[str, Any]:
    from dsf_core.bpe.serializer import InstanceSerializer
    from dsf_core.bpe.store import EngineStore

    n = plan.instances
    pg: postgres.PostgresCluster | None = None
    pg_pid: int | None = None
    result: dict[str, Any] = {"backend": backend, "instances": n}
    try:
        if backend == "postgresql":
            pg = postgres.PostgresCluster()
            await asyncio.to_thread(pg.start)
            pg_pid = int((pg.directory / "data" / "postmaster.pid").read_text().split()[0])
            url = await asyncio.to_thread(pg.create_database)
            bare_url = await asyncio.to_thread(pg.create_database)
        else:
            url = f"sqlite:///{directory / 'engine.sqlite'}"
        rows: dict[str, float] = {}
        for concurrency in sorted({1, plan.concurrency}):
            store = await EngineStore.open(url)
            bench = await make_engine(store)
            try:
                await run_instances(bench, 50, 1)  # warm-up: statement caches, first connections
                before = await store.count("completed")
                cpu0, db0, busy0 = mb.proc_cpu_seconds(os.getpid()), mb.tree_cpu_seconds(pg_pid), mb.system_busy_seconds()
                seconds = await run_instances(bench, n, concurrency)
                cpu, db = mb.proc_cpu_seconds(os.getpid()) - cpu0, mb.tree_cpu_seconds(pg_pid) - db0
                other = max(mb.system_busy_seconds() - busy0 - cpu - db, 0.0) / seconds
                result["other_cores_max"] = round(max(result.get("other_cores_max", 0.0), other), 2)
                done = await store.count("completed") - before
                if done != n:
                    raise BenchmarkError(f"{backend}: {done} of {n} instances completed")
                rows[f"engine_c{concurrency}"] = n / seconds
                result[f"cpu_c{concurrency}"] = {"process_ms_per_instance": round(cpu / n * 1000, 3),
                                                 "database_ms_per_instance": round(db / n * 1000, 3)}
                print(f"    {backend}, {concurrency} at a time: {n / seconds:.0f} instances/s "
                      f"(process CPU {cpu / n * 1000:.2f} ms, database CPU {db / n * 1000:.2f} ms per instance)", flush=True)
            finally:
                await bench.stop()
                await store.close()
        # the row sizes the engine wrote: state when waiting at the service task and when completed
        bench = await make_engine(NullStore())
        process = bench.engine.processes[TINY_KEY]
        serializer = InstanceSerializer()
        running_state, done_state = _states(process, serializer)
        result["row_state_bytes"] = {"running": len(running_state), "completed": len(done_state)}
        await run_instances(bench, 50, 1)
        rows["engine_no_database"] = n / await run_instances(bench, n, 1)
        with spiff_logs_off():
            spiff_in_memory(process, 50)
            rows["spiff_in_memory"] = n / spiff_in_memory(process, n)
        await bench.stop()
        if backend == "sqlite":
            bare_sqlite(directory / "bare.sqlite", 50, running_state, done_state)
            rows["bare_database_c1"] = n / bare_sqlite(directory / "bare.sqlite", n, running_state, done_state)
            rows[f"bare_database_c{plan.concurrency}"] = rows["bare_database_c1"]  # one writer: same as sequential
        else:
            await bare_postgresql(bare_url, 50, 1, running_state, done_state)
            for concurrency in sorted({1, plan.concurrency}):
                rows[f"bare_database_c{concurrency}"] = n / await bare_postgresql(
                    bare_url, n, concurrency, running_state, done_state)
        result["per_second"] = {k: round(v, 1) for k, v in rows.items()}
        print(f"    {backend} floors: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rows.items() if not k.startswith("engine_c")),
              flush=True)
        if pg is not None:
            result["postgresql"] = _pg_version()
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.stop)
    return result


def _states(process: Any, serializer: Any) -> tuple[str, str]:
    """The serialised state of a tiny-model instance at its first save (service task started) and its last."""
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

    from dsf_core.bpe.compaction import run_engine_steps
    from dsf_core.bpe.events import message_event
    from dsf_core.bpe.scripting import DsfScriptEngine

    class Host(_ServiceOnlyHost):
        def execute_service_task(self, task: Any, spec: Any) -> None:
            return None  # leave it STARTED, as the engine's host does

    workflow = BpmnWorkflow(process.model.spec, process.model.subprocess_specs, script_engine=DsfScriptEngine(Host()))
    workflow.do_engine_steps()
    workflow.send_event(message_event("start", dict(TINY_VARIABLES)))
    run_engine_steps(workflow)
    running = serializer.state_to_json(workflow)
    for task in workflow.get_tasks(state=TaskState.STARTED):
        task.complete()
    run_engine_steps(workflow)
    return running, serializer.state_to_json(workflow)


def _pg_version() -> str:
    import re
    import subprocess

    pg_ctl = postgres._find("pg_ctl")
    out = subprocess.run([pg_ctl or "pg_ctl", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"\(PostgreSQL\) (\S+)", out)
    return match.group(1) if match else out.strip()


# --------------------------------------------------------------------------- report


def _ms(v: float) -> str:
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms"


def _s(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    m, plan = report["machine"], report["plan"]
    postgresql = f", PostgreSQL {report['postgresql']}" if report.get("postgresql") else ""
    changes = " + local changes in dsf_core" if m.get("dsf_core_modified") else ""
    lines = [
        f"#### Engine, {plan['mode']} run — {report['date']}",
        "",
        (f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
         f"aiohttp {m['aiohttp']}, SQLite {m['sqlite']}{postgresql}, Linux {m['kernel']}; "
         f"dsf-py {m.get('commit') or '?'}{changes}. Nodes in child processes (the pinging organisation alone, "
         f"the others in {plan['responder_processes']}), INFO logging to files, SQLite mailboxes and engines, "
         "mTLS keep-alive connections everywhere."),
        "",
        _row("metric", "dsf-py", "floor", "× floor", "goal", "met"),
        "|---|---:|---:|---:|---|:-:|",
    ]
    networks = sorted(report["networks"].items(), key=lambda kv: int(kv[0]))
    for size, net in networks:
        real, bare = net["variants"]["real"], net["variants"]["bare"]
        if size == "2":
            for stat, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("mean_ms", "mean")):
                first = stat == "p50_ms"
                lines.append(_row(
                    f"ping round trip, 2 organisations, {label} of {real['n']}", _ms(real[stat]), _ms(bare[stat]),
                    f"{real[stat] / bare[stat]:.1f}", f"≤ {GOAL_P50_MS:.0f} ms" if first else "",
                    _mark(real[stat] <= GOAL_P50_MS) if first else ""))
        else:
            k = net["targets"]
            lines.append(_row(
                f"ping to {k} organisations, median of {real['n']} (max {_s(real['max_ms'])})", _s(real["p50_ms"]),
                _s(bare["p50_ms"]), f"{real['p50_ms'] / bare['p50_ms']:.1f}",
                f"≤ {GOAL_FANOUT_S:.0f} s" if k == 30 else "",
                _mark(real["p50_ms"] <= GOAL_FANOUT_S * 1000) if k == 30 else ""))
    c = plan["concurrency"]
    for inst in report["instances"]:
        per = inst["per_second"]
        backend = "SQLite" if inst["backend"] == "sqlite" else "PostgreSQL"
        for at_a_time in sorted({1, c}):
            engine, floor = per[f"engine_c{at_a_time}"], per[f"bare_database_c{at_a_time}"]
            first = at_a_time == 1
            lines.append(_row(
                f"persisted instances/s, {backend}, {'one' if first else at_a_time} at a time (N = {inst['instances']})",
                f"{engine:.0f}/s", f"{floor:.0f}/s", f"{floor / engine:.1f}",
                f"≥ {GOAL_INSTANCES_PER_S:.0f}/s" if first else "", _mark(engine >= GOAL_INSTANCES_PER_S) if first else ""))
    lines += [
        "",
        ("Floors: ping — the same HTTP calls and websocket pushes, made by a script with the same dependencies, "
         "against bare aiohttp servers on the same ports with the same certificates, bodies and response sizes; "
         "instances — bare INSERT + UPDATE of rows as large as the engine's in the same database. "
         "× floor = how many times slower than the floor."),
    ]
    if networks:
        lines += [
            "",
            _row("ping, p50", "dsf-py", "mailboxes only (engines stopped, scripted)", "bare floor", "HTTP calls",
                 "mailbox handler ms", "CPU ms: pinging / responders / driver / other"),
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for size, net in networks:
            v = net["variants"]
            cpu = v["real"]["cpu_per_ping"]
            fmt = _ms if size == "2" else _s
            lines.append(_row(
                f"{net['targets']} target{'s' if net['targets'] > 1 else ''}", fmt(v["real"]["p50_ms"]),
                fmt(v["mailboxes"]["p50_ms"]), fmt(v["bare"]["p50_ms"]), f"{v['real']['census']['calls_per_ping']:g}",
                f"{v['real']['census']['handler_ms_per_ping']:.0f}",
                f"{cpu['pinging_ms']:.0f} / {cpu['responders_ms']:.0f} / {cpu['driver_ms']:.0f} / {cpu['other_ms']:.0f}"))
        lines.append("\n(per ping; HTTP calls and mailbox handler time from the mailboxes' census of the dsf-py run)")
    if report["instances"]:
        lines += [
            "",
            _row("instances/s", "engine, one at a time", f"engine, {c} at a time", "engine without database",
                 "SpiffWorkflow in memory", "bare INSERT + UPDATE", "CPU ms per instance: process + database"),
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for inst in report["instances"]:
            per, cpu = inst["per_second"], inst["cpu_c1"]
            lines.append(_row(
                inst["backend"], f"{per['engine_c1']:.0f}", f"{per[f'engine_c{c}']:.0f}", f"{per['engine_no_database']:.0f}",
                f"{per['spiff_in_memory']:.0f}", f"{per['bare_database_c1']:.0f}",
                f"{cpu['process_ms_per_instance']:.2f} + {cpu['database_ms_per_instance']:.2f}"))
    ping = report["networks"].get("2")
    if ping:
        lines += ["", (f"Calls per ping, 2 organisations: {census_text(ping['variants']['real']['census'])}; plus 3 "
                       "websocket pushes to engines (start Task to A, ping to B, pong to A) and 1 to the observer.")]
    for net in report["networks"].values():
        if net.get("census_mismatch"):
            lines.append(f"\nNote: {net['organizations']} organisations: {net['census_mismatch']}.")
    noisy = {f"the {k}-organisation network": n["other_cores_max"] for k, n in report["networks"].items()}
    noisy |= {f"instances on {i['backend']}": i["other_cores_max"] for i in report["instances"]}
    noisy = {k: v for k, v in noisy.items() if v > NOISY_OTHER_CORES}
    if noisy:
        lines.append(f"\n⚠ Other processes used up to {max(noisy.values()):.2f} of {m['nproc']} cores while "
                     f"{', '.join(noisy)} {'was' if len(noisy) == 1 else 'were'} measured (shared machine): "
                     "those numbers are worse than on an idle machine.")
    for note in report.get("notes") or ():
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def run(plan: Plan, keep: bool, only: set[str]) -> dict[str, Any]:
    machine = mb.machine_info("postgresql" if "postgresql" in plan.backends else "sqlite")
    directory = Path(tempfile.mkdtemp(prefix="dsf-bench-engine-"))
    logs = directory / "logs"
    logs.mkdir()
    # The in-process engines of the instances phase log as a node does: INFO, to a file.
    logging.basicConfig(filename=logs / "driver.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"working directory {directory}", flush=True)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report: dict[str, Any] = {"date": date, "machine": machine, "plan": asdict(plan), "networks": {}, "instances": [],
                              "notes": []}
    try:
        if "instances" in only:
            print("persisted instances per second", flush=True)
            for backend in plan.backends:
                (directory / f"instances-{backend}").mkdir()
                inst = await instances_phase(backend, directory / f"instances-{backend}", plan)
                report["instances"].append(inst)
                if inst.get("postgresql"):
                    report["postgresql"] = inst["postgresql"]
        sizes = ([2] if "ping" in only else []) + ([k + 1 for k in plan.fanouts] if "fanout" in only else [])
        for size in sizes:
            count, warmup = (plan.pings, plan.warmup) if size == 2 else (plan.fanout_repeats, 1)
            print(f"ping, {size} organisations", flush=True)
            report["networks"][str(size)] = await run_network(directory / f"net{size}", size, plan, count, warmup, logs)
        return report
    finally:
        if keep:
            print(f"kept {directory}", flush=True)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the dsf-py engine (see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true", help="50 pings, 3 fan-out pings, 500 instances")
    parser.add_argument("--pings", type=int, help="sequential pings in the 2-organisation network (default 200)")
    parser.add_argument("--fanouts", type=int, nargs="*", help="fan-out sizes (default 10 30)")
    parser.add_argument("--repeats", type=int, help="pings per fan-out size (default 5)")
    parser.add_argument("--responder-processes", type=int, default=2, help="processes the responders run in (default 2)")
    parser.add_argument("--instances", type=int, help="instances per measurement (default 2,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="instances started at a time in the second run (16)")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--only", nargs="*", choices=("ping", "fanout", "instances"), help="run only these parts")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases, PKI)")
    parser.add_argument("--output", type=Path, help="JSON result file (default benchmarks/results/engine[-quick].json)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    only = set(args.only or ("ping", "fanout", "instances"))
    t0 = time.perf_counter()
    try:
        report = asyncio.run(run(plan, args.keep, only))
    except BenchmarkError as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = markdown(report)
    print()
    print(text)
    print(f"\ntotal {report['total_seconds']:.0f} s")
    output = args.output or RESULTS / f"engine{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report | {"markdown": text}, option=orjson.OPT_INDENT_2))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
