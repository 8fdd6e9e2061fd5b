"""The one error hierarchy of dsf-py.

Domain code raises these; exactly one place (``dsf_core.server.errors``) turns them
into an HTTP status plus a FHIR ``OperationOutcome``, and the same function builds
``Bundle.entry.response`` for batch entries.  Stack traces never reach a peer.

::

    DsfError                      500  issue code "exception"
    ├── InvalidRequest            400  "invalid"        malformed input, bad parameters
    │   └── UnsupportedParameter  400  "not-supported"  Prefer: handling=strict
    ├── Unauthorized              401  "login"          unknown certificate / credentials
    ├── Forbidden                 403  "forbidden"      an authorization rule denies
    │   └── NotValid              403  "invariant"      profile / rule violation (DSF answers 403)
    ├── NotFound                  404  "not-found"
    ├── MethodNotAllowed          405  "not-supported"  e.g. update-as-create
    ├── Conflict                  409  "conflict"
    ├── Gone                      410  "deleted"
    ├── PreconditionFailed        412  "conflict"       If-Match, multiple conditional matches
    ├── PayloadTooLarge           413  "too-costly"
    ├── UnsupportedMediaType      415  "not-supported"
    ├── Unprocessable             422  "processing"
    └── Unavailable               503  "transient"

Each error carries an optional ``expression`` (FHIRPath of the offending element) and
``headers`` to add to the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class DsfError(Exception):
    """Base of every error dsf-py maps to an HTTP response."""

    status: ClassVar[int] = 500
    issue_code: ClassVar[str] = "exception"
    severity: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        expression: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expression = tuple(expression)
        self.headers = dict(headers or {})


class InvalidRequest(DsfError):
    status = 400
    issue_code = "invalid"


class UnsupportedParameter(InvalidRequest):
    issue_code = "not-supported"


class Unauthorized(DsfError):
    status = 401
    issue_code = "login"


class Forbidden(DsfError):
    status = 403
    issue_code = "forbidden"


class NotValid(Forbidden):
    """A resource violates a DSF profile or rule; the Java DSF answers 403 for these."""

    issue_code = "invariant"


class NotFound(DsfError):
    status = 404
    issue_code = "not-found"


class MethodNotAllowed(DsfError):
    status = 405
    issue_code = "not-supported"


class Conflict(DsfError):
    status = 409
    issue_code = "conflict"


class Gone(DsfError):
    status = 410
    issue_code = "deleted"


class PreconditionFailed(DsfError):
    status = 412
    issue_code = "conflict"


class PayloadTooLarge(DsfError):
    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(DsfError):
    status = 415
    issue_code = "not-supported"


class Unprocessable(DsfError):
    status = 422
    issue_code = "processing"


class Unavailable(DsfError):
    status = 503
    issue_code = "transient"


def operation_outcome(
    message: str,
    *,
    issue_code: str = "exception",
    severity: str = "error",
    expression: Sequence[str] = (),
) -> dict[str, object]:
    """A FHIR OperationOutcome with one issue, as a JSON dict."""
    issue: dict[str, object] = {"severity": severity, "code": issue_code, "diagnostics": message}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_of(error: DsfError) -> dict[str, object]:
    return operation_outcome(
        error.message, issue_code=error.issue_code, severity=error.severity, expression=error.expression
    )
