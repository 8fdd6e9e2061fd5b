"""Data transfer benchmark: one data set from a DIC to a DMS end to end, beside the floors of the same run.

    python benchmarks/data_transfer.py [--sizes 100,1024] [--keep]

Setup: a development network (``dsf network init``) of ``dic.test`` (DIC) and ``dms.test`` (DMS)
under ``medizininformatik-initiative.de``; each node (mailbox + engine with only the data transfer
plugin, production engine settings, SQLite) runs in its own child process; both sites' FHIR data
stores (``DataStoreServer``, SQLite) run in this process. The DMS key comes from ``dsf keys create``.

Per size (MiB): the attachment (random bytes, ``application/octet-stream``) is put into the DIC
store as a Binary, then a ``dataSendStart`` Task is posted to the DIC and timed until it is
``completed`` with ``receipt-ok``; the Binary in the DMS store is read back and its SHA-256
compared. Reported: MiB/s of the payload end to end, and each node's peak RSS increase during the
transfer (``VmHWM`` reset through ``/proc/<pid>/clear_refs`` before, read after, minus ``VmRSS``
before).

Floors, same run, same bytes: (1) AES-256-GCM over the payload in 1 MiB pieces (encrypt, then
decrypt) in this process; (2) a bare TLS copy of the payload's size between the same two ports
(the DIC mailbox's port serving, a client with the DMS's certificate reading), with the nodes
stopped: a child process sends from memory, this process reads and discards.

Prints a Markdown table and writes ``benchmarks/results/data_transfer.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MII = "medizininformatik-initiative.de"
DIC, DMS = "dic.test", "dms.test"
CHUNK = 1024 * 1024
GOAL_MIB_S = 50.0
GOAL_RSS_MIB = 150.0
ENGINE_SETTINGS = {"DSF_ENGINE_SEND_ATTEMPTS": "3", "DSF_ENGINE_SEND_RETRY_SECONDS": "2",
                   "DSF_ENGINE_RECONNECT_SECONDS": "5", "DSF_ENGINE_CATCH_UP_SECONDS": "60"}
EXCLUDED = {DIC: "medizininformatik-initiativede_dataReceive", DMS: "medizininformatik-initiativede_dataSend"}


def payload(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes: a 4 MiB random block repeated (nothing on the way compresses)."""
    block = os.urandom(4 * CHUNK)

    async def pieces() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            offset = sent % len(block)
            piece = block[offset:offset + min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece

    return pieces()


# --------------------------------------------------------------------------- child processes


def run_node(config: Path, key_file: Path, ready: str) -> None:
    """Child: one organisation's node with the data transfer plugin until SIGTERM."""
    import logging

    from dsf_plugin_data_transfer import PLUGIN

    from dsf_core.node import Node
    from dsf_core.settings import load_settings

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("dsf.plugin.data_transfer").setLevel(logging.INFO)
    logging.getLogger("dsf.bpe.engine").setLevel(logging.INFO)

    async def main() -> None:
        identifier = config.parent.name
        settings = load_settings(config, environ={**ENGINE_SETTINGS, "DSF_ENGINE_EXCLUDED_PROCESSES": EXCLUDED.get(identifier, "")})
        environ = {"DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY_FILE": str(key_file),
                   "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_RECEIPT_TIMEOUT": "PT30M",
                   "DE_MEDIZININFORMATIK_INITIATIVE_DATA_TRANSFER_WORK_DIRECTORY": str(config.parent / "work")}
        node = Node(settings, plugins=[PLUGIN], environ=environ)
        await node.start()
        await node.ready.wait()
        print(ready, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await node.stop()

    asyncio.run(main())


def run_tls_sender(port: int, cert: Path, key: Path, ca: Path, size: int, ready: str) -> None:
    """Child: a bare TLS server on ``port`` that sends ``size`` bytes to each client (the copy floor)."""
    from dsf_core import pki

    context = pki.server_ssl_context(cert, key, trust_cafile=ca)
    block = os.urandom(4 * CHUNK)

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        left = size
        while left > 0:
            piece = block[: min(len(block), left)]
            writer.write(piece)
            await writer.drain()
            left -= len(piece)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(send, "127.0.0.1", port, ssl=context)
        print(ready, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


class Child:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 300.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DSF_", "DEV_DSF_", "DE_MEDIZININFORMATIK"))}
        stderr = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                                                             cwd=REPO, env=env)
        finally:
            os.close(stderr)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if line.decode().strip() != "ready":
            raise RuntimeError(f"{self.name} did not start: see {self.log}\n{self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


# --------------------------------------------------------------------------- floors


def aes_gcm_floor(size: int) -> tuple[float, float]:
    """MiB/s of AES-256-GCM encryption and decryption over ``size`` bytes in 1 MiB pieces."""
    from cryptography.hazmat.primitives.ciphers import Cipher
    from cryptography.hazmat.primitives.ciphers.algorithms import AES
    from cryptography.hazmat.primitives.ciphers.modes import GCM

    key, iv, block = os.urandom(32), os.urandom(12), os.urandom(CHUNK)
    pieces = size // CHUNK
    t0 = time.perf_counter()
    encryptor = Cipher(AES(key), GCM(iv)).encryptor()
    for _ in range(pieces):
        encryptor.update(block)
    encryptor.finalize()
    encrypt = time.perf_counter() - t0
    t0 = time.perf_counter()
    decryptor = Cipher(AES(key), GCM(iv, encryptor.tag)).decryptor()
    for _ in range(pieces):
        decryptor.update(block)
    try:
        decryptor.finalize()
    except Exception:
        pass  # the pieces decrypted are not the ciphertext: only the speed counts here
    decrypt = time.perf_counter() - t0
    mib = size / CHUNK
    return mib / encrypt, mib / decrypt


async def tls_copy_floor(layout: Any, size: int, logs: Path) -> float:
    """MiB/s of a bare TLS copy from the DIC mailbox's port to a client with the DMS's certificate."""
    from dsf_core import pki

    dic, dms = layout.organization(DIC), layout.organization(DMS)
    port = int(dic.base_url.split(":")[2].split("/")[0])
    cert, key = _server_files(dic)
    sender = Child("tls sender", [sys.executable, str(Path(__file__)), "--tls-sender", str(port), str(cert), str(key),
                                  str(layout.ca_cert), str(size)], logs / "tls-sender.log")
    await sender.start()
    try:
        context = pki.client_ssl_context(cafile=layout.ca_cert, cert_file=dms.client_cert, key_file=dms.client_key)
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
        received = 0
        while piece := await reader.read(CHUNK):
            received += len(piece)
        elapsed = time.perf_counter() - t0
        writer.close()
        assert received == size, (received, size)
    finally:
        await sender.stop()
    return size / CHUNK / elapsed


def _server_files(org: Any) -> tuple[Path, Path]:
    from dsf_core.settings import load_settings

    settings = load_settings(org.config, environ={})
    return settings.tls.certificate, settings.tls.private_key


# --------------------------------------------------------------------------- the transfer


async def transfer(layout: Any, stores: Any, nodes: dict[str, Child], size: int) -> dict[str, Any]:
    from dsf_core.client import ClientFactory

    dic_store, dms_store = stores
    project = f"bench-{size}-{time.monotonic_ns()}"
    digest = hashlib.sha256()

    async def counted() -> AsyncIterator[bytes]:
        async for piece in payload(size):
            digest.update(piece)
            yield piece

    store_client = dic_store.client()
    binary = await store_client.create_binary(counted(), content_type="application/octet-stream")
    await store_client.create({"resourceType": "DocumentReference", "status": "current",
                               "masterIdentifier": {"system": f"http://{MII}/sid/project-identifier", "value": project},
                               "content": [{"attachment": {"contentType": "application/octet-stream", "url": f"Binary/{binary.id}"}}]})
    dic = layout.organization(DIC)
    task = {
        "resourceType": "Task", "meta": {"profile": [f"http://{MII}/fhir/StructureDefinition/task-data-send-start|1.0"]},
        "instantiatesCanonical": f"http://{MII}/bpe/Process/dataSend|1.0", "status": "requested", "intent": "order",
        "authoredOn": "2026-11-23T10:00:00Z",
        "requester": {"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": DIC}},
        "restriction": {"recipient": [{"type": "Organization",
                                       "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": DIC}}]},
        "input": [
            {"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/bpmn-message", "code": "message-name"}]},
             "valueString": "dataSendStart"},
            {"type": {"coding": [{"system": f"http://{MII}/fhir/CodeSystem/data-transfer", "code": "dms-identifier"}]},
             "valueReference": {"type": "Organization", "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": DMS}}},
            {"type": {"coding": [{"system": f"http://{MII}/fhir/CodeSystem/data-transfer", "code": "project-identifier"}]},
             "valueIdentifier": {"system": f"http://{MII}/sid/project-identifier", "value": project}},
        ],
    }
    before = {org: status(child.pid)["VmRSS"] for org, child in nodes.items()}
    for child in nodes.values():
        reset_peak(child.pid)
    async with ClientFactory.from_files(cafile=layout.ca_cert, cert_file=dic.client_cert, key_file=dic.client_key) as clients:
        client = clients.client(dic.base_url)
        t0 = time.perf_counter()
        created = await client.create(task)
        receipt: float | None = None
        while True:
            current = await client.read("Task", created.id)
            if receipt is None and any(o.get("valueCoding", {}).get("code") == "receipt-ok" for o in current.get("output", [])):
                receipt = time.perf_counter() - t0
            if current["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)  # polling period of the measurement, not a synchronisation
        elapsed = time.perf_counter() - t0
    peaks = {org: status(child.pid)["VmHWM"] for org, child in nodes.items()}
    codes = [o["valueCoding"]["code"] for o in current.get("output", []) if "valueCoding" in o]
    if current["status"] != "completed" or codes != ["receipt-ok"]:
        raise RuntimeError(f"transfer of {size} bytes ended {current['status']}: {current.get('output')}")
    arrived = hashlib.sha256()
    dms_client = dms_store.client()
    [document] = [d async for d in dms_client.search_all("DocumentReference",
                                                         {"identifier": f"http://{MII}/sid/project-identifier|{project}"})]
    received = 0
    async with dms_client.open_binary(document["content"][0]["attachment"]["url"]) as response:
        async for piece in response.content.iter_chunked(CHUNK):
            arrived.update(piece)
            received += len(piece)
    if arrived.digest() != digest.digest() or received != size:
        raise RuntimeError("the data set arrived changed")
    receipt = receipt or elapsed
    return {"seconds": elapsed, "mib_s": size / CHUNK / elapsed, "receipt_seconds": receipt, "receipt_mib_s": size / CHUNK / receipt,
            "rss_increase_mib": {org: (peaks[org] - before[org]) / CHUNK for org in nodes}}


async def run(sizes_mib: list[int], keep: bool) -> dict[str, Any]:
    from dsf_core.cli.main import main as dsf
    from dsf_core.network import OrgSpec, init_network, set_data_stores
    from dsf_core.testing.data_store import DataStoreServer

    work = Path(tempfile.mkdtemp(prefix="dsf-bench-transfer-"))
    logs = work / "logs"
    logs.mkdir()
    layout = init_network(work / "net", parent=MII, organizations=[OrgSpec(DIC, ("DIC",)), OrgSpec(DMS, ("DMS",))])
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            dsf(["keys", "create", str(work / "keys")])
        finally:
            sys.stdout = stdout
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
                               "load_average_before": os.getloadavg(), "sizes": {}}
    async with DataStoreServer(work / "dic-store") as dic_store, DataStoreServer(work / "dms-store") as dms_store:
        set_data_stores(layout.organization(DIC).config, {"default": dic_store.settings()})
        set_data_stores(layout.organization(DMS).config, {"default": dms_store.settings()})
        nodes = {org: Child(org, [sys.executable, str(Path(__file__)), "--node", str(layout.organization(org).config),
                                  str(work / "keys" / "dms.key")], logs / f"{org}.log") for org in (DIC, DMS)}
        try:
            await asyncio.gather(*(child.start() for child in nodes.values()))
            for size_mib in sizes_mib:
                print(f"transferring {size_mib} MiB …", file=sys.stderr)
                results["sizes"][str(size_mib)] = await transfer(layout, (dic_store, dms_store), nodes, size_mib * CHUNK)
        finally:
            await asyncio.gather(*(child.stop() for child in nodes.values()))
        for size_mib in sizes_mib:
            size = size_mib * CHUNK
            encrypt, decrypt = aes_gcm_floor(size)
            copy = await tls_copy_floor(layout, size, logs)
            results["sizes"][str(size_mib)]["floors"] = {"aes_gcm_encrypt_mib_s": encrypt, "aes_gcm_decrypt_mib_s": decrypt,
                                                          "tls_copy_mib_s": copy}
    results["cpus"] = os.cpu_count()
    results["load_average_after"] = os.getloadavg()
    if keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return results


