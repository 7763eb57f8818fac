"""The public pages: the subscribe form and the double opt-in confirmation.

No API key: these are for subscribers.  Each answers HTML to a browser and JSON (with
problem documents for errors) to a client that sends or accepts JSON.

* ``GET /subscribe/{list}`` shows the form; ``POST`` takes it
  (``application/x-www-form-urlencoded``) or JSON (``{"email", "name"}``).  Attempts
  are rate-limited per client address (429 with ``Retry-After``).  The form has a
  honeypot field (``website``), hidden from people: a bot that fills it gets the
  usual answer, and nothing happens.  The answer is the same whether the address was
  new, already subscribed, unsubscribed or suppressed, so the form tells strangers
  nothing about who is on a list.  Someone who unsubscribed is sent a fresh
  confirmation link; a complained, bounced or suppressed address gets no mail and
  stays off the list (:meth:`mailyard.services.contacts.Contacts.subscribe`).
* ``GET /confirm/{token}`` shows a button and changes nothing (mail scanners follow
  links); the button's ``POST`` confirms.  A forged or altered token is 404, an
  expired one 410.
"""

from __future__ import annotations

import html
import json
import logging
import sqlite3
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mailyard.bulk.model import Consent, MembershipStatus
from mailyard.fs import disk_full
from mailyard.http.auth import context
from mailyard.http.problems import Problem, from_service, insufficient_storage, problem_response
from mailyard.ingest.api import IngestRefused
from mailyard.obs import log_event
from mailyard.queue.api import StorageError
from mailyard.services.errors import ServiceError

log = logging.getLogger("mailyard.http")
router = APIRouter(tags=["public"])
HONEYPOT = "website"
MAX_FIELD = 512


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    ctype = request.headers.get("content-type", "")
    return "json" in ctype or ("application/json" in accept and "text/html" not in accept)


def _page(title: str, body: str, status: int = 200,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width'>"
            f"<title>{html.escape(title)}</title></head><body><main>"
            f"<h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(text, status_code=status, headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "form-action 'self'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer", **(headers or {})})


def _error(request: Request, problem: Problem) -> Response:
    if _wants_json(request):
        return problem_response(problem, request.url.path)
    return _page(problem.title, f"<p>{html.escape(problem.detail or problem.title)}</p>",
                 problem.status, problem.headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@router.get("/subscribe/{name}", response_class=HTMLResponse)
async def subscribe_form(request: Request, name: str) -> Response:
    try:
        mlist = await run_in_threadpool(context(request).contacts.get_list, name)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    action = html.escape(request.url.path)
    form = (f"<form method=post action='{action}'>"
            "<p><label>Email <input type=email name=email required maxlength=320></label></p>"
            "<p><label>Name <input name=name maxlength=256></label></p>"
            f"<p style='display:none' aria-hidden=true><label>Leave this empty "
            f"<input name={HONEYPOT} tabindex=-1 autocomplete=off></label></p>"
            "<p><button type=submit>Subscribe</button></p></form>")
    return _page(f"Subscribe to {mlist.title or mlist.name}", form)


async def _fields(request: Request) -> dict[str, str]:
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # nested too deeply for the parser
            raise Problem("validation_failed", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise Problem("validation_failed", "the body must be a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, str)}
    if ctype in ("application/x-www-form-urlencoded", ""):
        try:
            parsed = parse_qs(raw.decode("utf-8"), max_num_fields=10, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise Problem("validation_failed", "the form must be UTF-8 text with at most 10 "
                          "fields") from None
        return {k: v[0] for k, v in parsed.items()}
    raise Problem("unsupported_media_type",
                  "send a form (application/x-www-form-urlencoded) or JSON")


@router.post("/subscribe/{name}")
async def subscribe(request: Request, name: str) -> Response:
    ctx = context(request)
    ip = _client(request)
    wait = ctx.subscribe_limiter.hit(ip, ctx.clock())
    if wait:
        return _error(request, Problem("rate_limited", "too many subscription attempts from "
                                       "your address; try again later",
                                       headers={"Retry-After": str(wait)}))
    try:
        fields = await _fields(request)
        address, person = fields.get("email", ""), fields.get("name", "")
        if not address or len(address) > MAX_FIELD or len(person) > MAX_FIELD:
            raise Problem("validation_failed", "give an email address (and a name, up to "
                          f"{MAX_FIELD} characters)")
        if fields.get(HONEYPOT):
            log_event(log, "subscribe honeypot filled", list=name, client=ip)
        else:
            source = "api" if _wants_json(request) else "form"
            result = await run_in_threadpool(ctx.contacts.subscribe, name, address, person,
                                             Consent(ctx.clock(), ip, source))
            if result.mail is not None:
                await ctx.mailer(result.mail)
    except Problem as problem:
        return _error(request, problem)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    except (StorageError, IngestRefused, OSError) as exc:
        log_event(log, "confirmation mail not queued", level=logging.ERROR, list=name,
                  error=str(exc))
        try:  # the same request again sends the mail, not "one went out moments ago"
            await run_in_threadpool(ctx.contacts.confirmation_not_sent, name, address)
        except (ServiceError, sqlite3.Error) as again:
            log_event(log, "confirmation left to RESEND_AFTER", level=logging.WARNING,
                      list=name, error=str(again))
        if disk_full(exc):
            return _error(request, insufficient_storage())
        return _error(request, Problem("mail_not_queued", "the confirmation mail could not "
                                       "be sent; try again later", status=503,
                                       title="Service unavailable"))
    message = ("Thank you. If this address can be subscribed, it is now, or a message "
               "with a confirmation link is on its way to it.")
    if _wants_json(request):
        return JSONResponse({"status": "accepted", "detail": message}, status_code=202)
    return _page("Thank you", f"<p>{html.escape(message)}</p>")


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def confirm_page(request: Request, token: str) -> Response:
    ctx = context(request)
    try:
        mlist, contact, _ = await run_in_threadpool(ctx.contacts.pending_confirmation, token)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    if _wants_json(request):
        return JSONResponse({"list": mlist.name, "address": contact.address})
    action = html.escape(request.url.path)
    body = (f"<p>Subscribe {html.escape(contact.address)} to "
            f"{html.escape(mlist.title or mlist.name)}?</p>"
            f"<form method=post action='{action}'><button type=submit>Confirm</button></form>")
    return _page("Confirm your subscription", body)


@router.post("/confirm/{token}")
async def confirm(request: Request, token: str) -> Response:
    ctx = context(request)
    try:
        consent = Consent(ctx.clock(), _client(request), "confirmation link")
        member = await run_in_threadpool(ctx.contacts.confirm, token, consent)
    except ServiceError as exc:
        return _error(request, from_service(exc))
    result: dict[str, Any] = {"list": member.list_name, "status": member.status.value}
    if _wants_json(request):
        return JSONResponse(result)
    if member.status is not MembershipStatus.CONFIRMED:
        return _page("Not subscribed", "<p>This subscription can no longer be confirmed. "
                                       "Write to the list's sender if you want it back.</p>")
    return _page("Subscribed", f"<p>{html.escape(member.address)} is subscribed to "
                               f"{html.escape(member.list_name)}.</p>")
