"""Node processes run on uvloop where it is installed, on asyncio's loop when asked or without it."""

from __future__ import annotations

import asyncio
import builtins
import logging
from typing import Any

import pytest

from dsf_core import loop


async def _loop_class() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default_and_asyncio_on_request() -> None:
    assert loop.run(_loop_class()).startswith("uvloop")
    assert loop.run(_loop_class(), "asyncio").startswith("asyncio")


def test_without_uvloop_the_node_runs_on_asyncio_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    with caplog.at_level(logging.WARNING, logger="dsf_core.loop"):
        assert loop.run(_loop_class()).startswith("asyncio")
    assert "uvloop is not installed" in caplog.text
