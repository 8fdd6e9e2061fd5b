"""``dsf fhir start`` as a real process: starts, serves over mTLS, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from dsf_core import pki
from dsf_core.testing.mailbox import bind_free_port


def node_toml(tmp_path: Path, port: int, org: pki.OrganizationFiles, ca: Path) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(
        f"""
[node]
data_dir = "data"
[server]
port = {port}
base_url = "https://127.0.0.1:{port}/fhir"
[tls]
certificate = "{org.server.cert_path}"
private_key = "{org.server.key_path}"
trust_client_cas = "{ca}"
[organization]
identifier = "cli.test"
client_certificate = "{org.client.cert_path}"
"""
    )
    return config


async def test_start_serve_and_stop(tmp_path: Path) -> None:
    dev = pki.DevPki.init(tmp_path / "pki")
    org = dev.issue_organization("cli.test")
    sock = bind_free_port()
    port = sock.getsockname()[1]
    sock.close()
    config = node_toml(tmp_path, port, org, dev.ca_cert_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "fhir", "start", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output = b""
        while b"ready" not in output:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"server exited early: {output.decode()}"
            output += line
        context = pki.client_ssl_context(cafile=dev.ca_cert_path, cert_file=org.client.cert_path, key_file=org.client.key_path)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            response = await http.get(f"https://127.0.0.1:{port}/fhir/Organization", headers={"Accept": "application/fhir+json"})
            assert response.status == 200
            assert (await response.json())["entry"][0]["resource"]["identifier"][0]["value"] == "cli.test"
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0


async def test_bad_config_exits_2_with_message(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[server]\nport = 'x'\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dsf_core", "fhir", "start", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"server.port" in stderr and str(config).encode() in stderr
