"""Bearer API keys on the ``/api/v1`` routes, one scope per route.

No key, a malformed, unknown or revoked one: 401 with ``WWW-Authenticate: Bearer``
(RFC 6750 3).  A valid key without the route's scope: 403.  The key itself is never
logged nor echoed; checking it is a database read, done on the thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from mailyard.apikeys.api import ApiKey, Scope, allows
from mailyard.http.context import HttpContext
from mailyard.http.problems import Problem

bearer = HTTPBearer(auto_error=False, description="An API key from `mailyard apikey create`")


def context(request: Request) -> HttpContext:
    ctx: HttpContext = request.app.state.ctx
    return ctx


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    async def check(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> ApiKey:
        challenge = {"WWW-Authenticate": 'Bearer realm="mailyard"'}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem("unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                          headers=challenge)
        key = await run_in_threadpool(context(request).apikeys.authenticate,
                                      credentials.credentials.strip())
        if key is None:
            raise Problem("unauthorized", "the API key is not valid (unknown or revoked)",
                          headers={"WWW-Authenticate":
                                   'Bearer realm="mailyard", error="invalid_token"'})
        if not allows(key.scopes, scope):
            raise Problem("forbidden_scope", f"this needs the '{scope}' scope; the key has "
                          f"{', '.join(sorted(key.scopes))}",
                          headers={"WWW-Authenticate": f'Bearer realm="mailyard", '
                                   f'error="insufficient_scope", scope="{scope}"'})
        return key
    return check
