"""A throwaway PostgreSQL cluster for tests (initdb + pg_ctl on a free loopback port).

``initdb`` refuses to run as root, so as root the cluster is created and run as the
``postgres`` system user.  ``PostgresCluster.create_database()`` hands out a fresh
database per test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for version in ("17", "16", "15", "14", "13"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{binary}")
        if candidate.exists():
            return str(candidate)
    return None


def available() -> bool:
    return _find("initdb") is not None and _find("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dsf-pg-"))
        self.port = _free_port()
        self.user = "dsf"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_root:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in command)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self._as_root:
            shutil.chown(self.directory, "postgres")
        data = self.directory / "data"
        initdb, pg_ctl = _find("initdb"), _find("pg_ctl")
        assert initdb and pg_ctl
        self._run(initdb, "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run(pg_ctl, "-D", str(data), "-o", options, "-l", str(self.directory / "pg.log"), "-w", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self._run(_find("psql") or "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                  "-c", f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = _find("pg_ctl")
        if pg_ctl:
            try:
                self._run(pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
