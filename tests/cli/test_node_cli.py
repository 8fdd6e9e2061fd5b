"""``dsf network up`` and ``dsf node start`` as real processes: ready line, network.json, a ping, clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from dsf_core.client import ClientFactory
from dsf_core.network import OrgSpec, init_network

PING = "http://dsf.dev/bpe/Process/ping|1.0"


async def read_until(process: asyncio.subprocess.Process, marker: bytes, timeout: float = 90.0) -> bytes:
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + timeout
    while marker not in output:
        line = await asyncio.wait_for(process.stdout.readline(), max(0.1, deadline - time.monotonic()))
        assert line, f"process exited early: {output.decode()}"
        output += line
    return output


async def test_network_up_runs_every_node_and_pings(tmp_path: Path) -> None:
    layout = init_network(tmp_path / "net", parent="p.test",
                          organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("HRP",))])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "network", "up", str(layout.directory),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output = await read_until(process, b"ready")
        assert b"a.test" in output and b"b.test" in output
        network = json.loads((layout.directory / "network.json").read_text())
        assert network["parent"] == "p.test" and Path(network["ca_cert"]).is_absolute()
        a = next(o for o in network["organizations"] if o["identifier"] == "a.test")
        assert a["roles"] == ["DIC"] and a["fhir_base_url"].startswith("https://127.0.0.1:")
        async with ClientFactory.from_files(cafile=Path(network["ca_cert"]), cert_file=Path(a["client_cert"]),
                                            key_file=Path(a["client_key"])) as clients:
            fhir = clients.client(a["fhir_base_url"])
            created = await fhir.create({
                "resourceType": "Task", "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"]},
                "instantiatesCanonical": PING, "status": "requested", "intent": "order",
                "authoredOn": "2026-11-23T10:00:00Z",
                "requester": {"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "a.test"}},
                "restriction": {"recipient": [{"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "a.test"}}]},
                "input": [{"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/bpmn-message", "code": "message-name"}]}, "valueString": "startPing"}],
            })
            deadline = time.monotonic() + 30
            while (task := await fhir.read("Task", created.id))["status"] not in ("completed", "failed"):
                assert time.monotonic() < deadline, task
                await asyncio.sleep(0.1)
            assert task["status"] == "completed"
            codes = [o["valueCoding"]["code"] for o in task["output"] if o["type"]["coding"][0]["code"] == "ping-status"]
            assert codes == ["pong-received"]
        ping = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dsf_core", "network", "ping", str(layout.directory), "--from", "b.test",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(ping.communicate(), 90)
        assert ping.returncode == 0, err.decode()
        assert b"completed" in out and b"a.test" in out and b"pong-received" in out
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0


async def test_node_start_reports_its_processes_and_stops(tmp_path: Path) -> None:
    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("solo.test", ("DIC",))])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "node", "start", "--config", str(layout.organizations[0].config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output = await read_until(process, b"ready at")
        assert b"dsfdev_ping|1.0" in output and b"dsfdev_helloWorld|1.0" in output
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0


async def test_network_up_without_manifest_fails_clearly(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "network", "up", str(tmp_path / "missing"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"network.toml" in stderr


async def test_mailbox_and_engine_as_separate_processes(tmp_path: Path) -> None:
    """The mailbox alone (`dsf fhir start`, as in a DMZ) and the engine alone (`dsf node start --engine-only`)."""
    import os

    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("split.test", ("DIC",))])
    org = layout.organizations[0]
    config = str(org.config)
    env = {**os.environ, "DSF_ENGINE_TRUST_SERVER_CAS": str(layout.ca_cert)}
    mailbox = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "fhir", "start", "--config", config,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    engine = None
    try:
        clients = ClientFactory.from_files(cafile=layout.ca_cert, cert_file=org.client_cert, key_file=org.client_key)
        async with clients:
            client = clients.client(org.base_url)
            deadline = time.monotonic() + 60
            while True:  # the mailbox accepts connections
                try:
                    await client.search("Organization")
                    break
                except Exception:
                    assert time.monotonic() < deadline, "mailbox did not start"
                    await asyncio.sleep(0.2)
            engine = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dsf_core", "node", "start", "--engine-only", "--config", config,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
            )
            output = await read_until(engine, b"ready at")
            assert b"engine of the mailbox" in output and b"dsfdev_ping|1.0" in output
            task = {
                "resourceType": "Task", "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/task-hello-world|1.0"]},
                "instantiatesCanonical": "http://dsf.dev/bpe/Process/helloWorld|1.0", "status": "requested",
                "intent": "order", "authoredOn": "2026-11-23T10:00:00Z",
                "requester": {"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "split.test"}},
                "restriction": {"recipient": [{"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": "split.test"}}]},
                "input": [{"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/bpmn-message", "code": "message-name"}]},
                           "valueString": "helloWorld"}],
            }
            created = await client.create(task)
            deadline = time.monotonic() + 60
            while (await client.read("Task", created.id))["status"] != "completed":
                assert time.monotonic() < deadline, "the engine did not run the Task"
                await asyncio.sleep(0.1)
    finally:
        for process in (engine, mailbox):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 60)
