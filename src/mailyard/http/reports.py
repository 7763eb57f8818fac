"""The campaign report page, and the API calls that go with it.

* ``GET /reports/campaigns/<id>``: the report as an HTML page with SVG charts
  (:mod:`mailyard.bulk.report_page`).  Opened with ``?token=`` from a report link,
  or with ``Authorization: Bearer <key>`` of scope ``campaigns`` (or ``admin``);
  otherwise 401.  Never cached, no referrer sent on (the token is in the URL).
* ``GET /api/v1/campaigns/<id>/report-link?ttl=SECONDS``: a link to that page,
  valid for ``ttl`` seconds (default a day, 60 s to 30 days).

The report as JSON is ``GET /api/v1/campaigns/<id>/report``
(:mod:`mailyard.http.campaigns`): the same numbers, from the same
:func:`~mailyard.services.report_pages.campaign_report`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mailyard.apikeys.api import Scope, allows
from mailyard.bulk.report_page import render_report_page
from mailyard.http.auth import context, require
from mailyard.http.campaigns import CampaignId
from mailyard.http.problems import Problem, documented, from_service
from mailyard.http.public import _error
from mailyard.services.errors import ServiceError
from mailyard.services.report_pages import DEFAULT_TTL, MAX_TTL, CampaignReports

api = APIRouter(prefix="/api/v1", dependencies=[Depends(require(Scope.CAMPAIGNS))],
                responses=documented(401, 403, 404, 422), tags=["campaigns"])
pages = APIRouter(tags=["public"])

_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store, private",
    "X-Robots-Tag": "noindex"}


def _reports(request: Request) -> CampaignReports:
    found = context(request).campaign_public
    if found is None:
        raise Problem("not_found", "no campaign reports here")
    return found.reports


@api.get("/campaigns/{campaign_id}/report-link")
def report_link(request: Request, campaign_id: CampaignId,
                ttl: Annotated[int, Query(ge=60, le=MAX_TTL)] = DEFAULT_TTL) -> dict[str, Any]:
    """A link to the campaign's report page that works without an API key until it
    expires."""
    link = _reports(request).link(campaign_id, ttl)
    return {"url": link.url, "expires": link.expires}


async def _key_allows(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return False
    key = await run_in_threadpool(context(request).apikeys.authenticate, credentials.strip())
    return key is not None and allows(key.scopes, Scope.CAMPAIGNS)


@pages.get("/reports/campaigns/{campaign_id}", response_class=HTMLResponse)
async def report_page(request: Request, campaign_id: CampaignId, token: str = "") -> Response:
    ctx = context(request)
    try:
        reports = _reports(request)
        if not (token and reports.check(campaign_id, token)) and not await _key_allows(request):
            raise Problem("unauthorized", "open this page with a report link (GET "
                          "/api/v1/campaigns/ID/report-link) or an API key of scope "
                          "campaigns",
                          headers={"WWW-Authenticate": 'Bearer realm="mailyard"'})
        campaign, report = await run_in_threadpool(reports.report, campaign_id)
    except Problem as problem:
        return _error(request, problem)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    text = render_report_page(campaign, report, now=ctx.clock())
    return HTMLResponse(text, headers=_PAGE_HEADERS)

