"""The public campaign endpoints: the open pixel, the click redirect, the unsubscribe
page and RFC 8058 one-click unsubscribe.  No API key: the signed token in the path is
the credential (:mod:`mailyard.bulk.tracking`).

* ``GET|HEAD /t/o/<token>.gif`` always answers the transparent GIF, 200, never
  cached, whatever the token: the image tells nobody whether a token is genuine.  A
  genuine open token of a campaign that tracks records an ``opened`` event; anything
  else records nothing.
* ``GET|HEAD /t/c/<token>`` answers 302 to the campaign's stored link at the token's
  index.  A forged, altered or out-of-range token, or an unknown campaign, is 404:
  the endpoint never sends anyone elsewhere (no open redirect).  A campaign with
  tracking off still redirects but records nothing.
* ``GET /u/<token>`` shows what the link would do and a button; it changes nothing,
  since mail scanners fetch links.  ``POST /u/<token>`` unsubscribes, whatever the
  body (the page's button, or ``List-Unsubscribe=One-Click`` from a mail client,
  RFC 8058 3.2, in any content type).

Recording is not on the request path: a hit goes into the worker's buffer
(:class:`mailyard.services.tracking.HitRecorder`) and the answer goes out at once;
the campaign's link list and tracking switch come from a per-process cache.
"""

from __future__ import annotations

import html
import logging
import sqlite3
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from mailyard.bulk.engagement import Hit
from mailyard.bulk.tracking import (
    OPEN_SUFFIX,
    TRANSPARENT_GIF,
    TokenKind,
    TrackingToken,
    click_target,
)
from mailyard.http.auth import context
from mailyard.http.context import HttpContext
from mailyard.http.problems import Problem, from_service, problem_response
from mailyard.http.public import _error, _page, _wants_json
from mailyard.obs import log_event
from mailyard.services.errors import ServiceError
from mailyard.services.tracking import CampaignPublic, CampaignView
from mailyard.services.unsubscribe import ONE_CLICK, PAGE, is_one_click

log = logging.getLogger("mailyard.http")
router = APIRouter(tags=["public"])

NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
            "Pragma": "no-cache", "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
            "X-Robots-Tag": "noindex"}
_NO_STORE_RAW = [(k.lower().encode("ascii"), v.encode("ascii")) for k, v in NO_STORE.items()]
_GIF_HEADERS = [*_NO_STORE_RAW, (b"content-type", b"image/gif"),
                (b"content-length", str(len(TRANSPARENT_GIF)).encode("ascii"))]
_REDIRECT_HEADERS = [*_NO_STORE_RAW, (b"referrer-policy", b"no-referrer"),
                     (b"content-length", b"0")]
#: Characters left as they are in a Location value (RFC 3986 reserved and unreserved,
#: and "%" so an escaped link is not escaped twice).
_URL_SAFE = ":/?#[]@!$&'()*+,;=-._~%"


def _not_found() -> Problem:
    return Problem("not_found", "no such link")


def _public(request: Request) -> CampaignPublic:
    found = context(request).campaign_public
    if found is None:
        raise _not_found()
    return found


