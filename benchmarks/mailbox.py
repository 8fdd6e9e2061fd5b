"""Mailbox benchmark: Task create/read/search and 1 GiB Binary streaming over mTLS.

    python benchmarks/mailbox.py [--quick] [--backend sqlite|postgresql]

The mailbox runs in its own process (``python -m dsf_core fhir start --config node.toml``
with a throw-away development PKI, allow list and database); so does the baseline, a bare
aiohttp handler behind the same TLS setup (``benchmarks/bare_server.py``).  The load
generator is this process: one aiohttp ``ClientSession`` (one keep-alive connection) per
simulated client, all presenting the local organisation's client certificate.

Measured, printed as Markdown and written to ``benchmarks/results/mailbox-<backend>.json``
(``mailbox-<backend>-quick.json`` with ``--quick``):

1. bare GET / bare POST (baseline), then ``POST Task`` filling the store to N Tasks
   (status requested, shaped like a Java DSF ping Task, authorised by an ActivityDefinition),
   ``GET Task/<id>``, ``GET Task?status=requested&_count=20`` and ``..&_summary=count``:
   requests/s, p50/p99 latency, ratio to the baseline, CPU of server, client, PostgreSQL, others;
2. raw ``POST Binary`` of 1 GiB generated on the fly and ``GET`` back, SHA-256 checked on
   both sides: MiB/s and the server's peak RSS increase (``VmHWM``, sampled ``VmRSS``).

Every phase is bounded by a request count and a time limit, so the script always ends.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from dsf_core import pki
from dsf_core.fhir import codes
from dsf_core.testing import postgres
from dsf_core.testing.allow_list import Member, allow_list_bundle

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

LOCAL = "local.test"
REMOTE = "remote.test"
PARENT = "parent.test"
FHIR_JSON = "application/fhir+json"
MiB = 1024 * 1024

PROCESS_URL = "http://dsf.dev/bpe/Process/pong"
PROCESS_VERSION = "1.0"
TASK_PROFILE = "http://dsf.dev/fhir/StructureDefinition/task-ping|1.0"
SEARCH = "Task?status=requested&_count=20"
COUNT = "Task?status=requested&_summary=count"

GOALS = {"read": 0.5, "create": 0.3, "search": 0.3}
GOAL_CREATE_P99_MS = 50.0
GOAL_BINARY_RSS_MIB = 100.0
NOISY_OTHER_CPU = 0.25  # cores used by other processes above which the report warns


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    mode: str
    backend: str
    tasks: int
    clients: int
    phase_seconds: float  # time limit of each read/search/baseline phase
    phase_requests: int  # request limit of each read/search/baseline phase
    create_seconds: float  # time limit of the fill
    binary_bytes: int
    binary_seconds: float  # time limit of each Binary direction
    binary_files: bool = False  # PostgreSQL: payloads as files (database.binary_dir) instead of rows


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        mode="quick" if quick else "full",
        backend=args.backend,
        tasks=args.tasks or (2_000 if quick else 10_000),
        clients=args.clients,
        phase_seconds=args.seconds or (5.0 if quick else 20.0),
        phase_requests=20_000 if quick else 200_000,
        create_seconds=300.0 if quick else 1_200.0,
        binary_bytes=(args.binary_mib or (64 if quick else 1024)) * MiB,
        binary_seconds=300.0 if quick else 1_800.0,
        binary_files=args.binary_files,
    )


# --------------------------------------------------------------------------- FHIR content


def _org_ref(identifier: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}}


def activity_definition() -> dict[str, Any]:
    """dsf-pong.xml of dsf-ping-pong 1.0.1.0 as JSON, requester and recipient LOCAL_ALL."""

    def pa(code: str) -> dict[str, Any]:
        return {"valueCoding": {"system": codes.PROCESS_AUTHORIZATION, "code": code}}

    return {
        "resourceType": "ActivityDefinition",
        "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]},
        "extension": [
            {
                "url": codes.EXT_PROCESS_AUTHORIZATION,
                "extension": [
                    {"url": "message-name", "valueString": "ping"},
                    {"url": "task-profile", "valueCanonical": TASK_PROFILE},
                    {"url": "requester"} | pa("LOCAL_ALL"),
                    {"url": "recipient"} | pa("LOCAL_ALL"),
                ],
            }
        ],
        "url": PROCESS_URL,
        "version": PROCESS_VERSION,
        "name": "Pong",
        "title": "PONG process",
        "subtitle": "Communication Testing Process",
        "status": "active",
        "experimental": False,
        "date": dt.date.today().isoformat(),
        "publisher": "DSF",
        "contact": [{"name": "DSF", "telecom": [{"system": "email", "value": "pmo@dsf.dev"}]}],
        "description": "Process startet by PING messages and to send corresponding PONG messages back to remote Organizations",
        "kind": "Task",
    }


def _input(system: str, code: str, **value: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": system, "code": code}]}, **value}


def ping_task(local: str) -> bytes:
    """A Task as a Java DSF ping process sends it (task-ping profile), addressed to the local organisation."""
    task = {
        "resourceType": "Task",
        "meta": {"profile": [TASK_PROFILE]},
        "instantiatesCanonical": f"{PROCESS_URL}|{PROCESS_VERSION}",
        "status": "requested",
        "intent": "order",
        "authoredOn": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requester": _org_ref(local),
        "restriction": {"recipient": [_org_ref(local)]},
        "input": [
            _input(codes.BPMN_MESSAGE, "message-name", valueString="ping"),
            _input(codes.BPMN_MESSAGE, "business-key", valueString=str(uuid.uuid4())),
            _input(codes.BPMN_MESSAGE, "correlation-key", valueString=str(uuid.uuid4())),
            _input(
                "http://dsf.dev/fhir/CodeSystem/ping",
                "endpoint-identifier",
                valueReference={
                    "type": "Endpoint",
                    "identifier": {"system": codes.ENDPOINT_IDENTIFIER, "value": local},
                },
            ),
        ],
    }
    return orjson.dumps(task)


def allow_list(orgs: dict[str, pki.OrganizationFiles]) -> dict[str, Any]:
    """The remote organisation plus the local organisation's role membership (as MailboxHarness)."""
    bundle = allow_list_bundle(
        [Member(REMOTE, orgs[REMOTE].client_thumbprint, f"https://127.0.0.1:1/{REMOTE}", ("DIC",))], parent=PARENT
    )
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:aff-local",
            "resource": {
                "resourceType": "OrganizationAffiliation",
                "meta": {"tag": [{"system": codes.READ_ACCESS_TAG, "code": "ALL"}]},
                "active": True,
                "organization": {"reference": f"urn:uuid:parent-{PARENT}", "type": "Organization"},
                "participatingOrganization": _org_ref(LOCAL),
                "code": [{"coding": [{"system": codes.ORGANIZATION_ROLE, "code": "DIC"}]}],
            },
            "request": {"method": "POST", "url": "OrganizationAffiliation"},
        }
    )
    return bundle


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(value: Any) -> str:
    return orjson.dumps(str(value)).decode()  # a JSON string is a valid TOML basic string here


