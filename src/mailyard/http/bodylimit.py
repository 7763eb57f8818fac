"""A cap on request bodies, enforced before the application reads them.

A ``Content-Length`` over the cap is refused at once (413, nothing read); a body
without one (chunked) is counted as it arrives and refused when it passes the cap, so
no route ever holds more than the cap in memory.  The import route has its own,
larger cap (``http.max_import_size``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailyard.http.problems import Problem, problem_response


class BodyTooLarge(HTTPException):
    """An HTTPException (413), so that FastAPI's body parsing passes it on as it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int,
                 limit_for: Callable[[str, str], int | None] = lambda m, p: None) -> None:
        self.app = app
        self.limit = limit
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"]) or self.limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    problem = Problem("body_too_large", f"the request body is over {limit} "
                                      "bytes", headers={"connection": "close"})
                    response = problem_response(problem, scope["path"])
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
