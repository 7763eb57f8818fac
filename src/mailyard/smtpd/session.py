"""One SMTP connection: an ``asyncio.Protocol`` around the sans-IO server core.

It reads, feeds :class:`~mailyard.proto.smtp.server.ServerConnection`, answers the
core's decisions (policy checks, the spool, the directory), writes what the core
emits, and runs the timers.  Replies to a pipelined group go out in one write.

Timeouts: ``smtpd.command_timeout`` while waiting for a command, and a command line
must be complete within ``smtpd.command_timeout`` of its first octet (a client that
trickles one octet at a time gets no more); during message content
``smtpd.data_timeout`` between packets, and after ``smtpd.data_rate_grace`` seconds
the average rate must stay above ``smtpd.min_data_rate``.  Between commands, a session
older than ``smtpd.max_session_time`` is closed.  Time spent waiting for our own
answers (an fsync, a password hash) never counts against the client.

Implicit TLS (port 465): the connection is counted against the connection caps when
it is accepted, like any other, and the handshake runs here (``loop.start_tls``,
within ``smtpd.tls_handshake_timeout``); a connection over a cap is closed without a
reply, as there is no TLS yet to send one over.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Coroutine, cast

from mailyard.directory.api import DirectoryError
from mailyard.envelope import Envelope, split_address
from mailyard.message.headerblock import EMPTY as NO_HEADER
from mailyard.message.headerblock import HeaderSummary, inspect_header, submission_fields
from mailyard.metrics import (AUTH_FAILURES, BYTES_RECEIVED, CONNECTIONS, MESSAGES_ACCEPTED,
                              MESSAGES_REJECTED)
from mailyard.obs import log_event
from mailyard.proto.smtp.events import (
    CLOSED, NEED_DATA, PAUSED, AuthCredentials, AuthResult, DataChunk, DataStart, Event,
    HeaderSection, Helo, MailFrom, MessageComplete, MessageRefused, RcptTo, ScramLookup, StartTlsRequested,
    TransactionAborted, Vrfy,
)
from mailyard.proto.smtp.replies import (
    REPLY_ADDRESS_LITERAL_DENIED, REPLY_AUTH_BUSY, REPLY_AUTH_CANCELLED, REPLY_AUTH_FAILED,
    REPLY_AUTH_LOCKED_OUT, REPLY_AUTH_REQUIRED, REPLY_AUTH_TEMP, REPLY_BARE_LINE_ENDING,
    REPLY_DELIVERED_TO_LOOP, REPLY_DISK_FULL, REPLY_HEADER_FROM_NOT_OWNED,
    REPLY_INTERNAL_ERROR, REPLY_LINE_TOO_LONG, REPLY_LOOP,
    REPLY_MESSAGE_TOO_BIG, REPLY_MUST_STARTTLS, REPLY_QUEUED, REPLY_RELAY_DENIED,
    REPLY_SENDER_NOT_OWNED, REPLY_SESSION_TOO_LONG, REPLY_SHUTTING_DOWN, REPLY_STORAGE_ERROR, REPLY_TEMP_LOOKUP,
    REPLY_TIMEOUT, REPLY_TLS_UNAVAILABLE, REPLY_TOO_SLOW, REPLY_UNKNOWN_USER, Reply,
)
from mailyard.proto.smtp.server import ServerConnection
from mailyard.proto.smtp.session import ServerSettings
from mailyard.queue.api import MessageWriter, StorageError
from mailyard.smtpd.policy import ListenerPolicy
from mailyard.smtpd.received import protocol_name, received_header

if TYPE_CHECKING:
    from mailyard.smtpd.server import SmtpServer

log = logging.getLogger("mailyard.smtpd")

PAUSE_BUFFER = 1 << 20  # stop reading while this much input waits for a decision
RATE_CHECK_INTERVAL = 1.0

REJECT_REASONS: dict[Reply, str] = {
    REPLY_RELAY_DENIED: "relay_denied", REPLY_UNKNOWN_USER: "unknown_user",
    REPLY_SENDER_NOT_OWNED: "sender_not_owned", REPLY_MUST_STARTTLS: "tls_required",
    REPLY_AUTH_REQUIRED: "auth_required", REPLY_DISK_FULL: "disk_full",
    REPLY_STORAGE_ERROR: "storage_error", REPLY_MESSAGE_TOO_BIG: "too_big",
    REPLY_BARE_LINE_ENDING: "bare_line_ending", REPLY_LINE_TOO_LONG: "line_too_long",
    REPLY_LOOP: "loop", REPLY_TEMP_LOOKUP: "lookup_failure",
    REPLY_DELIVERED_TO_LOOP: "loop", REPLY_HEADER_FROM_NOT_OWNED: "header_from_not_owned",
    REPLY_ADDRESS_LITERAL_DENIED: "address_literal",
}


@dataclass
class Listener:
    """What one listening socket serves: its kind, core settings and policy."""

    kind: str
    settings: ServerSettings
    policy: ListenerPolicy
    tls_context: ssl.SSLContext | None


@dataclass
class TransactionRecord:
    """What the per-transaction log line reports."""

    sender: str
    recipients: list[str] = field(default_factory=list)
    last_refusal: Reply | None = None
    data_started: bool = False


# The "result" field of the "smtp auth" log line (fail2ban matches result=failed).
AUTH_RESULTS: dict[Reply | None, str] = {
    REPLY_AUTH_FAILED: "failed", REPLY_AUTH_BUSY: "busy", REPLY_AUTH_LOCKED_OUT: "locked",
    REPLY_AUTH_TEMP: "tempfail", REPLY_AUTH_CANCELLED: "cancelled",
}


def reason_for(reply: Reply) -> str:
    return REJECT_REASONS.get(reply) or f"{reply.code}_{reply.status or 'none'}"


class SmtpSession(asyncio.Protocol):
    def __init__(self, server: SmtpServer, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.conn = ServerConnection(listener.settings)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.counted = False
        self.writer: MessageWriter | None = None
        self.envelope: Envelope | None = None
        self.write_failed = False
        self.header: HeaderSummary = NO_HEADER  # the message's, once its header is read
        self.held: list[bytes] | None = None  # submission: content held until the header ends
        self.record: TransactionRecord | None = None
        self.task: asyncio.Future[Any] | None = None  # our own answer in progress
        self.tls_started = False
        self.handshaking = False  # implicit TLS: the first handshake is running
        self.early_input = b""  # TLS octets that arrived before start_tls took over
        self.line_started: float | None = None  # first octet of an incomplete command line
        self.session_deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.last_activity = 0.0
        self.in_content = False
        self.content_started = 0.0
        self.content_bytes = 0
        self.bytes_in = 0
        self.lost = False
        self.shutdown_requested = False
        self.reading_paused: set[str] = set()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        server = self.server
        server.metrics.inc(CONNECTIONS, listener=self.listener.kind)
        server.sessions.add(self)
        refusal = REPLY_SHUTTING_DOWN if server.shutting_down else server.limiter.acquire(self.ip)
        self.counted = refusal is None
        implicit_tls = self.listener.settings.implicit_tls
        self.last_activity = self.loop.time()
        self.session_deadline = self.last_activity + server.config.smtpd.max_session_time
        if refusal is not None:
            log_event(log, "connection refused", client=self.ip, reply=str(refusal),
                      listener=self.listener.kind)
            if implicit_tls:  # no TLS yet to carry a 421
                self.conn.close()
                self._close_transport()
                return
            self.conn.refuse(refusal)
        elif implicit_tls:
            self.handshaking = True
            self._begin_tls()  # the greeting follows the handshake
        else:
            self.conn.greet()
        self._pump()
        if not self.conn.closed:
            self.timer = self.loop.call_at(min(self.last_activity + self._idle_limit(),
                                               self.session_deadline), self._on_timer)

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self._early_tls_input(data)
            return
        self.last_activity = self.loop.time()
        self.bytes_in += len(data)
        if self.in_content:
            self.content_bytes += len(data)
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
        self._discard_message()
        record = self.record
        if record is not None and (record.data_started or record.last_refusal is not None):
            self._log_record("rejected" if record.last_refusal else "aborted", record.last_refusal)
        self.conn.close()
        if self.counted:
            self.server.limiter.release(self.ip)
            self.counted = False
        self.server.metrics.inc(BYTES_RECEIVED, self.bytes_in)
        self.server.session_ended(self)

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
        except Exception:  # a bug here or in a plug-in: log it, keep other sessions going
            log.exception("smtp session failed", extra={"fields": {"client": self.ip}})
            self._fail()
            return
        self._flush()
        self._after_pump()

    def _after_pump(self) -> None:
        conn = self.conn
        if conn.in_content != self.in_content:
            self.in_content = conn.in_content
            if self.in_content:
                self.content_started = self.loop.time()
                self.content_bytes = 0
                self._rearm(self.content_started + min(self._first_rate_check(),
                                                       self.server.config.smtpd.data_timeout))
            else:  # back to commands: their timeouts, and the session's, apply again
                self._rearm(min(self.loop.time() + self._idle_limit(), self.session_deadline))
        if conn.pending is None and conn.line_pending:
            if self.line_started is None:
                self.line_started = self.loop.time()
        else:
            self.line_started = None  # a line completed, or we are the ones deciding
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
        self._discard_message()
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

    def _pause_reading(self, reason: str) -> None:
        if not self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reading_paused.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self.reading_paused:
            return
        self.reading_paused.discard(reason)
        if not self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- timers -------------------------------------------------------------------

    def _idle_limit(self) -> float:
        smtpd = self.server.config.smtpd
        return smtpd.data_timeout if self.in_content else smtpd.command_timeout

    def _first_rate_check(self) -> float:
        smtpd = self.server.config.smtpd
        return smtpd.data_rate_grace if smtpd.min_data_rate else smtpd.data_timeout

    def _rearm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.lost:
            self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.lost or self.conn.closed:
            return
        now = self.loop.time()
        if self.conn.pending is not None or self.tls_started and (self.conn.tls_pending
                                                                   or self.handshaking):
            # Waiting for ourselves, not the client (a handshake has its own timeout).
            self._rearm(now + self._idle_limit())
            return
        deadline = self.last_activity + self._idle_limit()
        if not self.in_content:
            if now >= self.session_deadline:
                self._timeout(REPLY_SESSION_TOO_LONG)
                return
            if self.line_started is not None:
                deadline = min(deadline, self.line_started + self._idle_limit())
            deadline = min(deadline, self.session_deadline)
        if now >= deadline:
            self._timeout(REPLY_TIMEOUT)
            return
        if self.in_content and self._too_slow(now):
            self._timeout(REPLY_TOO_SLOW)
            return
        if self.in_content and self.server.config.smtpd.min_data_rate:
            deadline = min(deadline, now + RATE_CHECK_INTERVAL)
        self._rearm(deadline)

    def _too_slow(self, now: float) -> bool:
        smtpd = self.server.config.smtpd
        elapsed = now - self.content_started
        if not smtpd.min_data_rate or elapsed < smtpd.data_rate_grace or elapsed <= 0:
            return False
        return self.content_bytes / elapsed < smtpd.min_data_rate

    def _timeout(self, reply: Reply) -> None:
        log_event(log, "smtp timeout", client=self.ip, reply=str(reply))
        self.conn.close(reply)
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
                ssl_handshake_timeout=self._handshake_timeout())
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
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
        self.last_activity = self.loop.time()
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
        tls = raw.get_protocol()
        if not data or tls is self or raw.is_closing():
            return
        if isinstance(tls, asyncio.BufferedProtocol) or hasattr(tls, "get_buffer"):
            view = memoryview(data)
            while view:
                buf = tls.get_buffer(len(view))  # type: ignore[attr-defined]
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                tls.buffer_updated(n)  # type: ignore[attr-defined]
                view = view[n:]
        else:
            cast(asyncio.Protocol, tls).data_received(data)

    def _handshake_timeout(self) -> float:
        smtpd = self.server.config.smtpd
        return min(smtpd.command_timeout, smtpd.tls_handshake_timeout)

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
        refusal = self.listener.policy.check_mail(self.conn.session, event.address)
        if refusal is not None:
            self.conn.reject(refusal)
            self.record = TransactionRecord(event.address, last_refusal=refusal)
            self._log_record("rejected", refusal)
            return
        self.conn.accept()
        self.record = TransactionRecord(event.address)

    def _on_rcpt(self, event: RcptTo) -> None:
        policy = self.listener.policy
        if not event.mailbox.domain:
            event.address = policy.postmaster_address(event.address)
        refusal = policy.check_rcpt(self.conn.session, event.address)
        if refusal is not None:
            self.conn.reject(refusal)
            if self.record is not None:
                self.record.last_refusal = refusal
            return
        self.conn.accept()
        if self.record is not None:
            self.record.recipients.append(event.address)

    def _on_data_start(self, event: DataStart) -> None:
        conn = self.conn
        session = conn.session
        envelope = conn.transaction.envelope(client_ip=self.ip, client_helo=session.helo,
                                             auth_user=session.auth_user, received_at=time.time())
        if self.record is not None:
            self.record.data_started = True
        writer: MessageWriter | None = None
        try:
            writer = self.server.spool.open_message(envelope)
            protocol = protocol_name(session.extended, session.tls, bool(session.auth_user),
                                     envelope.smtputf8)
            received = received_header(
                helo=session.helo, ip=self.ip, hostname=self.server.config.hostname,
                protocol=protocol, qid=writer.qid,
                recipients=tuple(r.address for r in envelope.recipients),
                tls=self.tls_description())
            if self.listener.policy.submission:
                self.held = [received]  # Date/Message-ID may follow it (_on_header)
            else:
                writer.write(received)
        except (StorageError, OSError) as exc:
            log_event(log, "spool open failed", level=logging.ERROR, client=self.ip, error=str(exc))
            if writer is not None:
                writer.abort()
            conn.reject(REPLY_STORAGE_ERROR)
            self._log_record("failed", REPLY_STORAGE_ERROR)
            return
        self.writer = writer
        self.envelope = envelope
        self.write_failed = False
        self.header = NO_HEADER
        conn.accept()

    def _on_header(self, event: HeaderSection) -> None:
        """The header section, read once: kept for the end-of-data checks; on
        submission the held content goes out after the Received field, with Date and
        Message-ID when the client left them out (RFC 6409 8.2, 8.3)."""
        self.header = inspect_header(event.block, event.complete)
        held, self.held = self.held, None
        if held is None or self.writer is None:
            return
        held.insert(1, submission_fields(self.header, self.server.config.hostname,
                                         time.time()))
        self._write(b"".join(held))

    def _on_chunk(self, event: DataChunk) -> None:
        if self.held is not None:
            self.held.append(event.data)
            return
        self._write(event.data)

    def _write(self, data: bytes) -> None:
        writer = self.writer
        if writer is None or self.write_failed:
            return
        try:
            writer.write(data)
        except (StorageError, OSError) as exc:
            log_event(log, "spool write failed", level=logging.ERROR, client=self.ip,
                      qid=writer.qid, error=str(exc))
            self.write_failed = True
            writer.abort()

    def _on_complete(self, event: MessageComplete) -> None:
        writer, self.writer = self.writer, None
        if writer is None or self.write_failed:
            self.conn.reject(REPLY_STORAGE_ERROR)
            self._log_record("failed", REPLY_STORAGE_ERROR, size=event.size)
            return
        refusal = self.listener.policy.check_content(
            self.conn.session, self.envelope.recipients if self.envelope else (), self.header)
        if refusal is not None:
            writer.abort()
            self.conn.reject(refusal)
            self._log_record("rejected", refusal, size=event.size)
            return
        record, self.record = self.record, None  # logged by the commit, whatever happens
        self.task = self._spawn(self._commit(event, writer, record))

    async def _commit(self, event: MessageComplete, writer: MessageWriter,
                      record: TransactionRecord | None) -> None:
        qid = ""
        try:
            qid = await writer.commit()
        except (StorageError, OSError) as exc:
            log_event(log, "spool commit failed", level=logging.ERROR, client=self.ip,
                      qid=writer.qid, error=str(exc))
            writer.abort()
        finally:
            self.task = None
        reply = REPLY_QUEUED.with_text(f"Queued as {qid}") if qid else REPLY_STORAGE_ERROR
        relay, envelope = self.server.relay, self.envelope
        if qid and relay is not None and envelope is not None and relay.applies(envelope):
            verdict = await relay.forward(qid, envelope)
            if verdict is not None:
                reply = verdict
                if not verdict.is_positive:
                    qid = ""
        self.record = record
        self._log_record("queued" if qid else "failed", reply, qid=qid, size=event.size)
        if self._answered(event):
            if reply.is_positive:
                self.conn.accept(reply)
            else:
                self.conn.reject(reply)
            if self.shutdown_requested:
                self.conn.close(REPLY_SHUTTING_DOWN)
            self._pump()
        if qid:
            self.server.metrics.inc(MESSAGES_ACCEPTED)
            self.server.notify_queued(qid)

    def _on_refused(self, event: MessageRefused) -> None:
        self._discard_message()
        self._log_record("rejected", event.reply, size=event.size)

    def _on_aborted(self, event: TransactionAborted) -> None:
        self._discard_message()
        record = self.record
        if record is not None and (record.data_started or record.last_refusal is not None):
            self._log_record("rejected" if record.last_refusal else "aborted",
                             record.last_refusal)
        self.record = None

    def _discard_message(self) -> None:
        self.held = None
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()

    def _on_credentials(self, event: AuthCredentials) -> None:
        self.task = self._spawn(self._verify_password(event))

    async def _verify_password(self, event: AuthCredentials) -> None:
        """PLAIN/LOGIN: within the AUTH guard's limits (mailyard.smtpd.authguard)."""
        directory = self.server.directory
        try:
            refusal = await self.server.auth_gate.verify(
                self.ip, event.username,
                functools.partial(directory.verify_password, event.username, event.password),
                lambda: self._answered(event))
        except DirectoryError as exc:
            log_event(log, "password check failed", level=logging.ERROR, error=str(exc))
            refusal = REPLY_AUTH_TEMP
        finally:
            self.task = None
        if not self._answered(event):
            return
        if refusal is None:
            self.conn.accept()
        else:
            self.conn.reject(refusal)
        if self.shutdown_requested:
            self.conn.close(REPLY_SHUTTING_DOWN)
        self._pump()

    def _on_scram(self, event: ScramLookup) -> None:
        self.task = self._spawn(self._lookup_scram(event))

    async def _lookup_scram(self, event: ScramLookup) -> None:
        try:
            refusal = await self.server.auth_gate.admit(self.ip, event.username)
        finally:
            self.task = None
        if not self._answered(event):
            return
        if refusal is not None:
            self.conn.reject(refusal)
        else:
            try:
                credentials = self.server.directory.scram_credentials(event.username)
            except DirectoryError:
                self.conn.reject(REPLY_AUTH_TEMP)
            else:
                self.conn.accept_scram(credentials)
        if self.shutdown_requested:
            self.conn.close(REPLY_SHUTTING_DOWN)
        self._pump()

    def _on_auth_result(self, event: AuthResult) -> None:
        if not event.success:
            self.server.metrics.inc(AUTH_FAILURES)
        result = "ok" if event.success else AUTH_RESULTS.get(event.reply, "refused")
        fields = {"reply": str(event.reply)} if event.reply is not None else {}
        log_event(log, "smtp auth", level=logging.INFO if event.success else logging.WARNING,
                  client=self.ip, user=event.username, mechanism=event.mechanism,
                  result=result, **fields)
        if event.mechanism == "SCRAM-SHA-256" and result in ("ok", "failed"):
            # PLAIN and LOGIN are counted by the gate before their reply; SCRAM here.
            self._spawn(self.server.auth_gate.record(self.ip, event.username, event.success))

    def _on_starttls(self, event: StartTlsRequested) -> None:
        if self.listener.tls_context is None:
            self.conn.reject(REPLY_TLS_UNAVAILABLE)
        else:
            self.conn.accept()

    def _on_vrfy(self, event: Vrfy) -> None:
        address = event.argument.strip().strip("<>")
        local, domain = split_address(address)
        directory = self.server.directory
        try:
            directory.refresh()
            if domain and directory.is_local_domain(domain):
                if directory.recipient_exists(address):
                    self.conn.accept(Reply(250, "2.1.5", f"<{address}>"))
                else:
                    self.conn.reject(REPLY_UNKNOWN_USER)
                return
        except DirectoryError:
            self.conn.reject(REPLY_TEMP_LOOKUP)
            return
        self.conn.accept()

    # --- logging ------------------------------------------------------------------

    def _log_record(self, result: str, reply: Reply | None, qid: str = "", size: int = 0) -> None:
        record, self.record = self.record, None
        if record is None:
            return
        if result != "queued":
            self.server.metrics.inc(MESSAGES_REJECTED,
                                    reason=reason_for(reply) if reply else result)
        log_event(log, "smtp transaction", qid=qid, client=self.ip, helo=self.conn.session.helo,
                  sender=record.sender, to=",".join(record.recipients), size=size,
                  result=result, reply=str(reply) if reply else "")


_HANDLERS: dict[type, Callable[[SmtpSession, Any], None]] = {
    Helo: SmtpSession._on_helo, MailFrom: SmtpSession._on_mail, RcptTo: SmtpSession._on_rcpt,
    DataStart: SmtpSession._on_data_start, DataChunk: SmtpSession._on_chunk,
    HeaderSection: SmtpSession._on_header,
    MessageComplete: SmtpSession._on_complete, MessageRefused: SmtpSession._on_refused,
    TransactionAborted: SmtpSession._on_aborted, AuthCredentials: SmtpSession._on_credentials,
    ScramLookup: SmtpSession._on_scram, AuthResult: SmtpSession._on_auth_result,
    StartTlsRequested: SmtpSession._on_starttls, Vrfy: SmtpSession._on_vrfy,
}
