"""Where a message goes: one :class:`Target` per recipient, :class:`Targets` for a fan-out.

Targets travel as process variables in the shape BPMN expressions expect: the variable
``targets`` is ``{"entries": [...]}`` so a multi-instance sub-process iterates
``camunda:collection="${targets.entries}"`` with ``camunda:elementVariable="target"``, and
each entry is a plain mapping with the keys below (camelCase, as the Java DSF names them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Target", "Targets"]


@dataclass(frozen=True)
class Target:
    """One recipient: an organisation and the endpoint its mailbox listens on.

    ``correlation_key`` tells the replies of one multi-instance branch from another's; a
    target outside a fan-out has none.
    """

    organization_identifier: str
    endpoint_identifier: str | None
    endpoint_url: str
    correlation_key: str | None = None

    def with_correlation_key(self, key: str | None = None) -> Target:
        """A copy with ``key`` or a fresh random correlation key."""
        return replace(self, correlation_key=key or str(uuid.uuid4()))

    def to_variable(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "organizationIdentifier": self.organization_identifier,
            "endpointIdentifier": self.endpoint_identifier,
            "endpointUrl": self.endpoint_url,
        }
        if self.correlation_key is not None:
            value["correlationKey"] = self.correlation_key
        return value

    @classmethod
    def from_variable(cls, value: Mapping[str, Any]) -> Target:
        try:
            return cls(
                organization_identifier=str(value["organizationIdentifier"]),
                endpoint_identifier=value.get("endpointIdentifier"),
                endpoint_url=str(value["endpointUrl"]),
                correlation_key=value.get("correlationKey"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a target variable: {value!r}") from exc


@dataclass(frozen=True)
class Targets:
    """An ordered set of targets (the ``targets`` variable)."""

    entries: tuple[Target, ...] = ()

    @classmethod
    def of(cls, targets: Iterable[Target]) -> Targets:
        return cls(tuple(targets))

    def __iter__(self) -> Iterator[Target]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def by_correlation_key(self, key: str) -> Target | None:
        return next((t for t in self.entries if t.correlation_key == key), None)

    def without(self, target: Target) -> Targets:
        return Targets(tuple(t for t in self.entries if t != target))

    def to_variable(self) -> dict[str, Any]:
        return {"entries": [t.to_variable() for t in self.entries]}

    @classmethod
    def from_variable(cls, value: Mapping[str, Any]) -> Targets:
        entries = value.get("entries") if isinstance(value, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError(f"not a targets variable: {value!r}")
        return cls(tuple(Target.from_variable(e) for e in entries))
