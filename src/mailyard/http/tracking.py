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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mailyard.bulk.engagement import Hit
from mailyard.bulk.tracking import (
    OPEN_SUFFIX,
    TRANSPARENT_GIF,
    TokenKind,
    TrackingToken,
    click_target,
)
from mailyard.http.auth import context
from mailyard.http.problems import Problem, from_service
from mailyard.http.public import _error, _page, _wants_json
from mailyard.services.errors import ServiceError
from mailyard.services.tracking import CampaignPublic, CampaignView
from mailyard.services.unsubscribe import ONE_CLICK, PAGE

router = APIRouter(tags=["public"])

NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
            "Pragma": "no-cache", "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
            "X-Robots-Tag": "noindex"}
_GIF_HEADERS = {**NO_STORE, "Content-Length": str(len(TRANSPARENT_GIF))}
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
_NOT_FOUND = Problem("not_found", "no such link")


def _public(request: Request) -> CampaignPublic:
    found = context(request).campaigns
    if found is None:
        raise _NOT_FOUND
    return found


async def _view(pub: CampaignPublic, campaign_id: int, link: int | None) -> CampaignView:
    view = pub.cache.peek(campaign_id, link)
    if view is None:
        view = await run_in_threadpool(pub.cache.load, campaign_id)
    return view


def _hit(request: Request, token: TrackingToken) -> Hit:
    return Hit(token, context(request).clock(),
               request.client.host if request.client else "",
               request.headers.get("user-agent", ""), request.method)


@router.api_route("/t/o/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def open_pixel(request: Request, name: str) -> Response:
    pub = context(request).campaigns
    if pub is not None and name.endswith(OPEN_SUFFIX):
        token = pub.signer.decode(name[:-len(OPEN_SUFFIX)], TokenKind.OPEN)
        if token is not None:
            view = await _view(pub, token.campaign_id, None)
            if view.exists and view.tracking:
                pub.recorder.add(_hit(request, token))
    return Response(TRANSPARENT_GIF, media_type="image/gif", headers=_GIF_HEADERS)


@router.api_route("/t/c/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def click(request: Request, name: str) -> Response:
    try:
        pub = _public(request)
        token = pub.signer.decode(name, TokenKind.CLICK)
        if token is None:
            raise _NOT_FOUND
        view = await _view(pub, token.campaign_id, token.link)
        target = click_target(token, view.links) if view.exists else None
        if target is None:
            raise _NOT_FOUND
    except Problem as problem:
        return _error(request, problem)
    if view.tracking:
        pub.recorder.add(_hit(request, token))
    return RedirectResponse(target, status_code=302,
                            headers={**NO_STORE, "Referrer-Policy": "no-referrer"})


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
    how = ONE_CLICK if ONE_CLICK_BODY in body else PAGE
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
