"""The one error a plugin raises on purpose.

``BpmnError(code)`` takes the error boundary path of the activity that raised it (the
boundary event whose ``errorCode`` equals ``code``, on the activity or an enclosing
sub-process). Any other exception from an activity is a failure: the engine retries the
activity when its model asks for retries (``camunda:failedJobRetryTimeCycle``) and then
fails the instance, setting the start Task ``failed`` with an ``error`` output.
"""

from __future__ import annotations

__all__ = ["BpmnError"]


class BpmnError(Exception):
    """Take the error boundary event with ``errorCode == code``."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message
