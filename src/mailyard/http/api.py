"""``/api/v1``: contacts, lists, memberships, suppression (scope ``contacts``)."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mailyard.apikeys.api import Scope
from mailyard.bulk.importer import ImportFormat
from mailyard.bulk.model import Consent, ContactStatus, MembershipStatus, OptIn, SuppressionReason
from mailyard.http.auth import context, require
from mailyard.http.bodylimit import BodyTooLarge
from mailyard.http.problems import Problem, documented

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require(Scope.CONTACTS))],
                   responses=documented(401, 403, 404, 409, 413, 422))
Limit = Annotated[int, Query(ge=1, le=1000)]
Attributes = dict[str, Any]


class ContactIn(BaseModel):
    address: str = Field(max_length=320, examples=["anna@example.org"])
    name: str = Field("", max_length=256)
    attributes: Attributes = Field(default_factory=dict)


class ContactPatch(BaseModel):
    name: str | None = Field(None, max_length=256)
    attributes: Attributes | None = None
    status: ContactStatus | None = None


class ListIn(BaseModel):
    name: str = Field(max_length=64, examples=["newsletter"])
    title: str = Field("", max_length=256)
    opt_in: OptIn = OptIn.SINGLE


class MemberIn(BaseModel):
    status: MembershipStatus = MembershipStatus.CONFIRMED
    source: str = Field("api", max_length=128, description="how consent was given")
    ip: str = Field("", max_length=64, description="the subscriber's address, if known")


class SuppressionIn(BaseModel):
    reason: SuppressionReason = SuppressionReason.MANUAL
    note: str = Field("", max_length=256)


def _page(items: list[dict[str, Any]], last: int | None, limit: int) -> dict[str, Any]:
    return {"items": items, "next": last if len(items) == limit else None}


# --- contacts ----------------------------------------------------------------------
@router.get("/contacts", tags=["contacts"])
def list_contacts(request: Request, list: str | None = None, after: int = 0,  # noqa: A002
                  limit: Limit = 100) -> dict[str, Any]:
    contacts = context(request).contacts.page(list_name=list, after=after, limit=limit)
    return _page([c.to_dict() for c in contacts], contacts[-1].id if contacts else None, limit)


@router.post("/contacts", status_code=201, tags=["contacts"])
def create_contact(request: Request, body: ContactIn) -> dict[str, Any]:
    return context(request).contacts.create(body.address, body.name, body.attributes).to_dict()


@router.get("/contacts/{address}", tags=["contacts"])
def get_contact(request: Request, address: str) -> dict[str, Any]:
    """Everything held on the person (GDPR art. 15)."""
    return context(request).contacts.personal_data(address)


@router.patch("/contacts/{address}", tags=["contacts"])
def update_contact(request: Request, address: str, body: ContactPatch) -> dict[str, Any]:
    return context(request).contacts.update(address, name=body.name,
                                            attributes=body.attributes,
                                            status=body.status).to_dict()


@router.delete("/contacts/{address}", tags=["contacts"])
def erase_contact(request: Request, address: str) -> dict[str, Any]:
    """Erase the person everywhere (GDPR art. 17)."""
    return context(request).contacts.erase(address)


_IMPORT_TYPES = {"text/csv": ImportFormat.CSV, "application/x-ndjson": ImportFormat.JSONL,
                 "application/jsonl": ImportFormat.JSONL,
                 "application/jsonlines": ImportFormat.JSONL}


_FILE_BODY = {"requestBody": {"content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/x-ndjson": {"schema": {"type": "string"}}}}}


@router.post("/lists/{name}/import", tags=["lists"], openapi_extra=_FILE_BODY)
async def import_into_list(request: Request, name: str,
                           status: MembershipStatus = MembershipStatus.CONFIRMED
                           ) -> dict[str, Any]:
    """Import CSV (``text/csv``) or JSON lines (``application/x-ndjson``) into the list;
    the body is the file.  The summary lists invalid rows with their line numbers."""
    return await _import(request, name, status)


@router.post("/contacts/import", tags=["contacts"], openapi_extra=_FILE_BODY)
async def import_contacts(request: Request, list: str,  # noqa: A002
                          status: MembershipStatus = MembershipStatus.CONFIRMED
                          ) -> dict[str, Any]:
    """The same as ``POST /lists/{list}/import``."""
    return await _import(request, list, status)


async def _import(request: Request, name: str, status: MembershipStatus) -> dict[str, Any]:
    ctx = context(request)
    media, _, params = request.headers.get("content-type", "").partition(";")
    fmt = _IMPORT_TYPES.get(media.strip().lower())
    if fmt is None:
        raise Problem("unsupported_media_type", "send text/csv or application/x-ndjson")
    encoding = "utf-8"
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            encoding = value.strip('"')
    await run_in_threadpool(ctx.contacts.get_list, name)
    client = request.client.host if request.client else ""
    with tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > ctx.max_import_size:
                raise BodyTooLarge(ctx.max_import_size)
            spool.write(chunk)
        spool.seek(0)
        summary = await run_in_threadpool(
            ctx.contacts.import_contacts, spool, fmt, name, encoding=encoding,
            source="api:import", ip=client, status=status)
    return summary.to_dict()


# --- lists -------------------------------------------------------------------------
@router.get("/lists", tags=["lists"])
def list_lists(request: Request) -> list[dict[str, Any]]:
    return [m.to_dict() for m in context(request).contacts.lists()]


@router.post("/lists", status_code=201, tags=["lists"])
def create_list(request: Request, body: ListIn) -> dict[str, Any]:
    return context(request).contacts.create_list(body.name, body.title, body.opt_in).to_dict()


@router.get("/lists/{name}", tags=["lists"])
def get_list(request: Request, name: str) -> dict[str, Any]:
    return context(request).contacts.get_list(name).to_dict()


@router.get("/lists/{name}/members", tags=["lists"])
def list_members(request: Request, name: str, status: MembershipStatus | None = None,
                 after: int = 0, limit: Limit = 100) -> dict[str, Any]:
    members = context(request).contacts.members(name, status=status, after=after, limit=limit)
    return _page([m.to_dict() for _, m in members], members[-1][0] if members else None,
                 limit)


@router.put("/lists/{name}/members/{address}", tags=["lists"])
def set_member(request: Request, name: str, address: str, body: MemberIn) -> dict[str, Any]:
    ctx = context(request)
    consent = Consent(ctx.clock(), body.ip, body.source)
    return ctx.contacts.set_member(name, address, body.status, consent).to_dict()


@router.delete("/lists/{name}/members/{address}", status_code=204, tags=["lists"])
def remove_member(request: Request, name: str, address: str) -> Response:
    context(request).contacts.remove_member(name, address)
    return Response(status_code=204)


# --- suppression -------------------------------------------------------------------
@router.get("/suppressions", tags=["suppression"])
def list_suppressions(request: Request, after: int = 0, limit: Limit = 100) -> dict[str, Any]:
    found = context(request).contacts.suppressions(after=after, limit=limit)
    return _page([s.to_dict() for s in found], found[-1].id if found else None, limit)


@router.get("/suppressions/{address}", tags=["suppression"])
def get_suppression(request: Request, address: str) -> dict[str, Any]:
    return context(request).contacts.suppression(address).to_dict()


@router.put("/suppressions/{address}", tags=["suppression"])
def suppress(request: Request, address: str, body: SuppressionIn) -> dict[str, Any]:
    return context(request).contacts.suppress(address, body.reason, body.note).to_dict()


@router.delete("/suppressions/{address}", status_code=204, tags=["suppression"])
def unsuppress(request: Request, address: str) -> Response:
    context(request).contacts.unsuppress(address)
    return Response(status_code=204)

