"""Shared fixtures: database backends (SQLite always, PostgreSQL when initdb is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dsf_core.testing import postgres

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.PostgresCluster]:
    if not postgres.available():
        pytest.skip("PostgreSQL (initdb) not installed")
    cluster = postgres.PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fhir.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.skip(f"reference files not found at {REFERENCE}")
    return REFERENCE
