"""One SMTP connection: an ``asyncio.Protocol`` around the sans-IO server core.

It reads, feeds :class:`~mailyard.proto.smtp.server.ServerConnection`, relays the
core's decisions to the listener's :class:`~mailyard.smtpd.policy.Policy`, streams
the content into ingest (:class:`~mailyard.smtpd.transaction.InboundTransaction`),
writes what the core emits, and runs the timers (their arithmetic is
:class:`~mailyard.smtpd.deadlines.Deadlines`).  Replies to a pipelined group go out
in one write.  Everything it depends on is declared in :mod:`mailyard.smtpd.context`.

Implicit TLS (port 465): the connection is counted against the connection caps when
it is accepted, like any other, and the handshake runs here (``loop.start_tls``,
within ``smtpd.tls_handshake_timeout``); a connection over a cap is closed without a
reply, as there is no TLS yet to send one over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from mailyard.ingest.api import IngestRefused, IngestWriter, Origin, Submission
from mailyard.listener.session import ReadingControl, replay_early_input
from mailyard.message.trace import protocol_name
from mailyard.metrics import (
    AUTH_FAILURES,
    BYTES_RECEIVED,
    CONNECTIONS,
    MESSAGES_ACCEPTED,
    SPF_RESULTS,
)
from mailyard.obs import log_event
from mailyard.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    AuthResult,
    DataChunk,
    DataStart,
    Event,
    HeaderSection,
    Helo,
    MailFrom,
    MessageComplete,
    MessageRefused,
    RcptTo,
    ScramLookup,
    StartTlsRequested,
    TransactionAborted,
    Vrfy,
)
from mailyard.proto.smtp.replies import (
    REPLY_AUTH_BUSY,
    REPLY_AUTH_CANCELLED,
    REPLY_AUTH_FAILED,
    REPLY_AUTH_LOCKED_OUT,
    REPLY_AUTH_TEMP,
    REPLY_DELIVERED_NOW,
    REPLY_INTERNAL_ERROR,
    REPLY_QUEUED,
    REPLY_SHUTTING_DOWN,
    REPLY_STORAGE_ERROR,
    REPLY_TLS_UNAVAILABLE,
    Reply,
)
from mailyard.proto.smtp.server import ServerConnection
from mailyard.queue.api import StorageError
from mailyard.smtpd.context import InboundServices, ListenerSpec, SessionHost, SessionTimers
from mailyard.smtpd.deadlines import Deadlines
from mailyard.smtpd.spf import SpfVerdict
from mailyard.smtpd.transaction import InboundTransaction

if TYPE_CHECKING:
    from mailyard.sending.limiter import SendAllowance

log = logging.getLogger("mailyard.smtpd")

PAUSE_BUFFER = 1 << 20  # stop reading while this much input waits for a decision

# The "result" field of the "smtp auth" log line (fail2ban matches result=failed).
AUTH_RESULTS: dict[Reply | None, str] = {
    REPLY_AUTH_FAILED: "failed", REPLY_AUTH_BUSY: "busy", REPLY_AUTH_LOCKED_OUT: "locked",
    REPLY_AUTH_TEMP: "tempfail", REPLY_AUTH_CANCELLED: "cancelled",
}


class SmtpSession(ReadingControl, asyncio.Protocol):
    def __init__(self, listener: ListenerSpec, services: InboundServices, host: SessionHost,
                 timers: SessionTimers) -> None:
        self.listener = listener
        self.services = services
        self.host = host
        self.timers = timers
        self.loop = asyncio.get_running_loop()
        self.conn = ServerConnection(listener.settings)
        self.deadlines = Deadlines(timers, self.loop.time())
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.txn: InboundTransaction | None = None
        self.task: asyncio.Future[Any] | None = None  # our own answer in progress
        self.tls_started = False
        self.handshaking = False  # implicit TLS: the first handshake is running
        self.early_input = b""  # TLS octets that arrived before start_tls took over
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = math.inf  # when ``timer`` fires
        self.in_content = False
        self.bytes_in = 0
        self.lost = False
        self.shutdown_requested = False
        self.reading_paused: set[str] = set()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        self.services.metrics.inc(CONNECTIONS, listener=self.listener.kind)
        refusal = self.host.admit(self, self.ip)
        if refusal is not None:
            log_event(log, "connection refused", client=self.ip, reply=str(refusal),
                      listener=self.listener.kind)
            if self.listener.settings.implicit_tls:  # no TLS yet to carry a 421
                self.conn.close()
                self._close_transport()
                return
            self.conn.refuse(refusal)
        elif self.listener.settings.implicit_tls:
            self.handshaking = True
            self._begin_tls()  # the greeting follows the handshake
        else:
            self.conn.greet()
        self._pump()
        if not self.conn.closed:
            self._rearm(self.deadlines.first_check(early=True))

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self._early_tls_input(data)
            return
        self.deadlines.activity(self.loop.time(), len(data))
        self.bytes_in += len(data)
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:  # also called by _start_tls when a handshake fails
            return
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
        self._end_transaction()
        self.conn.close()
        self.services.metrics.inc(BYTES_RECEIVED, self.bytes_in)
        self.host.release(self, self.ip)

    def pause_writing(self) -> None:
        self._pause_reading("writing")

    def resume_writing(self) -> None:
        self._resume_reading("writing")

    # --- driving the core ---------------------------------------------------------

    def _pump(self) -> None:
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is PAUSED:
                    if conn.tls_pending and not self.tls_started:
                        self._flush()
                        self._begin_tls()
                        return
                    break
                if event is CLOSED:
                    self._flush()
                    self._close_transport()
                    return
                _HANDLERS[type(event)](self, event)
        except Exception:  # a bug here: log it, keep the other sessions going
            log.exception("smtp session failed", extra={"fields": {"client": self.ip}})
            self._fail()
            return
        self._flush()
        self._after_pump()

    def _after_pump(self) -> None:
        conn, now = self.conn, self.loop.time()
        if conn.in_content != self.in_content:
            self.in_content = conn.in_content
            when = self.deadlines.content(self.in_content, now)
            if when < self.timer_when:  # a later check: the timer looks again when it fires
                self._rearm(when)
        # A line still incomplete, not one we are deciding on, is on the clock.
        self.deadlines.line(conn.pending is None and conn.line_pending, now)
        if conn.pending is not None and conn.buffered > PAUSE_BUFFER:
            self._pause_reading("decision")
        else:
            self._resume_reading("decision")

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _close_transport(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()

    def _fail(self) -> None:
        if self.txn is not None:
            self.txn.discard()
        self.conn.close(REPLY_INTERNAL_ERROR)
        self._flush()
        self._close_transport()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("smtp session task failed", exc_info=task.exception(),
                  extra={"fields": {"client": self.ip}})
        if not self.lost:
            self._fail()

    def _answered(self, event: Event) -> bool:
        """Is ``event`` still the decision the core waits for (the client may be gone)?"""
        return not self.lost and self.conn.pending is event

    def _answer(self, reply: Reply | None) -> None:
        """Our answer to the pending decision (None: the usual yes), then carry on."""
        if reply is None or reply.is_positive:
            self.conn.accept(reply)
        else:
            self.conn.reject(reply)
        self._carry_on()

    def _carry_on(self) -> None:
        """After an answer that took a while: a shutdown may have come meanwhile."""
        if self.shutdown_requested:
            self.conn.close(REPLY_SHUTTING_DOWN)
        self._pump()

    # --- timers -------------------------------------------------------------------

    def _rearm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.lost:
            self.timer = self.loop.call_at(when, self._on_timer)
            self.timer_when = when

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_when = math.inf
        if self.lost or self.conn.closed:
            return
        waiting_for_us = self.conn.pending is not None or self.tls_started and (
            self.conn.tls_pending or self.handshaking)
        verdict = self.deadlines.check(self.loop.time(), waiting_for_us)
        if verdict.reply is None:
            self._rearm(verdict.next_check)
            return
        log_event(log, "smtp timeout", client=self.ip, reply=str(verdict.reply))
        self.conn.close(verdict.reply)
        self._pump()

    def shutdown(self) -> None:
        """Server shutdown: 421 4.3.2 now, or right after a commit in progress."""
        self.shutdown_requested = True
        if self.handshaking:  # nothing to say a 421 over yet
            if self.transport is not None:
                self.transport.abort()
            return
        if self.task is None and not self.lost:
            self.conn.close(REPLY_SHUTTING_DOWN)
            self._pump()

    # --- STARTTLS -----------------------------------------------------------------

    def _begin_tls(self) -> None:
        self.tls_started = True
        self._pause_reading("tls")
        self._spawn(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.transport is not None and self.listener.tls_context is not None
        try:
            transport = await self.loop.start_tls(
                self.transport, self, self.listener.tls_context, server_side=True,
                ssl_handshake_timeout=self.timers.tls_handshake)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log_event(log, "tls handshake failed" if self.handshaking else "starttls failed",
                      level=logging.INFO, client=self.ip, error=str(exc) or type(exc).__name__)
            if self.transport is not None:
                self.transport.abort()
            # asyncio's SSL protocol reports no loss to us when the handshake never
            # completed (uvloop's may): end the session here, once.
            self.loop.call_soon(self.connection_lost, exc)
            return
        if transport is None or self.lost:
            return
        self.transport = transport  # type: ignore[assignment]
        self.reading_paused.clear()
        self.tls_started = False
        if self.handshaking:
            self.handshaking = False
            if self.shutdown_requested:
                self.conn.refuse(REPLY_SHUTTING_DOWN)
            else:
                self.conn.greet()
        else:
            self.conn.tls_established()
        self.deadlines.last_activity = self.loop.time()
        self._pump()

    def _early_tls_input(self, data: bytes) -> None:
        """The first TLS octets reached us before ``start_tls`` took the transport
        over (uvloop may start reading before the handshake task runs).  Hand them to
        the TLS protocol once it is set up: two loop turns, so that they arrive after
        the ``connection_made`` that ``start_tls`` schedules and before any later
        input (``start_tls`` pauses reading until then)."""
        raw = self.transport
        if raw is None:
            return
        self.early_input += data
        self.loop.call_soon(self.loop.call_soon, self._replay_early_input, raw)

    def _replay_early_input(self, raw: asyncio.Transport) -> None:
        data, self.early_input = self.early_input, b""
        replay_early_input(self, raw, data)

    def tls_description(self) -> str:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            return ""
        cipher = ssl_object.cipher()
        return f"{ssl_object.version()} with cipher {cipher[0] if cipher else 'unknown'}"

    # --- decisions ----------------------------------------------------------------

    def _on_helo(self, event: Helo) -> None:
        self.conn.accept()

    def _on_mail(self, event: MailFrom) -> None:
        policy = self.listener.policy
        refusal = policy.check_mail(self.conn.session, event.address)
        self.txn = InboundTransaction(event.address, self.ip, last_refusal=refusal)
        if refusal is not None:
            self.conn.reject(refusal)
            self._log("rejected", refusal)
            return
        reading = policy.sending_allowance(self.conn.session)
        if reading is not None:
            self.task = self._spawn(self._mail_after_limits(event, reading))
            return
        if policy.wants_sender_check(self.ip):
            verdict = policy.check_sender(self.ip, self.conn.session.helo, event.address)
            if asyncio.iscoroutine(verdict):
                self.task = self._spawn(self._check_sender(event, verdict))
            else:
                self._sender_answer(verdict)
            return
        self.conn.accept()

    async def _mail_after_limits(
            self, event: MailFrom,
            reading: Coroutine[Any, Any, SendAllowance | None]) -> None:
        try:
            allowance = await reading
        finally:
            self.task = None
        if not self._answered(event) or self.txn is None:
            return
        limited = allowance.message_refusal() if allowance is not None else None
        if limited is not None:
            self.txn.last_refusal = limited.reply
            log_event(log, "sending limit", client=self.ip, user=allowance.user if allowance
                      else "", reply=str(limited.reply))
            self.conn.reject(limited.reply)
            self._log("rejected", limited.reply)
        else:
            self.txn.allowance = allowance
            self.conn.accept()
        self._carry_on()

    async def _check_sender(self, event: MailFrom,
                            checking: Coroutine[Any, Any, SpfVerdict]) -> None:
        """SPF: the answer to MAIL waits for it (bounded by ``spf.time_budget``)."""
        try:
            verdict = await checking
        finally:
            self.task = None
        if self._answered(event):
            self._sender_answer(verdict)
            self._carry_on()

    def _sender_answer(self, verdict: SpfVerdict) -> None:
        txn = self.txn
        if verdict.result is not None:
            self.services.metrics.inc(SPF_RESULTS, result=str(verdict.result.status))
            if txn is not None:
                txn.spf_result, txn.spf_helo_result = verdict.result, verdict.helo_result
        if verdict.refusal is None:
            self.conn.accept()
            return
        if txn is not None:
            txn.last_refusal = verdict.refusal
        self.conn.reject(verdict.refusal)
        self._log("rejected", verdict.refusal)

    def _on_rcpt(self, event: RcptTo) -> None:
        policy = self.listener.policy
        if not event.mailbox.domain:
            event.address = policy.postmaster_address(event.address)
        refusal = policy.check_rcpt(self.conn.session, event.address)
        allowance = self.txn.allowance if self.txn is not None else None
        if refusal is None and allowance is not None and self.txn is not None:
            limited = allowance.recipient_refusal(len(self.txn.recipients))
            refusal = limited.reply if limited is not None else None
        if refusal is None:
            verdict = policy.check_quota(event.address, self.conn.transaction.declared_size)
            if asyncio.iscoroutine(verdict):
                self.task = self._spawn(self._rcpt_after_quota(event, verdict))
                return
            refusal = verdict
        self._rcpt_answer(event, refusal)

    def _rcpt_answer(self, event: RcptTo, refusal: Reply | None) -> None:
        if refusal is not None:
            self.conn.reject(refusal)
            if self.txn is not None:
                self.txn.last_refusal = refusal
            return
        self.conn.accept()
        if self.txn is not None:
            self.txn.recipients.append(event.address)

    async def _rcpt_after_quota(self, event: RcptTo,
                                verdict: Coroutine[Any, Any, Reply | None]) -> None:
        try:
            refusal = await verdict
        finally:
            self.task = None
        if self._answered(event):
            self._rcpt_answer(event, refusal)
            self._carry_on()

    def _on_data_start(self, event: DataStart) -> None:
        conn, session = self.conn, self.conn.session
        envelope = conn.transaction.envelope(client_ip=self.ip, client_helo=session.helo,
                                             auth_user=session.auth_user, received_at=time.time())
        submission = Submission(
            origin=Origin.SUBMISSION if self.listener.policy.submission else Origin.INBOUND,
            envelope=envelope, tls=self.tls_description(),
            spf=self.txn.spf_result if self.txn is not None else None,
            spf_helo=self.txn.spf_helo_result if self.txn is not None else None,
            protocol=protocol_name(session.extended, session.tls, bool(session.auth_user),
                                   envelope.smtputf8))
        txn = self.txn = self.txn or InboundTransaction(envelope.sender, self.ip)
        try:
            txn.open(self.services.ingest, submission)
        except (StorageError, OSError) as exc:
            log_event(log, "spool open failed", level=logging.ERROR, client=self.ip, error=str(exc))
            conn.reject(REPLY_STORAGE_ERROR)
            self._log("failed", REPLY_STORAGE_ERROR)
            return
        conn.accept()

    def _on_header(self, event: HeaderSection) -> None:
        if self.txn is not None:
            self.txn.header_section(event.block, event.complete)

    def _on_chunk(self, event: DataChunk) -> None:
        if self.txn is not None:
            self.txn.write(event.data)

    def _on_complete(self, event: MessageComplete) -> None:
        txn = self.txn
        writer = txn.take_writer() if txn is not None else None
        if txn is None or writer is None:
            self.conn.reject(REPLY_STORAGE_ERROR)
            self._log("failed", REPLY_STORAGE_ERROR, size=event.size)
            return
        refusal = self.listener.policy.check_content(
            self.conn.session, txn.envelope.recipients if txn.envelope else (), txn.header)
        if refusal is not None:
            writer.abort()
            self.conn.reject(refusal)
            self._log("rejected", refusal, size=event.size)
            return
        self.txn = None  # logged by the commit, whatever happens
        self.task = self._spawn(self._commit(event, writer, txn))

    async def _commit(self, event: MessageComplete, writer: IngestWriter,
                      txn: InboundTransaction) -> None:
        qid = ""
        reply = REPLY_STORAGE_ERROR
        try:
            qid = await writer.commit()
        except (StorageError, OSError) as exc:
            log_event(log, "spool commit failed", level=logging.ERROR, client=self.ip,
                      qid=writer.qid, error=str(exc))
            writer.abort()
        except IngestRefused as exc:
            writer.abort()
            reply = exc.reply
        finally:
            self.task = None
        delivered = bool(qid) and writer.delivered  # into a local mailbox, not queued
        if delivered:
            reply = REPLY_DELIVERED_NOW.with_text(f"Delivered as {qid}")
        elif qid:
            reply = REPLY_QUEUED.with_text(f"Queued as {qid}")
            now = self.services.deliver_now
            if txn.envelope is not None and now is not None and now.applies(txn.envelope):
                verdict = await now.deliver(qid, txn.envelope)
                if verdict is not None:
                    reply, qid = verdict, qid if verdict.is_positive else ""
        txn.log(self.services.metrics, self.ip, self.conn.session.helo,
                "delivered" if delivered else "queued" if qid else "failed", reply, qid=qid,
                size=event.size)
        if self._answered(event):
            self._answer(reply)
        if qid:
            self.services.metrics.inc(MESSAGES_ACCEPTED)
            if not delivered:
                self.host.queued(qid)
            if txn.allowance is not None and txn.envelope is not None:
                self._spawn(self.listener.policy.message_sent(
                    txn.allowance, len(txn.envelope.recipients)))

    def _on_refused(self, event: MessageRefused) -> None:
        if self.txn is not None:
            self.txn.discard()
        self._log("rejected", event.reply, size=event.size)

    def _on_aborted(self, event: TransactionAborted) -> None:
        self._end_transaction()

    def _end_transaction(self) -> None:
        """The transaction ends without a message: log it when it got anywhere."""
        txn, self.txn = self.txn, None
        if txn is not None:
            txn.discard()
            if txn.unfinished:
                txn.log(self.services.metrics, self.ip, self.conn.session.helo,
                        "rejected" if txn.last_refusal else "aborted", txn.last_refusal)

    def _log(self, result: str, reply: Reply | None, size: int = 0) -> None:
        txn, self.txn = self.txn, None
        if txn is not None:
            txn.log(self.services.metrics, self.ip, self.conn.session.helo, result, reply,
                    size=size)

    def _on_credentials(self, event: AuthCredentials) -> None:
        self.task = self._spawn(self._verify_password(event))

    async def _verify_password(self, event: AuthCredentials) -> None:
        try:
            refusal = await self.listener.policy.verify_password(
                self.ip, event.username, event.password, lambda: self._answered(event))
        finally:
            self.task = None
        if self._answered(event):
            self._answer(refusal)

    def _on_scram(self, event: ScramLookup) -> None:
        self.task = self._spawn(self._lookup_scram(event))

    async def _lookup_scram(self, event: ScramLookup) -> None:
        try:
            found = await self.listener.policy.scram_lookup(self.ip, event.username)
        finally:
            self.task = None
        if not self._answered(event):
            return
        if isinstance(found, Reply):
            self.conn.reject(found)
        else:
            self.conn.accept_scram(found)
        self._carry_on()

    def _on_auth_result(self, event: AuthResult) -> None:
        if not event.success:
            self.services.metrics.inc(AUTH_FAILURES)
        result = "ok" if event.success else AUTH_RESULTS.get(event.reply, "refused")
        # Any: log_event's named parameters (exc_info) must not narrow the field values.
        fields: dict[str, Any] = {"reply": str(event.reply)} if event.reply is not None else {}
        log_event(log, "smtp auth", level=logging.INFO if event.success else logging.WARNING,
                  client=self.ip, user=event.username, mechanism=event.mechanism,
                  result=result, **fields)
        if event.mechanism == "SCRAM-SHA-256" and result in ("ok", "failed"):
            # PLAIN and LOGIN are counted by the gate before their reply; SCRAM here.
            self._spawn(self.listener.policy.auth_finished(self.ip, event.username,
                                                           event.success))

    def _on_starttls(self, event: StartTlsRequested) -> None:
        if self.listener.tls_context is None:
            self.conn.reject(REPLY_TLS_UNAVAILABLE)
        else:
            self.conn.accept()

    def _on_vrfy(self, event: Vrfy) -> None:
        reply = self.listener.policy.vrfy(event.argument)
        if reply is None or reply.is_positive:
            self.conn.accept(reply)
        else:
            self.conn.reject(reply)


_HANDLERS: dict[type, Callable[[SmtpSession, Any], None]] = {
    Helo: SmtpSession._on_helo, MailFrom: SmtpSession._on_mail, RcptTo: SmtpSession._on_rcpt,
    DataStart: SmtpSession._on_data_start, DataChunk: SmtpSession._on_chunk,
    HeaderSection: SmtpSession._on_header,
    MessageComplete: SmtpSession._on_complete, MessageRefused: SmtpSession._on_refused,
    TransactionAborted: SmtpSession._on_aborted, AuthCredentials: SmtpSession._on_credentials,
    ScramLookup: SmtpSession._on_scram, AuthResult: SmtpSession._on_auth_result,
    StartTlsRequested: SmtpSession._on_starttls, Vrfy: SmtpSession._on_vrfy,
}
