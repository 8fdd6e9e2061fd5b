"""What the engine writes to its local mailbox: Task statuses and outputs, amended QuestionnaireResponses.

Writes happen after the instance was saved (so a crash repeats them rather than losing them)
and never raise into the engine's loop: a refused or failed write is logged with the instance
and the resource; a restarted engine writes the statuses of its open Tasks again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dsf_core.api.tasks import error_output
from dsf_core.bpe.instance import Instance
from dsf_core.client import FhirClient, FhirClientError

__all__ = ["MailboxWriter"]

log = logging.getLogger("dsf.bpe.engine")


class MailboxWriter:
    def __init__(self, local: FhirClient) -> None:
        self._local = local

    async def write_failed(self, task: dict[str, Any], reason: str) -> None:
        failed = dict(task)
        failed["status"] = "failed"
        failed["output"] = [*task.get("output", []), error_output(reason)]
        try:
            await self._local.update(failed)
        except FhirClientError as exc:
            log.error("Task/%s: cannot set failed: %s", task.get("id"), exc)

    async def flush_tasks(self, instance: Instance) -> None:
        """Write the Tasks whose status changed: received ones concurrently, the start Task last,
        so whoever watches the start Task finds the others written when it completes."""
        dirty = sorted(instance.dirty_tasks)
        instance.dirty_tasks.clear()
        others = [t for t in dirty if t != instance.start_task_id]
        await asyncio.gather(*(self.flush_task(instance, t) for t in others))
        if instance.start_task_id in dirty:
            await self.flush_task(instance, instance.start_task_id)

    async def flush_task(self, instance: Instance, task_id: str | None) -> None:
        task = instance.tasks.get(task_id) if task_id is not None else None
        if task_id is None or task is None:
            return
        try:
            stored = await self.put_task(task, from_requested=task_id in instance.unwritten)
        except FhirClientError as exc:
            log.error("instance %s: cannot write Task/%s (%s): %s", instance.id, task_id, task.get("status"), exc)
            return
        instance.tasks[task_id] = stored
        instance.unwritten.discard(task_id)

    async def put_task(self, task: dict[str, Any], *, from_requested: bool) -> dict[str, Any]:
        """Write a Task's status; one the mailbox still has ``requested`` goes through ``in-progress``
        (the mailbox allows no other way to ``completed``), e.g. when the message that started or
        reached the instance also ended it in the same step."""
        if from_requested and task.get("status") == "completed":
            step = {k: v for k, v in task.items() if k != "output"}  # requested → in-progress: no outputs yet
            step["status"] = "in-progress"
            task = {**task, "meta": (await self._local.update(step)).get("meta", task.get("meta"))}
        return await self._local.update(task)

    async def flush_responses(self, instance: Instance) -> None:
        for response_id, response in sorted(instance.dirty_responses.items()):
            try:
                await self._local.update(response)
            except FhirClientError as exc:
                log.error("instance %s: cannot set QuestionnaireResponse/%s amended: %s", instance.id, response_id, exc)
        instance.dirty_responses.clear()

    async def write_task(self, task: dict[str, Any]) -> None:
        try:
            stored = await self._local.update(task)
        except FhirClientError as exc:
            raise RuntimeError(f"cannot write Task/{task.get('id')}: {exc}") from exc
        task.clear()
        task.update(stored)
