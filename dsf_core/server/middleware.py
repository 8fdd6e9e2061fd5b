"""Middleware: identity resolution, and the one place errors become HTTP + OperationOutcome."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from dsf_core.errors import DsfError, MethodNotAllowed, NotFound, PayloadTooLarge, outcome_of
from dsf_core.server import keys
from dsf_core.server.formats import Format, dumps, fhir_response, request_format

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: DsfError, fmt: Format) -> web.Response:
    headers = dict(error.headers)
    return fhir_response(dumps(outcome_of(error), fmt), fmt, status=error.status, headers=headers)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking (the identity), then the handler; every error becomes an OperationOutcome.

    One middleware, not two: each layer costs aiohttp a wrapper coroutine per request.
    """
    try:
        request[keys.IDENTITY] = await request.app[keys.RESOLVER].identify(request)
        return await handler(request)
    except DsfError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.message)
        return error_response(exc, request_format(request))
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(PayloadTooLarge(f"request body too large ({exc.text})"), request_format(request))
    except web.HTTPNotFound:
        return error_response(NotFound(f"no such resource or path: {request.path}"), request_format(request))
    except web.HTTPMethodNotAllowed:
        return error_response(
            MethodNotAllowed(f"method {request.method} not allowed on {request.path}"), request_format(request)
        )
    except web.HTTPException:
        raise
    except Exception:
        # Stack traces stay in our log; the peer gets a generic outcome.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(DsfError("internal server error"), request_format(request))
