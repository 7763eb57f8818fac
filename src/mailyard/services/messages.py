"""Transactional messages: one message, rendered and queued on an API client's request
(``POST /api/v1/messages``).

The message goes the way every message goes: rendered by the sandboxed templates
(:mod:`mailyard.bulk.templates`), built by their MIME builder (so a subject or name
with CR/LF never becomes a header field of its own), then through ingest (DKIM
signing, the size and loop checks, the delivery pool) into the durable queue.  The
answer says "queued" only once the queue commit has returned.

* **Sender**: the From address must be in a local domain and allowed for the API key
  (``mailyard apikey create --sender``).  The envelope sender is a VERP address
  naming this message (:class:`~mailyard.feedback.verp.TransactionalMessage`), so a
  bounce maps back to it.
* **Suppression**: every recipient is checked against the suppression list; a
  suppressed one is not sent to and is listed as ``suppressed``.  When every
  recipient is suppressed nothing is queued and the request is refused (422
  ``recipients_suppressed``), so a client cannot mistake it for a sent message.
  What comes back for the message feeds that list as for campaigns
  (:mod:`mailyard.services.feedback`): a hard bounce suppresses the address, soft
  bounces count toward ``bulk.soft_bounce_threshold``, a complaint suppresses.
  Personal mail (submission, ``mailyard send``) is *not* checked: the suppression
  list records what the bulk side must not send, and a person writing to someone
  who once unsubscribed from a newsletter still expects the mail to go.
* **Sending limits**: the message counts against the From address's user and domain
  (:mod:`mailyard.sending.limiter`); over a limit it is refused with the seconds to
  wait (``429`` with ``Retry-After``).
* **Pool**: a key bound to a pool sends through it (``Submission.pool``); otherwise
  the pool is chosen by the From address as for submitted mail.
* **Idempotency**: see :mod:`mailyard.transactional.idempotency`.

With several recipients the message is one message (one Message-ID, every queued
recipient in its To field); the template's ``address``/``name`` are those of the
first queued recipient.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailyard.apikeys.api import ApiKey
from mailyard.bulk.addresses import InvalidAddress, normalise_address
from mailyard.bulk.store import ContactStore
from mailyard.bulk.templates.mime import BuiltMessage, HeaderRefused, Mailbox, build_message
from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    RenderFailure,
    TemplateSource,
    TemplateSyntaxProblem,
)
from mailyard.envelope import made_here
from mailyard.feedback.verp import TransactionalMessage, verp_address
from mailyard.ingest.api import Ingest, IngestRefused, Origin, Submission
from mailyard.obs import log_event
from mailyard.queue.api import StorageError
from mailyard.sending.limiter import SendLimiter, SendRefusal
from mailyard.services.errors import error
from mailyard.services.templates import MessageTemplates
from mailyard.transactional.idempotency import (
    KeyRecord,
    Reservation,
    fingerprint,
    message_id_for,
    valid_key,
)
from mailyard.transactional.sqlite import SqliteTransactionalStore

__all__ = ["LimitReached", "MessageRequest", "SendResult", "TransactionalMail"]

log = logging.getLogger("mailyard.messages")

QUEUED = "queued"
SUPPRESSED = "suppressed"
WAIT_STEP = 0.05  # seconds between looks at a key another request holds
WAIT_MAX = 15.0  # then 409: the client asks again later
SWEEP_INTERVAL = 600.0
#: Header fields a client may add besides the ones the message is built with.
ALLOWED_HEADERS = frozenset({"in-reply-to", "references", "auto-submitted", "comments",
                             "keywords"})
# The raw (not templated) parts go in as variables of this fixed template.
_RAW = TemplateSource(subject="{{ raw_subject }}", html="{{ raw_html|safe }}",
                      text="{{ raw_text }}")


@dataclass(frozen=True)
class MessageRequest:
    """What the client asks for (validated for shape by the HTTP layer)."""

    sender: Mailbox
    to: tuple[Mailbox, ...]
    reply_to: Mailbox | None = None
    template: str = ""  # a stored template's name
    source: TemplateSource | None = None  # an inline template
    subject: str | None = None  # raw parts, used as they are
    html: str | None = None
    text: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    canonical: Mapping[str, Any] = field(default_factory=dict)  # the body, for the key


@dataclass(frozen=True)
class SendResult:
    status: int
    body: dict[str, Any]
    replayed: bool = False


class LimitReached(Exception):
    """The From address's user or domain is over a sending limit."""

    def __init__(self, refusal: SendRefusal) -> None:
        super().__init__(refusal.text)
        self.refusal = refusal


@dataclass(frozen=True)
class _Prepared:
    sender: str  # the From address, normalised: whose sending limits count
    built: BuiltMessage
    queued: tuple[str, ...]
    body: dict[str, Any]