def _commit() -> str:
    import subprocess

    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def table(results: dict[str, Any]) -> str:
    lines = ["| size | to receipt-ok | to Task completed (Binary deleted) | DIC node peak RSS increase | "
             "DMS node peak RSS increase | floor: AES-GCM encrypt / decrypt | floor: bare TLS copy |",
             "|---|---|---|---|---|---|---|"]
    for size, r in results["sizes"].items():
        f = r["floors"]
        lines.append(
            f"| {size} MiB | {r['receipt_mib_s']:.1f} MiB/s ({r['receipt_seconds']:.1f} s) | {r['mib_s']:.1f} MiB/s ({r['seconds']:.1f} s) | "
            f"{r['rss_increase_mib'][DIC]:.0f} MiB | "
            f"{r['rss_increase_mib'][DMS]:.0f} MiB | {f['aes_gcm_encrypt_mib_s']:.0f} / {f['aes_gcm_decrypt_mib_s']:.0f} MiB/s | "
            f"{f['tls_copy_mib_s']:.0f} MiB/s |")
    lines.append(f"\nGoals: ≥ {GOAL_MIB_S:.0f} MiB/s end to end; ≤ {GOAL_RSS_MIB:.0f} MiB peak RSS increase per node at 1 GiB.")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        run_node(Path(sys.argv[2]), Path(sys.argv[3]), "ready")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--tls-sender":
        port, cert, key, ca, size = sys.argv[2:7]
        run_tls_sender(int(port), Path(cert), Path(key), Path(ca), int(size), "ready")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1024", help="data set sizes in MiB (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    results = asyncio.run(run([int(s) for s in args.sizes.split(",")], args.keep))
    print(table(results))
    out = HERE / "results" / "data_transfer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
