"""The ASGI application: FastAPI (on Starlette), its OpenAPI schema at
``/api/openapi.json`` and the docs page at ``/api/docs``, the problem-document error
handlers, and the request body cap around everything; in front of all, the open
pixel and click redirect in plain ASGI (:class:`mailyard.http.tracking.TrackingFront`)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from mailyard import __version__
from mailyard.http import api, campaigns, messages, problems, public, reports, tracking
from mailyard.http.bodylimit import BodyLimit
from mailyard.http.context import HttpContext

_IMPORT_PATH = re.compile(r"/api/v1/(lists/[^/]+|contacts)/import")


def create_app(ctx: HttpContext) -> Any:
    """The application wrapped in the body cap and the tracking front (an ASGI
    callable)."""
    app = FastAPI(title="Mailyard", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json",
                  description="Transactional messages, contacts, lists, memberships, "
                              "suppression and campaigns. Authenticate "
                              "with `Authorization: Bearer <key>` (`mailyard apikey create`); "
                              "errors are RFC 9457 problem documents.")
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(api.router)
    app.include_router(campaigns.router)
    app.include_router(messages.router)
    app.include_router(public.router)
    app.include_router(tracking.router)
    app.include_router(reports.api)
    app.include_router(reports.pages)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.problem_media_types(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def limit_for(method: str, path: str) -> int | None:
        if method == "POST" and _IMPORT_PATH.fullmatch(path):
            return ctx.max_import_size
        return None

    return tracking.TrackingFront(BodyLimit(app, ctx.max_body_size, limit_for), ctx)
