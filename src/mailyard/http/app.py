"""The ASGI application: FastAPI (on Starlette), its OpenAPI schema at
``/api/openapi.json`` and the docs page at ``/api/docs``, the problem-document error
handlers, and the request body cap around everything."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from mailyard import __version__
from mailyard.http import api, messages, problems, public
from mailyard.http.bodylimit import BodyLimit
from mailyard.http.context import HttpContext

_IMPORT_PATH = re.compile(r"/api/v1/(lists/[^/]+|contacts)/import")


def create_app(ctx: HttpContext) -> Any:
    """The application wrapped in the body cap (an ASGI callable)."""
    app = FastAPI(title="Mailyard", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json",
                  description="Transactional messages, contacts, lists, memberships and "
                              "suppression. Authenticate "
                              "with `Authorization: Bearer <key>` (`mailyard apikey create`); "
                              "errors are RFC 9457 problem documents.")
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(api.router)
    app.include_router(messages.router)
    app.include_router(public.router)
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

    return BodyLimit(app, ctx.max_body_size, limit_for)