def write_node_toml(
    directory: Path, port: int, orgs: dict[str, pki.OrganizationFiles], ca: Path, db_url: str | None, binary_files: bool = False
) -> Path:
    local = orgs[LOCAL]
    (directory / "allow-list.json").write_bytes(orjson.dumps(allow_list(orgs)))
    lines = [
        "[node]",
        'mode = "dsf"',
        f"data_dir = {_toml(directory / 'data')}",
        "",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"base_url = {_toml(f'https://127.0.0.1:{port}/fhir')}",
        "",
        "[tls]",
        f"certificate = {_toml(local.server.cert_path)}",
        f"private_key = {_toml(local.server.key_path)}",
        f"trust_client_cas = {_toml(ca)}",
        "",
        "[organization]",
        f"identifier = {_toml(LOCAL)}",
        f"client_certificate = {_toml(local.client.cert_path)}",
        f"client_private_key = {_toml(local.client.key_path)}",
        f"init_bundle = {_toml(directory / 'allow-list.json')}",
    ]
    if db_url:
        lines += ["", "[database]", f"url = {_toml(db_url)}"]
        if binary_files:
            lines.append(f"binary_dir = {_toml(directory / 'binaries')}")
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class ServerProcess:
    """A child process that prints a ready line on stdout; stderr goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, ready_prefix: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.ready_prefix = ready_prefix
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_line = ""
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 120.0) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DSF_", "DEV_DSF_"))}
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=REPO, env=env
            )
        try:
            self.ready_line = await asyncio.wait_for(self._wait_ready(), timeout)
        except TimeoutError:
            await self.stop()
            raise BenchmarkError(f"{self.name} not ready within {timeout:.0f} s; log: {self.log_path}\n{self.log_tail()}") from None
        return self.ready_line

    async def _wait_ready(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                code = await self.proc.wait()
                raise BenchmarkError(f"{self.name} exited with {code} before it was ready; log: {self.log_path}\n{self.log_tail()}")
            text = line.decode(errors="replace").strip()
            if text.startswith(self.ready_prefix):
                self._drain = asyncio.create_task(self._drain_stdout())
                return text

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise BenchmarkError(f"{self.name} died with {self.proc.returncode}; log: {self.log_path}\n{self.log_tail()}")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await self._drain


# --------------------------------------------------------------------------- /proc


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, writing 5 to clear_refs); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_TICK = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU time all processes spent busy (every core, /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds of a process, its reaped children and its live children (PostgreSQL: postmaster + backends)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                child = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(child[1]) == pid:
            ticks += int(child[11]) + int(child[12])
    return ticks / _TICK


class RssSampler:
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append(proc_status(self.pid)["VmRSS"])
            await asyncio.sleep(self.interval)  # sampling period, not synchronisation

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.samples.append(proc_status(self.pid)["VmRSS"])


# --------------------------------------------------------------------------- load


@dataclass
class PhaseResult:
    name: str
    requests: int
    ok: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # server CPU seconds / wall seconds (1.0 = one core busy)
    client_cpu: float  # this process, same unit
    db_cpu: float  # PostgreSQL server processes, same unit (0 for SQLite: it runs inside the server process)
    other_cpu: float  # every other process on the machine, same unit (noise from concurrent work)
    stopped_by: str  # "count" or "time"
    first_error: str | None = None
    ratio: float | None = None  # rps / baseline rps
    baseline: str | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


RequestFn = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[bool, str]]]


async def run_phase(
    name: str,
    sessions: Sequence[aiohttp.ClientSession],
    request: RequestFn,
    *,
    max_requests: int,
    seconds: float,
    server: ServerProcess,
    db_pid: int | None = None,
) -> PhaseResult:
    latencies: list[float] = []
    issued = 0
    errors = 0
    first_error: str | None = None
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued, errors, first_error
        while issued < max_requests and time.perf_counter() < deadline:
            n = issued
            issued += 1
            t0 = time.perf_counter()
            try:
                ok, detail = await request(session, n)
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            latencies.append(time.perf_counter() - t0)
            if not ok:
                errors += 1
                first_error = first_error or detail

    server_cpu0, client_cpu0, db_cpu0 = proc_cpu_seconds(server.pid), proc_cpu_seconds(os.getpid()), tree_cpu_seconds(db_pid)
    busy0 = system_busy_seconds()
    await asyncio.gather(*(worker(s) for s in sessions))
    wall = time.perf_counter() - start
    server_cpu = (proc_cpu_seconds(server.pid) - server_cpu0) / wall
    client_cpu = (proc_cpu_seconds(os.getpid()) - client_cpu0) / wall
    db_cpu = (tree_cpu_seconds(db_pid) - db_cpu0) / wall
    other_cpu = max((system_busy_seconds() - busy0) / wall - server_cpu - client_cpu - db_cpu, 0.0)
    server.check_alive()
    latencies.sort()
    ok = len(latencies) - errors
    result = PhaseResult(
        name=name,
        requests=len(latencies),
        ok=ok,
        errors=errors,
        seconds=round(wall, 3),
        rps=round(ok / wall, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 2),
        p90_ms=round(percentile(latencies, 0.90) * 1000, 2),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        max_ms=round((latencies[-1] if latencies else float("nan")) * 1000, 2),
        server_cpu=round(server_cpu, 2),
        client_cpu=round(client_cpu, 2),
        db_cpu=round(db_cpu, 2),
        other_cpu=round(other_cpu, 2),
        stopped_by="count" if issued >= max_requests else "time",
        first_error=first_error,
    )
    print(
        f"  {name}: {result.ok} ok / {result.errors} errors in {result.seconds:.1f} s = {result.rps:.0f} req/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms (server CPU {result.server_cpu:.2f}, "
        f"client CPU {result.client_cpu:.2f}, database {result.db_cpu:.2f}, other {result.other_cpu:.2f})",
        flush=True,
    )
    if first_error:
        print(f"    first error: {first_error[:300]}", flush=True)
    return result


def open_sessions(count: int, context: Any, headers: dict[str, str]) -> list[aiohttp.ClientSession]:
    return [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=1, keepalive_timeout=600),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        for _ in range(count)
    ]


async def close_sessions(sessions: Sequence[aiohttp.ClientSession]) -> None:
    await asyncio.gather(*(s.close() for s in sessions))


async def warm_up(sessions: Sequence[aiohttp.ClientSession], url: str) -> None:
    """One request per session so every keep-alive connection has done its TLS handshake."""

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as response:
            await response.read()
            if response.status != 200:
                raise BenchmarkError(f"warm-up GET {url} answered {response.status}")

    await asyncio.gather(*(one(s) for s in sessions))


def get_request(url_of: Callable[[int], str]) -> RequestFn:
    async def request(session: aiohttp.ClientSession, n: int) -> tuple[bool, str]:
        async with session.get(url_of(n)) as response:
            body = await response.read()
            if response.status != 200:
                return False, f"GET {url_of(n)} -> {response.status}: {body[:300]!r}"
        return True, ""

    return request


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Env:
    plan: Plan
    directory: Path
    orgs: dict[str, pki.OrganizationFiles]
    ca: Path
    client_context: Any
    base: str = ""
    server: ServerProcess | None = None
    pg: postgres.PostgresCluster | None = None
    db_pid: int | None = None  # the postmaster, for CPU accounting
    notes: list[str] = field(default_factory=list)


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes, str]:
    async with session.post(url, data=body, headers={"Content-Type": FHIR_JSON}) as response:
        return response.status, await response.read(), response.headers.get("Location", "")


def id_from_location(location: str) -> str:
    # .../Task/<id>/_history/<version>
    parts = location.rstrip("/").split("/")
    return parts[-3] if len(parts) >= 3 and parts[-2] == "_history" else parts[-1]


async def fetch_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        body = await response.read()
        if response.status != 200:
            raise BenchmarkError(f"GET {url} answered {response.status}: {body[:500]!r}")
        return orjson.loads(body)  # type: ignore[no-any-return]


async def baseline(env: Env, body_bytes: int, task_body: bytes) -> dict[str, PhaseResult]:
    local = env.orgs[LOCAL]
    bare = ServerProcess(
        "bare aiohttp server",
        [
            sys.executable,
            str(HERE / "bare_server.py"),
            "--cert", str(local.server.cert_path),
            "--key", str(local.server.key_path),
            "--ca", str(env.ca),
            "--body-bytes", str(body_bytes),
        ],
        env.directory / "bare.log",
        "bare: ready at ",
    )
    url = (await bare.start()).split("ready at ", 1)[1]
    print(f"bare server pid {bare.pid} at {url} (fixed {body_bytes}-byte JSON body)", flush=True)
    sessions = open_sessions(env.plan.clients, env.client_context, {"Accept": FHIR_JSON})
    results: dict[str, PhaseResult] = {}
    try:
        await warm_up(sessions, url)
        p = env.plan
        results["bare_get"] = await run_phase(
            "bare GET", sessions, get_request(lambda n: url), max_requests=p.phase_requests, seconds=p.phase_seconds, server=bare
        )

        async def post(session: aiohttp.ClientSession, n: int) -> tuple[bool, str]:
            async with session.post(url, data=task_body, headers={"Content-Type": FHIR_JSON}) as response:
                await response.read()
                return response.status == 201, f"POST bare -> {response.status}"

        results["bare_post"] = await run_phase(
            "bare POST", sessions, post, max_requests=p.phase_requests, seconds=p.phase_seconds, server=bare
        )
    finally:
        await close_sessions(sessions)
        await bare.stop()
    return results


async def task_phases(env: Env, http: aiohttp.ClientSession) -> tuple[dict[str, PhaseResult], dict[str, Any]]:
    """ActivityDefinition, first Task (checked), baseline, fill to N Tasks, read, search."""
    assert env.server is not None
    p = env.plan
    status, body, _ = await post_json(http, f"{env.base}/ActivityDefinition", orjson.dumps(activity_definition()))
    if status != 201:
        raise BenchmarkError(f"POST ActivityDefinition answered {status}, expected 201: {body[:1000].decode(errors='replace')}")
    first_task = ping_task(LOCAL)
    status, body, location = await post_json(http, f"{env.base}/Task", first_task)
    if status != 201:
        raise BenchmarkError(
            f"the first POST Task answered {status}, expected 201 — the Task or the ActivityDefinition "
            f"is not valid under the DSF rules:\n{body[:1500].decode(errors='replace')}"
        )
    ids = [id_from_location(location)]
    async with http.get(f"{env.base}/Task/{ids[0]}") as response:
        read_body = await response.read()
        if response.status != 200:
            raise BenchmarkError(f"GET Task/{ids[0]} answered {response.status}: {read_body[:500]!r}")
    info: dict[str, Any] = {"task_request_bytes": len(first_task), "task_read_bytes": len(read_body)}
    print(f"first Task {ids[0]} created; request body {len(first_task)} bytes, read response {len(read_body)} bytes", flush=True)

    results = await baseline(env, len(read_body), first_task)

    sessions = open_sessions(p.clients, env.client_context, {"Accept": FHIR_JSON})
    try:
        await warm_up(sessions, f"{env.base}/Task/{ids[0]}")

        async def create(session: aiohttp.ClientSession, n: int) -> tuple[bool, str]:
            status, body, location = await post_json(session, f"{env.base}/Task", ping_task(LOCAL))
            if status != 201:
                return False, f"POST Task -> {status}: {body[:300]!r}"
            ids.append(id_from_location(location))
            return True, ""

        print(f"filling to {p.tasks} Tasks with {p.clients} clients (limit {p.create_seconds:.0f} s)", flush=True)
        results["create"] = await run_phase(
            "Task create", sessions, create, max_requests=p.tasks - 1, seconds=p.create_seconds, server=env.server,
            db_pid=env.db_pid,
        )
        stored = int((await fetch_json(http, f"{env.base}/{COUNT}"))["total"])
        info["tasks_stored"] = stored
        if stored != p.tasks:
            env.notes.append(f"only {stored} of {p.tasks} Tasks stored (create phase stopped by {results['create'].stopped_by})")
        page = await fetch_json(http, f"{env.base}/{SEARCH}")
        if int(page.get("total", -1)) != stored or len(page.get("entry") or ()) != min(20, stored):
            raise BenchmarkError(f"{SEARCH}: total {page.get('total')} and {len(page.get('entry') or ())} entries, expected {stored} and 20")
        info["search_page_bytes"] = len(orjson.dumps(page))

        rng = random.Random(42)
        order = [rng.randrange(len(ids)) for _ in range(4096)]
        results["read"] = await run_phase(
            "Task read",
            sessions,
            get_request(lambda n: f"{env.base}/Task/{ids[order[n % len(order)]]}"),
            max_requests=p.phase_requests,
            seconds=p.phase_seconds,
            server=env.server,
            db_pid=env.db_pid,
        )
        results["search"] = await run_phase(
            f"{SEARCH}",
            sessions,
            get_request(lambda n: f"{env.base}/{SEARCH}"),
            max_requests=p.phase_requests,
            seconds=p.phase_seconds,
            server=env.server,
            db_pid=env.db_pid,
        )
        results["count"] = await run_phase(
            f"{COUNT}",
            sessions,
            get_request(lambda n: f"{env.base}/{COUNT}"),
            max_requests=p.phase_requests,
            seconds=p.phase_seconds,
            server=env.server,
            db_pid=env.db_pid,
        )
    finally:
        await close_sessions(sessions)

    get_base, post_base = results["bare_get"].rps, results["bare_post"].rps
    for key, base_key in (("create", "bare_post"), ("read", "bare_get"), ("search", "bare_get"), ("count", "bare_get")):
        base_rps = get_base if base_key == "bare_get" else post_base
        results[key].ratio = round(results[key].rps / base_rps, 3) if base_rps else None
        results[key].baseline = base_key
    info["create_ratio_vs_bare_get"] = round(results["create"].rps / get_base, 3) if get_base else None
    return results, info


async def binary_phase(env: Env, http: aiohttp.ClientSession) -> dict[str, Any]:
    assert env.server is not None
    pid = env.server.pid
    size = env.plan.binary_bytes
    orgs = await fetch_json(http, f"{env.base}/Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|{LOCAL}")
    org_id = orgs["entry"][0]["resource"]["id"]

    chunk = MiB
    block = os.urandom(chunk)
    sent = hashlib.sha256()

    async def payload() -> Any:
        remaining, i = size, 0
        while remaining > 0:
            n = min(chunk, remaining)
            piece = (i.to_bytes(8, "big") + block[8:n]) if n > 8 else block[:n]
            sent.update(piece)
            yield piece
            remaining -= n
            i += 1

    result: dict[str, Any] = {"bytes": size}
    timeout = aiohttp.ClientTimeout(total=env.plan.binary_seconds)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=env.client_context, limit=1), timeout=timeout
    ) as session:
        # upload
        peak_reset = reset_peak_rss(pid)
        result["peak_reset"] = peak_reset
        before = proc_status(pid)
        result["rss_before_mib"] = round(before["VmRSS"] / MiB, 1)
        result["hwm_before_mib"] = round(before["VmHWM"] / MiB, 1)
        sampler = RssSampler(pid)
        sampler.start()
        cpu0, db0 = proc_cpu_seconds(pid), tree_cpu_seconds(env.db_pid)
        t0 = time.perf_counter()
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Security-Context": f"Organization/{org_id}",
            "Accept": FHIR_JSON,
        }
        try:
            async with session.post(f"{env.base}/Binary", data=payload(), headers=headers) as response:
                body = await response.read()
                if response.status != 201:
                    raise BenchmarkError(f"POST Binary answered {response.status}: {body[:1000]!r}")
                location = response.headers.get("Location", "")
        finally:
            up_seconds = time.perf_counter() - t0
            await sampler.stop()
        up_cpu, up_db = proc_cpu_seconds(pid) - cpu0, tree_cpu_seconds(env.db_pid) - db0
        binary_id = id_from_location(location)
        after_up = proc_status(pid)
        up_samples = sampler.samples

        # download
        sampler = RssSampler(pid)
        sampler.start()
        cpu0, db0 = proc_cpu_seconds(pid), tree_cpu_seconds(env.db_pid)
        received = hashlib.sha256()
        got = 0
        t0 = time.perf_counter()
        try:
            async with session.get(f"{env.base}/Binary/{binary_id}", headers={"Accept": "application/octet-stream"}) as response:
                if response.status != 200:
                    raise BenchmarkError(f"GET Binary/{binary_id} answered {response.status}: {(await response.read())[:500]!r}")
                async for piece in response.content.iter_chunked(chunk):
                    received.update(piece)
                    got += len(piece)
        finally:
            down_seconds = time.perf_counter() - t0
            await sampler.stop()
        down_cpu, down_db = proc_cpu_seconds(pid) - cpu0, tree_cpu_seconds(env.db_pid) - db0
        after_down = proc_status(pid)
        down_samples = sampler.samples
    env.server.check_alive()
    if got != size or received.digest() != sent.digest():
        raise BenchmarkError(
            f"Binary round trip mismatch: sent {size} bytes sha256 {sent.hexdigest()}, got {got} bytes sha256 {received.hexdigest()}"
        )
    baseline_rss = before["VmRSS"] if peak_reset else before["VmHWM"]
    peak = max(after_up["VmHWM"], after_down["VmHWM"], *up_samples, *down_samples)
    result |= {
        "sha256": sent.hexdigest(),
        "verified": True,
        "upload_seconds": round(up_seconds, 2),
        "upload_mib_s": round(size / MiB / up_seconds, 1),
        "upload_server_cpu": round(up_cpu / up_seconds, 2),
        "upload_db_cpu": round(up_db / up_seconds, 2),
        "download_seconds": round(down_seconds, 2),
        "download_mib_s": round(size / MiB / down_seconds, 1),
        "download_server_cpu": round(down_cpu / down_seconds, 2),
        "download_db_cpu": round(down_db / down_seconds, 2),
        "hwm_after_upload_mib": round(after_up["VmHWM"] / MiB, 1),
        "hwm_after_download_mib": round(after_down["VmHWM"] / MiB, 1),
        "rss_sampled_max_upload_mib": round(max(up_samples) / MiB, 1),
        "rss_sampled_max_download_mib": round(max(down_samples) / MiB, 1),
        "rss_after_mib": round(after_down["VmRSS"] / MiB, 1),
        "peak_rss_increase_mib": round((peak - baseline_rss) / MiB, 1),
    }
    print(
        f"  Binary {size // MiB} MiB: upload {result['upload_mib_s']} MiB/s, download {result['download_mib_s']} MiB/s, "
        f"server peak RSS +{result['peak_rss_increase_mib']} MiB (baseline {baseline_rss / MiB:.0f} MiB), sha256 verified",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- report


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def machine_info(backend: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "kernel": platform.release(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_1min_at_start": Path("/proc/loadavg").read_text().split()[0],
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dsf_core_modified": bool(_git("status", "--porcelain", "--", "dsf_core")),
    }
    if backend == "postgresql":
        pg_ctl = postgres._find("pg_ctl")
        if pg_ctl:
            out = subprocess.run([pg_ctl, "--version"], capture_output=True, text=True, check=False).stdout
            match = re.search(r"\(PostgreSQL\) (\S+)", out)
            info["postgresql"] = match.group(1) if match else out.strip()
    return info


def _ms(v: float) -> str:
    return f"{v:.1f}"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def markdown(report: dict[str, Any]) -> str:
    m, plan, phases, binary = report["machine"], report["plan"], report["phases"], report.get("binary")
    db = report["backend"] + (f" {m['postgresql']}" if report["backend"] == "postgresql" and "postgresql" in m else f" {m['sqlite']}")
    lines = [
        f"### Mailbox, {db}, {plan['mode']} run — {report['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, aiohttp {m['aiohttp']}, "
        f"Linux {m['kernel']}; dsf-py {m.get('commit') or '?'}{' + local changes in dsf_core' if m.get('dsf_core_modified') else ''}. "
        f"{plan['clients']} clients with keep-alive over mTLS, server and baseline each in their own process, "
        f"{report['info'].get('tasks_stored', '?')} Tasks stored.",
        "",
        "| measurement | req/s | p50 ms | p99 ms | × bare | goal | met |",
        "|---|---:|---:|---:|---:|---|:-:|",
    ]
    for key, label in (("bare_get", "bare aiohttp GET (baseline)"), ("bare_post", "bare aiohttp POST (baseline)")):
        r = phases[key]
        lines.append(f"| {label} | {r['rps']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | 1.00 | | |")
    rows = (
        ("create", "Task create `POST Task`", "≥ 0.3 × bare POST, p99 ≤ 50 ms"),
        ("read", "Task read `GET Task/<id>`", "≥ 0.5 × bare GET"),
        ("search", f"`{SEARCH}`", "≥ 0.3 × bare GET"),
        ("count", f"`{COUNT}`", ""),
    )
    for key, label, goal in rows:
        r = phases[key]
        met = ""
        if key in GOALS:
            ok = r["ratio"] is not None and r["ratio"] >= GOALS[key]
            if key == "create":
                ok = ok and r["p99_ms"] <= GOAL_CREATE_P99_MS
            met = _mark(ok)
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        lines.append(
            f"| {label}{errors} | {r['rps']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
            f"{'–' if r['ratio'] is None else format(r['ratio'], '.2f')} | {goal} | {met} |"
        )
    lines += [
        "",
        "CPU during each phase, server / load generator / PostgreSQL / other processes (1.0 = one core busy): "
        + ", ".join(
            f"{phases[k]['name']} {phases[k]['server_cpu']:.2f} / {phases[k]['client_cpu']:.2f} / "
            f"{phases[k]['db_cpu']:.2f} / {phases[k]['other_cpu']:.2f}"
            for k in phases
        )
        + ".",
    ]
    busiest = max(phases[k]["other_cpu"] for k in phases)
    if busiest > NOISY_OTHER_CPU:
        lines += [
            "",
            f"⚠ Other processes used up to {busiest:.2f} of {m['nproc']} cores during the measurements "
            "(shared machine): absolute numbers, and to a lesser degree the ratios, are lower than on an idle machine.",
        ]
    if binary:
        size = binary["bytes"] // MiB
        label = f"{size // 1024} GiB" if size >= 1024 else f"{size} MiB"
        ok = binary["peak_rss_increase_mib"] < GOAL_BINARY_RSS_MIB
        stored = "rows in the database" if report["backend"] == "postgresql" and not plan.get("binary_files") else "files"
        lines += [
            "",
            f"| Binary {label} (raw, streamed, SHA-256 verified; payload {stored}) | MiB/s | s | server peak RSS increase | goal | met |",
            "|---|---:|---:|---:|---|:-:|",
            f"| upload `POST Binary` | {binary['upload_mib_s']:.1f} | {binary['upload_seconds']:.1f} | "
            f"{binary['hwm_after_upload_mib'] - binary['rss_before_mib']:.1f} MiB | < 100 MiB | "
            f"{_mark(binary['hwm_after_upload_mib'] - binary['rss_before_mib'] < GOAL_BINARY_RSS_MIB)} |",
            f"| download `GET Binary/<id>` | {binary['download_mib_s']:.1f} | {binary['download_seconds']:.1f} | "
            f"{binary['peak_rss_increase_mib']:.1f} MiB (both) | < 100 MiB | {_mark(ok)} |",
            "",
            f"Server RSS before {binary['rss_before_mib']:.0f} MiB, sampled max {max(binary['rss_sampled_max_upload_mib'], binary['rss_sampled_max_download_mib']):.0f} MiB, "
            f"after {binary['rss_after_mib']:.0f} MiB; server (+ PostgreSQL) CPU upload {binary['upload_server_cpu']:.2f} "
            f"(+ {binary['upload_db_cpu']:.2f}), download {binary['download_server_cpu']:.2f} (+ {binary['download_db_cpu']:.2f}).",
        ]
    for note in report.get("notes") or ():
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def run(plan: Plan, keep: bool) -> dict[str, Any]:
    machine = machine_info(plan.backend)
    directory = Path(tempfile.mkdtemp(prefix="dsf-bench-"))
    print(f"working directory {directory}", flush=True)
    env: Env | None = None
    try:
        dev = pki.DevPki.init(directory / "pki")
        orgs = {name: dev.issue_organization(name) for name in (LOCAL, REMOTE)}
        context = pki.client_ssl_context(
            cafile=dev.ca_cert_path, cert_file=orgs[LOCAL].client.cert_path, key_file=orgs[LOCAL].client.key_path
        )
        env = Env(plan, directory, orgs, dev.ca_cert_path, context)
        db_url = None
        if plan.backend == "postgresql":
            if not postgres.available():
                raise BenchmarkError("--backend postgresql: initdb/pg_ctl not found (install the PostgreSQL server package)")
            env.pg = postgres.PostgresCluster()
            await asyncio.to_thread(env.pg.start)
            db_url = await asyncio.to_thread(env.pg.create_database)
            env.db_pid = int((env.pg.directory / "data" / "postmaster.pid").read_text().split()[0])
            print(f"PostgreSQL cluster on port {env.pg.port}, postmaster pid {env.db_pid}", flush=True)
        port = free_port()
        config = write_node_toml(directory, port, orgs, dev.ca_cert_path, db_url, plan.binary_files)
        env.server = ServerProcess(
            "dsf fhir server",
            [sys.executable, "-m", "dsf_core", "fhir", "start", "--config", str(config)],
            directory / "server.log",
            "dsf fhir: ready",
        )
        env.base = (await env.server.start()).split("ready at ", 1)[1].rstrip("/")
        print(f"mailbox pid {env.server.pid} at {env.base} ({plan.backend})", flush=True)
        date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context), headers={"Accept": FHIR_JSON}, timeout=aiohttp.ClientTimeout(total=300)
        ) as http:
            phases, info = await task_phases(env, http)
            binary = await binary_phase(env, http)
        info["server_rss_end_mib"] = round(proc_status(env.server.pid)["VmRSS"] / MiB, 1)
        return {
            "date": date,
            "backend": plan.backend,
            "machine": machine,
            "plan": asdict(plan),
            "phases": {k: asdict(v) for k, v in phases.items()},
            "binary": binary,
            "info": info,
            "goals": {"ratio": GOALS, "create_p99_ms": GOAL_CREATE_P99_MS, "binary_rss_mib": GOAL_BINARY_RSS_MIB},
            "notes": env.notes,
        }
    finally:
        if env is not None and env.server is not None:
            await env.server.stop()
        if env is not None and env.pg is not None:
            await asyncio.to_thread(env.pg.stop)
        if keep:
            print(f"kept {directory}", flush=True)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the dsf-py FHIR mailbox (see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true", help="2,000 Tasks, 5 s phases, 64 MiB Binary")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--tasks", type=int, help="Tasks to store (default 10,000; 2,000 with --quick)")
    parser.add_argument("--seconds", type=float, help="time limit of each read/search/baseline phase")
    parser.add_argument("--binary-mib", type=int, help="Binary size in MiB (default 1024; 64 with --quick)")
    parser.add_argument("--binary-files", action="store_true",
                        help="PostgreSQL: Binary payloads as files (database.binary_dir), not rows (SQLite always uses files)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, database)")
    parser.add_argument("--output", type=Path, help="JSON result file (default benchmarks/results/mailbox-<backend>[-quick].json)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    if plan.tasks < 2 or plan.clients < 1:
        parser.error("--tasks must be >= 2 and --clients >= 1")
    try:
        report = asyncio.run(run(plan, args.keep))
    except BenchmarkError as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    text = markdown(report)
    print()
    print(text)
    files = "-files" if plan.binary_files and plan.backend == "postgresql" else ""
    output = args.output or RESULTS / f"mailbox-{plan.backend}{files}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report | {"markdown": text}, option=orjson.OPT_INDENT_2))
    print(f"\nresults written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
