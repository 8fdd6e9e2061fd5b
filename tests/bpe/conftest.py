"""Markers of the engine tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "models(*names): the bpmn/ conformance models (file stems) a test's harness deploys")
