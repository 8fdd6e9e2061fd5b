"""A received Task as a BPMN message: which process, which message, which instance.

The Java DSF reads ``instantiatesCanonical`` strictly
(``http[s]://<domain>/bpe/Process/<name>|<major.minor>``); the process definition key is the
domain without dots, ``_``, the name (``http://dsf.dev/bpe/Process/ping|1.0`` →
``dsfdev_ping`` version ``1.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dsf_core.api.tasks import message_input
from dsf_core.fhir.codes import BPMN_MESSAGE, INSTANTIATES_CANONICAL_PATTERN

__all__ = ["MessageError", "TaskMessage", "process_key"]

_CANONICAL = re.compile(INSTANTIATES_CANONICAL_PATTERN)


class MessageError(ValueError):
    """The Task cannot be a message: the reason goes into its ``error`` output."""


def process_key(instantiates_canonical: str) -> tuple[str, str]:
    """``(process id, version)`` named by an ``instantiatesCanonical``."""
    match = _CANONICAL.match(instantiates_canonical or "")
    if match is None:
        raise MessageError(f"instantiatesCanonical {instantiates_canonical!r} is not http(s)://<domain>/bpe/Process/<name>|<a.b>")
    domain = match["domain"].replace(".", "")
    return f"{domain}_{match['name']}", match["version"]


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    process_id: str
    version: str
    message_name: str
    business_key: str | None
    correlation_key: str | None

    @classmethod
    def of(cls, task: dict[str, Any]) -> TaskMessage:
        names = [
            p.get("valueString")
            for p in task.get("input", [])
            if any(
                c.get("system") == BPMN_MESSAGE and c.get("code") == "message-name"
                for c in p.get("type", {}).get("coding", [])
            )
        ]
        if len(names) != 1 or not isinstance(names[0], str) or not names[0]:
            raise MessageError("the Task needs exactly one input message-name")
        process_id, version = process_key(task.get("instantiatesCanonical", ""))
        return cls(
            task_id=str(task.get("id")),
            process_id=process_id,
            version=version,
            message_name=names[0],
            business_key=message_input(task, "business-key"),
            correlation_key=message_input(task, "correlation-key"),
        )
