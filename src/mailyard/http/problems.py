"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the service answers has a stable ``type``: ``urn:mailyard:problem:<code>``,
a name rather than a link (the same in every installation, so a client can match on
it), and the same ``code`` as an extension member.  ``title`` is fixed per type,
``detail`` says what happened this time, ``instance`` is the request path.  A
validation error lists the fields (``errors``: location and message).  An unexpected
exception is logged with its traceback and answered with a bare 500 problem: nothing
of the code reaches the client.  A full disk (ENOSPC, EDQUOT, SQLite's "database or
disk is full"), whether a service reported it or not, is ``507 insufficient_storage``
(RFC 4918 11.5) with ``Retry-After``, logged in one line: nothing was done, and the
same request may be sent again once space is freed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailyard.fs import disk_full
from mailyard.obs import log_event
from mailyard.services.errors import (
    Conflict,
    Expired,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceError,
    StorageFailure,
    TooLarge,
)

log = logging.getLogger("mailyard.http")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:mailyard:problem:"

# code -> (status, title): the problems the HTTP layer itself raises.
TITLES: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "Authentication required"),
    "forbidden_scope": (403, "The API key lacks the scope this needs"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "body_too_large": (413, "Request body too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_failed": (422, "The request is not valid"),
    "rate_limited": (429, "Too many requests"),
    "internal_error": (500, "Internal error"),
    "insufficient_storage": (507, "Insufficient storage"),
}
DISK_FULL_RETRY_AFTER = 60  # seconds: for a client's retry once space is freed

_SERVICE_STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (InvalidInput, 422), (Forbidden, 403), (NotFound, 404), (Conflict, 409), (Expired, 410),
    (TooLarge, 413), (StorageFailure, 503))


class ProblemDocument(BaseModel):
    """The shape of every error (for the OpenAPI schema)."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: these statuses answer a problem document."""
    return {status: {"model": ProblemDocument, "description": "RFC 9457 problem document"}
            for status in statuses}


def problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI files a response model under ``application/json``; the problem documents
    go out as ``application/problem+json``, so the schema says that."""
    ref = "#/components/schemas/ProblemDocument"
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if content.get("application/json", {}).get("schema", {}).get("$ref") == ref:
                    content[MEDIA_TYPE] = content.pop("application/json")
    return schema


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, code: str, detail: str = "", *, status: int | None = None,
                 title: str | None = None, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        default_status, default_title = TITLES.get(code, (500, code.replace("_", " ")))
        super().__init__(detail or default_title)
        self.code = code
        self.status = status or default_status
        self.title = title or default_title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_response(problem: Problem, instance: str = "") -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_PREFIX + problem.code, "title": problem.title,
                            "status": problem.status, "code": problem.code}
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    return JSONResponse(body, status_code=problem.status, headers=problem.headers,
                        media_type=MEDIA_TYPE)


def insufficient_storage() -> Problem:
    """The answer to a request refused because the disk is full."""
    return Problem("insufficient_storage", "the server's disk is full; nothing was done, "
                   "try again later", headers={"Retry-After": str(DISK_FULL_RETRY_AFTER)})


def _disk_full(request: Request, exc: Exception) -> JSONResponse:
    log_event(log, "request refused: disk full", level=logging.WARNING,
              path=request.url.path, method=request.method, error=str(exc))
    return problem_response(insufficient_storage(), request.url.path)


STORAGE_FAILED_DETAIL = "the server's storage failed; try again later"


def from_service(exc: ServiceError) -> Problem:
    """The problem for a service's refusal.  A storage failure's message is for the
    operator (it may name files or database errors): logged, and answered with a
    fixed ``detail``."""
    status = next((s for cls, s in _SERVICE_STATUS if isinstance(exc, cls)), 500)
    title = exc.code.replace("_", " ").capitalize()
    detail = str(exc)
    if isinstance(exc, StorageFailure):
        log_event(log, "request failed: storage", level=logging.ERROR, code=exc.code,
                  error=detail)
        detail = STORAGE_FAILED_DETAIL
    return Problem(exc.code, detail, status=status, title=title)


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type"}


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if disk_full(exc):
        return _disk_full(request, exc)
    log_event(log, "request failed", level=logging.ERROR, path=request.url.path,
              method=request.method, error=type(exc).__name__, exc_info=exc)
    return problem_response(Problem("internal_error"), request.url.path)


class _AnswerBugs:
    """ASGI middleware: an exception no handler took (a bug, or a full disk met
    outside the services) is logged and answered with a bare 500 problem (507 for a
    full disk) if no response has started, and goes no further."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            response = _unexpected(Request(scope), exc)
            if not started:  # else the client sees the connection end mid-answer
                await response(scope, receive, send)


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_service(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        if isinstance(exc, StorageFailure) and disk_full(exc):
            return _disk_full(request, exc)
        return problem_response(from_service(exc), request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"location": ".".join(str(p) for p in e.get("loc", ())),
                   "message": str(e.get("msg", ""))} for e in exc.errors()[:50]]
        problem = Problem("validation_failed", "see errors", extra={"errors": errors})
        return problem_response(problem, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        problem = Problem(code, str(exc.detail) if exc.detail else "",
                          status=exc.status_code, headers=exc.headers)
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ServiceError, on_service)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Not a handler for Exception: Starlette gives that one to its outermost
    # middleware, which raises the error again after answering (a traceback on the
    # server's stderr, the connection closed).  This middleware sits inside it.
    app.add_middleware(_AnswerBugs)