class TrackingFront:
    """The pixel and click paths answered in plain ASGI, in front of the application.

    These two take almost all of the service's traffic and do nothing a framework
    helps with: FastAPI's routing and dependency machinery would cost several times
    the work of the answer itself.  Every other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, ctx: HttpContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        pub = self.ctx.campaign_public
        if (pub is None or scope.get("method") not in ("GET", "HEAD")
                or not path.startswith(("/t/o/", "/t/c/")) or "/" in path[5:]):
            await self.app(scope, receive, send)
            return
        if path[3] == "o":
            await self._pixel(pub, scope, send, path[5:])
        else:
            await self._click(pub, scope, receive, send, path[5:])

    def _hit(self, scope: Scope, token: TrackingToken) -> Hit:
        agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        client = scope.get("client")
        return Hit(token, self.ctx.clock(), client[0] if client else "",
                   agent.decode("latin-1"), scope["method"])

    async def _pixel(self, pub: CampaignPublic, scope: Scope, send: Send, name: str) -> None:
        if name.endswith(OPEN_SUFFIX):
            token = pub.signer.decode(name[:-len(OPEN_SUFFIX)], TokenKind.OPEN)
            view = None if token is None else await _view(pub, token.campaign_id, None)
            if token is not None and view is not None and view.exists and view.tracking:
                pub.recorder.add(self._hit(scope, token))
        await send({"type": "http.response.start", "status": 200, "headers": _GIF_HEADERS})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else TRANSPARENT_GIF})

    async def _click(self, pub: CampaignPublic, scope: Scope, receive: Receive, send: Send,
                     name: str) -> None:
        token = pub.signer.decode(name, TokenKind.CLICK)
        view = None if token is None else await _view(pub, token.campaign_id, token.link)
        target = click_target(token, view.links) if view is not None and view.exists else None
        if token is None or view is None or target is None:
            await self._problem(scope, receive, send, _not_found() if view is not None or
                                token is None else _UNAVAILABLE)
            return
        if view.tracking:
            pub.recorder.add(self._hit(scope, token))
        location = quote(target, safe=_URL_SAFE).encode("ascii")
        await send({"type": "http.response.start", "status": 302,
                    "headers": [*_REDIRECT_HEADERS, (b"location", location)]})
        await send({"type": "http.response.body", "body": b""})

    async def _problem(self, scope: Scope, receive: Receive, send: Send,
                       problem: Problem) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        accept = headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:
            response: Response = problem_response(problem, scope["path"])
        else:
            text = ("This link is not valid." if problem.status == 404
                    else "Please try again in a moment.")
            response = _page(problem.title, f"<p>{text}</p>", problem.status)
        await response(scope, receive, send)


_UNAVAILABLE = Problem("storage_unavailable", "the campaign could not be read; try again",
                       status=503, title="Service unavailable")


async def _view(pub: CampaignPublic, campaign_id: int, link: int | None
                ) -> CampaignView | None:
    """The campaign's view, loaded on a thread when the cache has none; None when
    the store failed (logged): the pixel still answers, a click gets 503."""
    view = pub.cache.peek(campaign_id, link)
    if view is None:
        try:
            view = await run_in_threadpool(pub.cache.load, campaign_id)
        except sqlite3.Error as exc:
            log_event(log, "campaign not readable", level=logging.ERROR,
                      campaign=campaign_id, error=str(exc))
            return None
    return view


@router.get("/u/{token}", include_in_schema=False)
async def unsubscribe_page(request: Request, token: str) -> Response:
    try:
        found = await run_in_threadpool(_public(request).unsubscribes.target, token)
    except Problem as problem:
        return _error(request, problem)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    leaving = found.subscribed
    if _wants_json(request):
        return JSONResponse({"address": found.contact.address,
                             "lists": [m.name for m in leaving]}, headers=NO_STORE)
    address = html.escape(found.contact.address)
    if not leaving:
        return _page("Unsubscribed", f"<p>{address} receives no more mail from these "
                                     "lists.</p>", headers=NO_STORE)
    names = ", ".join(html.escape(m.title or m.name) for m in leaving)
    action = html.escape(request.url.path)
    body = (f"<p>Stop sending {names} to {address}?</p>"
            f"<form method=post action='{action}'><input type=hidden name=confirm "
            "value=yes><button type=submit>Unsubscribe</button></form>")
    return _page("Unsubscribe", body, headers=NO_STORE)


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe(request: Request, token: str) -> Response:
    body = await request.body()
    how = ONE_CLICK if is_one_click(body) else PAGE
    ip = request.client.host if request.client else ""
    try:
        done = await run_in_threadpool(_public(request).unsubscribes.unsubscribe, token,
                                       ip, how)
    except Problem as problem:
        return _error(request, problem)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    if _wants_json(request) or how == ONE_CLICK:
        return JSONResponse({"status": "unsubscribed", "address": done.address,
                             "lists": done.lists}, headers=NO_STORE)
    return _page("Unsubscribed", f"<p>{html.escape(done.address)} is unsubscribed and "
                                 "receives no more mail from these lists.</p>",
                 headers=NO_STORE)
