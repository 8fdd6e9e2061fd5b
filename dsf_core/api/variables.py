"""What an activity sees of its process instance: :class:`Variables`.

Variables are the instance's process variables (JSON-native values: str, int, float,
bool, None, lists and dicts of them — they are persisted after every step), plus the FHIR
Tasks of the instance: the Task that started it and every Task delivered to it since.
Inside a multi-instance branch, ``target`` is the branch's element variable and
``correlation_key`` the branch's correlation key.

Changes to a Task returned here (status, outputs) are written to the local mailbox by
the engine when the instance ends; ``update_task`` writes one at once.
"""

from __future__ import annotations

from typing import Any, Protocol

from dsf_core.api.targets import Target, Targets

__all__ = ["Variables"]


class Variables(Protocol):
    @property
    def business_key(self) -> str:
        """The instance's business key (sent as ``business-key`` with every message)."""

    @property
    def correlation_key(self) -> str | None:
        """The correlation key of the current multi-instance branch (variable ``correlationKey``)."""

    @property
    def start_task(self) -> dict[str, Any]:
        """The Task whose message started the instance."""

    @property
    def latest_task(self) -> dict[str, Any]:
        """The Task most recently delivered to this branch of the instance (the start Task at first)."""

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every Task of the instance, the start Task first."""

    def get(self, name: str, default: Any = None) -> Any:
        """The variable ``name``, or ``default`` when it is not set."""

    def has(self, name: str) -> bool: ...

    def set(self, name: str, value: Any) -> None:
        """Set a variable; ``value`` must be JSON-native (it is persisted as JSON)."""

    def remove(self, name: str) -> None: ...

    @property
    def target(self) -> Target | None:
        """The variable ``target`` (the element variable of a fan-out branch, or set by an activity)."""

    def set_target(self, target: Target) -> None: ...

    @property
    def targets(self) -> Targets:
        """The variable ``targets`` (empty when not set)."""

    def set_targets(self, targets: Targets) -> None: ...

    async def update_task(self, task: dict[str, Any]) -> None:
        """Write ``task`` (one of :attr:`tasks`, e.g. with new outputs) to the local mailbox now."""
