"""``/api/v1/messages`` and ``/api/v1/templates`` (scope ``send``): transactional mail
(:mod:`mailyard.services.messages`)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from mailyard.apikeys.api import ApiKey, Scope
from mailyard.bulk.importer import MAX_ATTRIBUTE_DEPTH, nesting
from mailyard.bulk.templates.mime import Mailbox
from mailyard.bulk.templates.render import TemplateSource
from mailyard.http.auth import context, require
from mailyard.http.problems import Problem, documented
from mailyard.services.messages import (
    ALLOWED_HEADERS,
    LimitReached,
    MessageRequest,
    TransactionalMail,
)
from mailyard.services.templates import MAX_SOURCE, MAX_SUBJECT, MessageTemplates

router = APIRouter(prefix="/api/v1", tags=["messages"],
                   responses=documented(401, 403, 404, 409, 413, 422))
Send = Annotated[ApiKey, Depends(require(Scope.SEND))]
TemplateName = Annotated[str, Path(max_length=64, description="1-64 letters, digits and "
                                   "_ . -, starting with a letter or digit")]

_TAG = r"^[A-Za-z0-9_.:-]{1,64}$"
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(max_length=320, examples=["anna@example.org"])
    name: str = Field("", max_length=256)


AddressIn = Annotated[str, Field(max_length=320)] | Address


def _mailbox(value: str | Address) -> Mailbox:
    if isinstance(value, str):
        return Mailbox(value.strip())
    return Mailbox(value.address.strip(), value.name)


class InlineTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=2048)
    html: str | None = Field(None, max_length=MAX_SOURCE)
    text: str | None = Field(None, max_length=MAX_SOURCE)


class MessageIn(BaseModel):
    """A message: a ``template`` (a stored template's name, or an inline one) with
    ``variables``, or raw ``subject`` and ``html`` and/or ``text`` used as they are."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: AddressIn = Field(alias="from", description="an address of a local domain the "
                             "API key may send as")
    to: list[AddressIn] = Field(min_length=1, max_length=1000,
                                description="recipients (at most `http.max_recipients`)")
    reply_to: AddressIn | None = None
    template: Annotated[str, Field(max_length=64)] | InlineTemplate | None = None
    variables: dict[str, Any] = Field(default_factory=dict,
                                      description="values for the template")
    subject: str | None = Field(None, max_length=2048)
    html: str | None = Field(None, max_length=MAX_SOURCE)
    text: str | None = Field(None, max_length=MAX_SOURCE)
    tags: list[Annotated[str, Field(pattern=_TAG)]] = Field(default_factory=list,
                                                            max_length=10)
    headers: dict[str, Annotated[str, Field(max_length=998)]] = Field(
        default_factory=dict, max_length=20,
        description="extra header fields: X-*, In-Reply-To, References, Auto-Submitted, "
                    "Comments, Keywords; no line breaks")

    @field_validator("headers")
    @classmethod
    def _safe_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name) or not (
                    name.lower().startswith("x-") or name.lower() in ALLOWED_HEADERS):
                raise ValueError(f"header field {name!r} may not be set")
            if "\r" in text or "\n" in text:
                raise ValueError(f"the value of {name} holds a line break")
        return value

    @field_validator("variables")
    @classmethod
    def _shallow_variables(cls, value: dict[str, Any]) -> dict[str, Any]:
        if nesting(value) > MAX_ATTRIBUTE_DEPTH:  # the request is stored as JSON
            raise ValueError(f"the variables nest lists and objects deeper than "
                             f"{MAX_ATTRIBUTE_DEPTH} levels")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> MessageIn:
        raw = self.subject is not None or self.html is not None or self.text is not None
        if self.template is not None and raw:
            raise ValueError("give a template or raw subject/html/text, not both")
        if self.template is None and (self.subject is None
                                      or (self.html is None and self.text is None)):
            raise ValueError("give a template, or a subject and an html and/or text body")
        if self.template is None and self.variables:
            raise ValueError("variables need a template")
        return self

    def request(self) -> MessageRequest:
        template = self.template
        return MessageRequest(
            sender=_mailbox(self.from_), to=tuple(_mailbox(t) for t in self.to),
            reply_to=_mailbox(self.reply_to) if self.reply_to is not None else None,
            template=template if isinstance(template, str) else "",
            source=(TemplateSource(template.subject, template.html, template.text)
                    if isinstance(template, InlineTemplate) else None),
            subject=self.subject, html=self.html, text=self.text, variables=self.variables,
            tags=tuple(self.tags), headers=tuple(self.headers.items()),
            canonical=self.model_dump(mode="json", by_alias=True))


class RecipientOut(BaseModel):
    address: str
    status: str = Field(description="queued or suppressed")


class MessageOut(BaseModel):
    id: str = Field(description="the message's id (in its VERP envelope sender)")
    message_id: str = Field(description="the Message-ID header field")
    recipients: list[RecipientOut]
    tags: list[str]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=MAX_SUBJECT)
    html: str | None = Field(None, max_length=MAX_SOURCE)
    text: str | None = Field(None, max_length=MAX_SOURCE)


def _service(request: Request) -> TransactionalMail:
    service = context(request).messages
    if service is None:
        raise Problem("mail_not_queued", "transactional mail is not available", status=503,
                      title="Service unavailable")
    return service


@router.post("/messages", status_code=202, response_model=MessageOut,
             responses=documented(429, 503))
async def send_message(request: Request, key: Send, body: MessageIn,
                       idempotency_key: Annotated[str | None, Header(
                           description="1-255 visible ASCII characters: the same key "
                                       "within 24 hours gives back the first answer and "
                                       "sends nothing")] = None) -> Response:
    """Render and queue one message.  Answers 202 once it is durably queued; each
    recipient is listed as `queued` or `suppressed` (on the suppression list, not sent).
    Over a sending limit of the From address's user or domain: 429 with `Retry-After`."""
    service = _service(request)
    try:
        result = await service.send(key, body.request(), idempotency_key)
    except LimitReached as exc:
        raise Problem("rate_limited", exc.refusal.text,
                      headers={"Retry-After": str(exc.refusal.retry_after)},
                      extra={"retry_after": exc.refusal.retry_after}) from None
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return JSONResponse(result.body, status_code=result.status, headers=headers)


def _templates(request: Request) -> MessageTemplates:
    return _service(request).templates


@router.get("/templates")
def list_templates(request: Request, key: Send) -> list[dict[str, Any]]:
    """Every stored template, by name."""
    return [t.to_dict() for t in _templates(request).list()]


@router.put("/templates/{name}")
def put_template(request: Request, key: Send, name: TemplateName, body: TemplateIn
                 ) -> dict[str, Any]:
    """Store a template (Jinja2, sandboxed) under ``name`` for `POST /messages`; it is
    compiled first (a syntax error is 422 ``invalid_template``) and replaces one of the
    same name."""
    return _templates(request).put(name, body.subject, body.html, body.text).to_dict()


@router.get("/templates/{name}")
def get_template(request: Request, key: Send, name: TemplateName) -> dict[str, Any]:
    return _templates(request).get(name).to_dict()


@router.delete("/templates/{name}", status_code=204)
async def delete_template(request: Request, key: Send, name: TemplateName) -> Response:
    await run_in_threadpool(_templates(request).delete, name)
    return Response(status_code=204)
