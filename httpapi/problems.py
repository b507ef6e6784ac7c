"""Every error answer as RFC 9457 problem+json: `type`, `title`, `status`, `detail`.

`type` is the name a Python caller would see: the exception's class name
(`InputError`, `AccountNotFound`, `QueueUnavailable`, ...) or, for what only HTTP
has, a name in the same style (`Unauthorized`, `Forbidden`, `UnknownJob`,
`UnknownBulk`). FastAPI's own validation errors come out as `InputError` too, with
its field errors in `errors`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tasks.producer import QueueUnavailable
from worker.core.errors import (
    AccountNotFound,
    ConfigError,
    CredentialError,
    InputError,
    VoicemailError,
)

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"

# Most specific first: the first class an error is an instance of decides.
STATUS_OF: tuple[tuple[type[VoicemailError], int], ...] = (
    (InputError, 422),
    (AccountNotFound, 404),
    (QueueUnavailable, 503),
    (CredentialError, 500),  # the server's secret key does not open the store
    (ConfigError, 500),
)
# For HTTP errors raised by Starlette itself (an unknown route, a wrong method, ...).
TYPE_OF_STATUS = {
    400: "InputError",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "ContentTooLarge",
    415: "UnsupportedMediaType",
    422: "InputError",
}


class Problem(Exception):
    """An error answer the routes raise: `type` names it, `detail` says what happened."""

    def __init__(
        self, status: int, type_: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.type, self.detail = status, type_, detail
        self.headers = headers or {}


def problem(
    status: int,
    type_: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": type_,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def status_of(exc: VoicemailError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem(exc.status, exc.type, exc.detail, exc.headers)


async def _on_voicemail_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VoicemailError)
    status = status_of(exc)
    # Redis is back within seconds as a rule (a failover, a restart): say when to retry.
    headers = {"Retry-After": "1"} if status == 503 else None
    if status >= 500:
        logger.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return problem(status, type(exc).__name__, str(exc), headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return problem(422, "InputError", detail, errors=errors)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = TYPE_OF_STATUS.get(exc.status_code, HTTPStatus(exc.status_code).phrase.replace(" ", ""))
    return problem(exc.status_code, type_, str(exc.detail), dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log only: it may name internals a caller has no use for.
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(500, "InternalError", "the server failed to answer; see its log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(VoicemailError, _on_voicemail_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


# The shape in the OpenAPI document, for the responses each route declares.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["InputError"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem answers a route may give."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
