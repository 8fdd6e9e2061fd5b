"""pytest plugin of dsf-py (entry point ``pytest11``): whole DSF networks as fixtures.

Installed with dsf-py, so a plugin author's tests can use it without imports::

    async def test_ping(dsf_network):
        net = await dsf_network(organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))],
                                plugins=[PLUGIN])
        task = await net.post_task("a.test", net.start_task("a.test", "http://dsf.dev/bpe/Process/ping|1.0",
                                   "startPing", profile="http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"))
        assert (await net.wait_for_task("a.test", task["id"]))["status"] == "completed"

``dsf_network(**kwargs)`` takes the arguments of :class:`dsf_core.testing.network.Network`
(without the directory: each network gets its own folder under the test's ``tmp_path``),
starts it and returns it; every network is stopped when the test ends. Async tests need
pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dsf_core.testing.network import Network

try:  # pytest-asyncio's decorator works in its strict mode too
    import pytest_asyncio

    _async_fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the fixture cannot run anyway
    _async_fixture = pytest.fixture

NetworkFactory = Callable[..., Awaitable[Network]]


@_async_fixture  # type: ignore[untyped-decorator]
async def dsf_network(tmp_path: Path) -> AsyncIterator[NetworkFactory]:
    """A factory of started :class:`Network` s, all stopped after the test."""
    started: list[Network] = []

    async def start(**kwargs: Any) -> Network:
        network = Network(tmp_path / f"network-{len(started) + 1}", **kwargs)
        started.append(network)
        await network.start()
        return network

    try:
        yield start
    finally:
        for network in reversed(started):
            await network.stop()