@dataclass
class TransactionalMail:
    store: SqliteTransactionalStore
    contacts: ContactStore  # for the suppression list
    is_local_domain: Callable[[str], bool]
    ingest: Ingest
    notify: Callable[[str], None]  # a queue id, for delivery to start at once
    id_key: bytes  # derives message ids from idempotency keys
    verp_key: bytes
    bounce_domain: str
    bounce_prefix: str = "bounces"
    limiter: SendLimiter | None = None
    max_recipients: int = 50
    clock: Callable[[], float] = time.time
    _last_sweep: float = 0.0
    # Reservations whose release failed (a full disk): (API key, key) -> holder, released
    # before the key is used again, so that a request that queued nothing is never
    # replayed as sent.  Per process.
    _unreleased: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def templates(self) -> MessageTemplates:
        """The stored templates (``"template": NAME``), kept in the same store."""
        return MessageTemplates(self.store, self.clock)

    # --- sending -------------------------------------------------------------------
    async def send(self, key: ApiKey, request: MessageRequest,
                   idempotency_key: str | None = None) -> SendResult:
        """Queue the message; raises ServiceError, LimitReached."""
        if self.clock() - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = self.clock()
            await asyncio.to_thread(self._sweep)
        record: KeyRecord | None = None
        if idempotency_key is None:
            message_id = secrets.token_hex(10)
        else:
            if not valid_key(idempotency_key):
                raise error("invalid_idempotency_key", "an Idempotency-Key is 1 to 255 "
                            "visible ASCII characters")
            found = await self._reserve(key, idempotency_key, request)
            if isinstance(found, SendResult):
                return found
            record = found
            message_id = record.message_id
        queued = False
        try:
            prepared = await asyncio.to_thread(self.prepare, key, request, message_id)
            await self._check_limits(prepared.sender, len(prepared.queued))
            await self._queue(key, prepared, record)
            queued = True
        finally:
            if record is not None and not queued:
                await asyncio.to_thread(self._release, record)
        if record is not None:
            try:
                await asyncio.to_thread(self.store.finish, record.api_key, record.key)
            except sqlite3.Error as exc:  # queued: the stored answer replays it
                log_event(log, "idempotency key not marked done", level=logging.WARNING,
                          key=record.api_key, error=str(exc))
        return SendResult(202, prepared.body)

    def _release(self, record: KeyRecord) -> None:
        """Free the key of a request that queued nothing; when that fails too (a full
        disk), it is freed before the key's next use instead of failing the answer."""
        try:
            self.store.release(record.api_key, record.key, record.holder)
        except sqlite3.Error as exc:
            log_event(log, "idempotency key not released", level=logging.WARNING,
                      key=record.api_key, error=str(exc))
            self._unreleased[(record.api_key, record.key)] = record.holder

    def _release_left(self, api_key: str, key: str) -> None:
        holder = self._unreleased.get((api_key, key))
        if holder is not None:
            self.store.release(api_key, key, holder)
            del self._unreleased[(api_key, key)]

    async def _reserve(self, key: ApiKey, idempotency_key: str,
                       request: MessageRequest) -> KeyRecord | SendResult:
        digest = fingerprint(dict(request.canonical))
        message_id = message_id_for(self.id_key, key.key_id, idempotency_key)
        waited = 0.0
        await asyncio.to_thread(self._release_left, key.key_id, idempotency_key)
        while True:
            outcome, record = await asyncio.to_thread(
                self.store.reserve, key.key_id, idempotency_key, digest, message_id,
                self.clock())
            if outcome is Reservation.NEW:
                return record
            if outcome is Reservation.MISMATCH:
                raise error("idempotency_key_reused", "this Idempotency-Key was used with "
                            "another request body in the last 24 hours")
            if outcome is Reservation.REPLAY:
                return SendResult(record.status, json.loads(record.body), replayed=True)
            if waited >= WAIT_MAX:
                raise error("idempotency_in_progress", "a request with this Idempotency-Key "
                            "is still being processed; ask again shortly")
            await asyncio.sleep(WAIT_STEP)
            waited += WAIT_STEP

    def prepare(self, key: ApiKey, request: MessageRequest, message_id: str) -> _Prepared:
        """Check, render and build the message (blocking: templates and the suppression
        list).  Raises ServiceError."""
        domain = self._check_sender(key, request.sender.address)
        if len(request.to) > self.max_recipients:
            raise error("too_many_recipients", f"at most {self.max_recipients} recipients "
                        "per message")
        statuses, queued = self._recipients(request.to)
        if not queued:
            raise error("recipients_suppressed", "every recipient is on the suppression "
                        "list; nothing was sent")
        source, variables = self._source(request)
        try:
            template = CompiledTemplate(source)
        except TemplateSyntaxProblem as exc:
            raise error("invalid_template", str(exc)) from None
        first = queued[0]
        try:
            content = template.render(ContactFields(first.address, first.name),
                                      unsubscribe_url="", variables=variables)
        except ValueError as exc:  # a reserved variable name
            raise error("invalid_template", str(exc)) from None
        if isinstance(content, RenderFailure):
            raise error("template_failed", f"the template did not render: {content}")
        try:
            built = build_message(content, sender=request.sender, to=first,
                                  also_to=queued[1:], date=self.clock(),
                                  message_id=f"<{message_id}@{domain}>",
                                  reply_to=request.reply_to, extra=request.headers)
        except HeaderRefused as exc:
            raise error("invalid_header", str(exc)) from None
        body = {"id": message_id, "message_id": built.message_id,
                "recipients": [{"address": a, "status": s} for a, s in statuses],
                "tags": list(request.tags)}
        return _Prepared(normalise_address(request.sender.address), built,
                         tuple(m.address for m in queued), body)

    def _check_sender(self, key: ApiKey, address: str) -> str:
        """The sender's (ASCII) domain, after the checks."""
        try:
            normal = normalise_address(address)
        except InvalidAddress as exc:
            raise error("invalid_address", f"from: {exc}") from None
        domain = normal.rpartition("@")[2]
        if not self.is_local_domain(domain):
            raise error("sender_not_allowed", f"{domain} is not a local domain")
        if not key.may_send_as(normal):
            raise error("sender_not_allowed", f"this API key may not send as {normal}")
        return domain

    def _recipients(self, to: tuple[Mailbox, ...]
                    ) -> tuple[list[tuple[str, str]], list[Mailbox]]:
        statuses: list[tuple[str, str]] = []
        queued: list[Mailbox] = []
        seen: set[str] = set()
        for box in to:
            try:
                normal = normalise_address(box.address)
            except InvalidAddress as exc:
                raise error("invalid_address", f"to: {exc}") from None
            if normal in seen:
                continue
            seen.add(normal)
            try:
                suppressed = self.contacts.suppression(normal) is not None
            except sqlite3.Error as exc:
                raise error("contacts_error", f"cannot read the suppression list: {exc}"
                            ) from None
            statuses.append((box.address, SUPPRESSED if suppressed else QUEUED))
            if not suppressed:
                queued.append(box)
        return statuses, queued

    def _source(self, request: MessageRequest) -> tuple[TemplateSource, dict[str, Any]]:
        if request.template:
            stored = self.templates.get(request.template)
            return TemplateSource(stored.subject, stored.html, stored.text), dict(
                request.variables)
        if request.source is not None:
            return request.source, dict(request.variables)
        raw = TemplateSource(_RAW.subject, _RAW.html if request.html is not None else None,
                             _RAW.text if request.text is not None else None)
        return raw, {"raw_subject": request.subject or "", "raw_html": request.html,
                     "raw_text": request.text}

    async def _check_limits(self, sender: str, recipients: int) -> None:
        if self.limiter is None:
            return
        refusal = await asyncio.to_thread(self._guarded, self.limiter.check, sender,
                                          recipients)
        if refusal is None:
            return
        if refusal.exceeded.permanent:
            raise error("over_sending_limit", refusal.text)
        raise LimitReached(refusal)

    @staticmethod
    def _guarded(fn: Callable[..., SendRefusal | None], *args: Any) -> SendRefusal | None:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:  # as for SMTP: the mail goes on
            log_event(log, "sending limits unavailable", level=logging.WARNING,
                      error=str(exc))
            return None

    async def _queue(self, key: ApiKey, prepared: _Prepared, record: KeyRecord | None) -> str:
        built = prepared.built
        sender = verp_address(TransactionalMessage(prepared.body["id"]), self.verp_key,
                              self.bounce_domain, prefix=self.bounce_prefix)
        envelope = made_here(sender, prepared.queued, built.data, smtputf8=built.smtputf8,
                             auth_user=prepared.sender, received_at=self.clock())
        submission = Submission(Origin.API, envelope, pool=key.pool)
        try:
            self.ingest.check(submission, built.data)
            writer = self.ingest.open(submission)
        except IngestRefused as exc:
            raise error("message_too_big", exc.reply.text) from None
        except StorageError as exc:
            raise error("mail_not_queued", f"the queue is not available: {exc}") from None
        try:
            writer.write(built.data)
            if record is not None and not await asyncio.to_thread(
                    self.store.committing, record.api_key, record.key, record.holder,
                    writer.qid, 202, json.dumps(prepared.body)):
                raise error("idempotency_in_progress", "this request took too long and "
                            "another with the same Idempotency-Key took over")
            qid = await writer.commit()
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, IngestRefused):
                raise error("message_too_big", exc.reply.text) from None
            if isinstance(exc, StorageError):
                raise error("mail_not_queued", f"the queue is not available: {exc}") from None
            raise
        self.notify(qid)
        if self.limiter is not None:
            await asyncio.to_thread(self._guarded, self._record, prepared)
        log_event(log, "message queued", qid=qid, id=prepared.body["id"], key=key.key_id,
                  recipients=len(prepared.queued), pool=key.pool or "-",
                  tags=",".join(prepared.body["tags"]) or "-")
        return qid

    def _record(self, prepared: _Prepared) -> None:
        assert self.limiter is not None
        self.limiter.record(prepared.sender, len(prepared.queued))

    def _sweep(self) -> None:
        try:
            self.store.sweep(self.clock())
        except sqlite3.Error as exc:
            log_event(log, "idempotency sweep failed", level=logging.WARNING, error=str(exc))

