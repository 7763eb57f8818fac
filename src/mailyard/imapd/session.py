"""One IMAP connection: an ``asyncio.Protocol`` around the sans-IO core
(:class:`~mailyard.proto.imap.server.ServerConnection`), shaped like the POP3
session (:mod:`mailyard.pop3d.session`).

It reads, feeds the core, answers the core's decisions and writes what the core
emits; one decision at a time, so pipelined commands are answered in order:

* LOGIN and AUTHENTICATE PLAIN: the password is checked by the AUTH guard (argon2id
  on the guard's threads, per-address and per-user failure limits shared with SMTP
  and POP3: delays, then ``* BYE``); SCRAM-SHA-256 looks the stored keys up in an
  executor and counts its outcome with the same guard.  Then the user's account
  (mailbox index) is opened in an executor;
* mailbox commands go to the :class:`~mailyard.imapd.engine.MailSession` and the
  :class:`~mailyard.imapd.folders.FolderCommands` of the session;
* APPEND's message pieces are written to an anonymous temporary file as they come
  (a write into the page cache; reading stops while the core holds a decision);
* IDLE: the folder's watch wakes the session, which pushes what changed.

Timers: ``imap.login_timeout`` until authenticated, ``imap.idle_timeout`` while
the client owes a command (IDLE included), ``imap.command_timeout`` while the
server works on one.  Implicit TLS (993): the handshake runs here, as for SMTP's
465 and POP3's 995.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, cast

from mailyard.directory.addresses import address_key
from mailyard.directory.api import Directory, DirectoryError
from mailyard.imapd.accounts import Account, Accounts
from mailyard.imapd.engine import Limits, MailSession
from mailyard.imapd.folders import FolderCommands, PendingAppend
from mailyard.imapd.logincache import LoginCache
from mailyard.imapd.watch import Watcher
from mailyard.obs import log_event
from mailyard.proto.imap.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AppendAborted,
    AppendComplete,
    AppendData,
    AppendRequested,
    AuthenticateStep,
    AuthResult,
    ClientId,
    CommandRequested,
    CopyRequested,
    Decision,
    Event,
    ExpungeRequested,
    FetchRequested,
    IdleDone,
    IdleRequested,
    ListRequested,
    LoginRequested,
    SaslChallenge,
    SaslFailure,
    SaslSuccess,
    SearchRequested,
    SelectRequested,
    StartTlsRequested,
    StatusRequested,
    StoreRequested,
)
from mailyard.proto.imap.server import ImapSettings, ServerConnection
from mailyard.proto.imap.states import State
from mailyard.proto.smtp.replies import (
    REPLY_AUTH_BUSY,
    REPLY_AUTH_FAILED,
    REPLY_AUTH_LOCKED_OUT,
    Reply,
)
from mailyard.sasl.mechanisms import Mechanism, new_mechanism
from mailyard.sasl.scram import ScramSha256Mechanism
from mailyard.sasl.steps import (
    Challenge,
    Credentials,
    Failure,
    FailureReason,
    NeedScramCredentials,
    Step,
    Success,
)
from mailyard.smtpd.authguard import AuthGate
from mailyard.store.api import MailboxNameError
from mailyard.store.index import FolderNotFound

__all__ = ["ImapHost", "ImapListener", "ImapSession", "ImapTimers"]

log = logging.getLogger("mailyard.imapd")

SCRAM = "SCRAM-SHA-256"
PAUSE_BUFFER = 64 * 1024  # stop reading while this much pipelined input waits
FOLDER_COMMANDS = frozenset({"CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE"})

BYE_SHUTTING_DOWN = "Server shutting down"
BYE_INTERNAL = "Internal server error, closing connection"
BYE_LOCKED = "Too many authentication failures"


@dataclass(frozen=True)
class ImapTimers:
    login: float
    idle: float
    command: float
    tls_handshake: float


@dataclass(frozen=True)
class ImapListener:
    """What one listening socket serves."""

    kind: str  # "imap" (STARTTLS) or "imaps" (implicit TLS)
    settings: ImapSettings
    tls_context: ssl.SSLContext | None
    implicit_tls: bool
    timers: ImapTimers


class ImapHost(Protocol):
    """The server as its sessions see it."""

    directory: Directory
    accounts: Accounts
    watcher: Watcher
    auth_gate: AuthGate
    login_cache: LoginCache
    limits: Limits
    scram_decoy_key: bytes
    scram_iterations: int
    shutting_down: bool

    def admit(self, session: ImapSession, ip: str) -> str | None:
        """Register a connection; the BYE text when over a cap or shutting down."""
        ...

    def release(self, session: ImapSession, ip: str) -> None: ...


class ImapSession(asyncio.Protocol):
    def __init__(self, listener: ImapListener, host: ImapHost) -> None:
        self.listener = listener
        self.host = host
        self.loop = asyncio.get_running_loop()
        self.conn = ServerConnection(listener.settings)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.account: Account | None = None
        self.mail: MailSession | None = None
        self.folders: FolderCommands | None = None
        self.mechanism: Mechanism | None = None
        self.append: PendingAppend | None = None
        self.task: asyncio.Task[None] | None = None
        self.push: asyncio.Task[None] | None = None
        self.task_started = 0.0
        self.started = self.loop.time()
        self.last_activity = self.started
        self.timer: asyncio.TimerHandle | None = None
        self.handshaking = False
        self.tls_started = False
        self.early_input = b""
        self.lost = False
        self.reading_paused: set[str] = set()
        self.writable = asyncio.Event()
        self.writable.set()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        refusal = self.host.admit(self, self.ip)
        if refusal is not None:
            log_event(log, "connection refused", client=self.ip, response=refusal,
                      listener=self.listener.kind)
            if self.listener.implicit_tls:  # no TLS yet to carry the refusal
                self.conn.close()
                self._close_transport()
                return
            self.conn.refuse(refusal, "UNAVAILABLE")
        elif self.listener.implicit_tls:
            self.handshaking = True
            self._begin_tls()
        else:
            self.conn.greet()
        self._pump()
        if not self.conn.closed:
            self._arm(self._next_check())

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self._early_tls_input(data)
            return
        self.last_activity = self.loop.time()
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.writable.set()
        if self.timer is not None:
            self.timer.cancel()
        self.conn.close()
        for task in (self.task, self.push):
            if task is not None and not task.done():
                task.cancel()
        self._drop_append()
        if self.mail is not None:
            self.mail.leave()
        account, self.account = self.account, None
        if account is not None:
            self.loop.run_in_executor(None, self.host.accounts.release, account)
        self.host.release(self, self.ip)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

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
                assert isinstance(event, Event)
                self._handle(event)
        except Exception:  # a bug here: log it, keep the other sessions going
            log.exception("imap session failed", extra={"fields": {"client": self.ip}})
            self._fail()
            return
        self._flush()
        if conn.pending is not None and conn.buffered > PAUSE_BUFFER:
            self._pause_reading("decision")
        else:
            self._resume_reading("decision")

    def _handle(self, event: Event) -> None:
        if isinstance(event, AppendData):
            if self.append is not None:
                self.append.write(event.data)
            return
        if isinstance(event, Decision):
            self._spawn(self._decide(event))
        elif isinstance(event, AppendAborted):
            self._drop_append()
        elif isinstance(event, IdleDone):
            if self.mail is not None:
                self.mail.on_change = lambda: None
        elif isinstance(event, AuthResult):
            log_event(log, "imap login", level=logging.INFO if event.success
                      else logging.WARNING, client=self.ip, user=event.username,
                      mechanism=event.mechanism, result="ok" if event.success else "failed")
        elif isinstance(event, ClientId) and event.parameters:
            log_event(log, "imap client id", client=self.ip,
                      id=" ".join(f"{k}={v}" for k, v in event.parameters)[:200])

    async def _decide(self, event: Decision) -> None:
        try:
            await self._answer(event)
        except FolderNotFound:  # deleted or renamed by another session meanwhile
            self._refuse(event, "Mailbox does not exist any more", "NONEXISTENT")
        except (MailboxNameError, OSError) as exc:  # the index or the disk failed
            log_event(log, "imap command failed", level=logging.ERROR, client=self.ip,
                      error=str(exc))
            self._refuse(event, "Server error, try again", "SERVERBUG")
        self._pump()

    def _refuse(self, event: Decision, text: str, code: str) -> None:
        if not self._answered(event):
            return
        if isinstance(event, AuthenticateStep):
            self.conn.sasl_step(SaslFailure(text, code))
        else:
            self.conn.complete("NO", text, code)

    async def _answer(self, event: Decision) -> None:
        mail, folders = self.mail, self.folders
        if isinstance(event, StartTlsRequested):
            self.conn.accept()
        elif isinstance(event, LoginRequested):
            await self._login(event)
        elif isinstance(event, AuthenticateStep):
            await self._authenticate(event)
        elif mail is None or folders is None:
            self.conn.complete("NO", "Not available", "UNAVAILABLE")
        elif isinstance(event, SelectRequested):
            await mail.select(event)
        elif isinstance(event, FetchRequested):
            await mail.fetch(event)
        elif isinstance(event, StoreRequested):
            await mail.store(event)
        elif isinstance(event, SearchRequested):
            await mail.search(event)
        elif isinstance(event, CopyRequested):
            await mail.copy(event)
        elif isinstance(event, ExpungeRequested):
            await mail.expunge(event)
        elif isinstance(event, ListRequested):
            await folders.list_(event)
        elif isinstance(event, StatusRequested):
            await folders.status(event)
        elif isinstance(event, AppendRequested):
            self.append = await folders.append_requested(event)
            if self.append is not None and mail.answering(event):
                self.conn.accept()
        elif isinstance(event, AppendComplete):
            pending, self.append = self.append, None
            if pending is not None:
                await folders.append_complete(event, pending)
            else:
                mail.done(event, "NO", "APPEND failed", "SERVERBUG")
        elif isinstance(event, IdleRequested):
            await self._idle(event, mail)
        elif isinstance(event, CommandRequested):
            if event.command.name in FOLDER_COMMANDS:
                await folders.command(event)
            elif event.command.name in ("GETQUOTA", "GETQUOTAROOT"):
                await folders.quota(event)
            else:
                await mail.command(event)
        else:
            self.conn.complete("BAD", "Not supported")

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    async def _drain(self) -> None:
        """Write what the core has and wait until the client takes it."""
        self._flush()
        await self.writable.wait()

    def _close_transport(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def _fail(self) -> None:
        self.conn.close(BYE_INTERNAL, "SERVERBUG")
        self._flush()
        self._close_transport()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = self.loop.create_task(coro)
        self.task_started = self.loop.time()
        self.task.add_done_callback(self._task_done)
        if self.timer is not None:
            self._arm(self._next_check())

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task is self.task:
            self.task = None
            self.last_activity = self.loop.time()
            if self.timer is not None:
                self._arm(self._next_check())
        if task.cancelled() or task.exception() is None:
            return
        log.error("imap session task failed", exc_info=task.exception(),
                  extra={"fields": {"client": self.ip}})
        if not self.lost:
            self._fail()

    def _pause_reading(self, reason: str) -> None:
        transport = self.transport
        if not self.reading_paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self.reading_paused.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self.reading_paused:
            return
        self.reading_paused.discard(reason)
        transport = self.transport
        if not self.reading_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _drop_append(self) -> None:
        pending, self.append = self.append, None
        if pending is not None:
            pending.close()

    # --- timers -------------------------------------------------------------------

    def _next_check(self) -> float:
        timers = self.listener.timers
        if self.task is not None:
            return self.task_started + timers.command
        if self.conn.state is State.NOT_AUTHENTICATED:
            return min(self.started + timers.login, self.last_activity + timers.idle)
        return self.last_activity + timers.idle

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if self.lost else self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.lost or self.conn.closed:
            return
        now = self.loop.time()
        due = self._next_check()
        if now < due:
            self._arm(due)
            return
        text = "Timeout, closing connection" if self.task is not None \
            else "Autologout; idle for too long"
        log_event(log, "imap timeout", client=self.ip, response=text)
        stuck = self.task is not None and not self.writable.is_set()
        if self.task is not None:
            self.task.cancel()
        self.conn.close(text)
        self._pump()
        if stuck and self.transport is not None:
            self.transport.abort()  # a client that stopped reading: nothing would flush

    def shutdown(self) -> None:
        """Server shutdown: ``* BYE`` and close (an APPEND in progress is dropped)."""
        if self.lost:
            return
        if self.handshaking:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.task is not None:
            self.task.cancel()
        self.conn.close(BYE_SHUTTING_DOWN, "UNAVAILABLE")
        self._pump()

    # --- TLS ----------------------------------------------------------------------

    def _begin_tls(self) -> None:
        self.tls_started = True
        self._pause_reading("tls")
        self._spawn(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.transport is not None and self.listener.tls_context is not None
        try:
            transport = await self.loop.start_tls(
                self.transport, self, self.listener.tls_context, server_side=True,
                ssl_handshake_timeout=self.listener.timers.tls_handshake)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log_event(log, "tls handshake failed", level=logging.INFO, client=self.ip,
                      error=str(exc) or type(exc).__name__)
            if self.transport is not None:
                self.transport.abort()
            self.loop.call_soon(self.connection_lost, exc)
            return
        if transport is None or self.lost:
            return
        self.transport = transport
        self.reading_paused.clear()
        self.tls_started = False
        if self.handshaking:
            self.handshaking = False
            if self.host.shutting_down:
                self.conn.refuse(BYE_SHUTTING_DOWN, "UNAVAILABLE")
            else:
                self.conn.greet()
        else:
            self.conn.tls_established()
        self.last_activity = self.loop.time()
        self.loop.call_soon(self._pump)

    def _early_tls_input(self, data: bytes) -> None:
        """TLS octets that reached us before ``start_tls`` took the transport over
        (see :meth:`mailyard.pop3d.session.Pop3Session._early_tls_input`)."""
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
                buf = tls.get_buffer(len(view))
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                tls.buffer_updated(n)  # type: ignore[attr-defined]
                view = view[n:]
        else:
            cast(asyncio.Protocol, tls).data_received(data)

    # --- authentication -----------------------------------------------------------

    def _answered(self, event: Decision) -> bool:
        return not self.lost and self.conn.pending is event

    async def _login(self, event: LoginRequested) -> None:
        reply = await self._check_password(event.username, event.password, event)
        if not self._answered(event):
            return
        if reply is REPLY_AUTH_LOCKED_OUT:
            self.conn.close(BYE_LOCKED)
            return
        if reply is not None:
            self.conn.complete("NO", *_refusal(reply))
            return
        if await self._open_account(event.username, event):
            self.conn.complete("OK")

    async def _check_password(self, username: str, password: str,
                              event: Decision) -> Reply | None:
        """The AUTH guard's verdict on a password (None: good), through the login
        cache; a directory failure is answered as a temporary one."""
        gate, cache = self.host.auth_gate, self.host.login_cache
        key = address_key(username)
        try:
            if not cache.hit(key, password):
                await cache.wait(key, password)  # the same login under way: its result
            if cache.hit(key, password):
                reply = await gate.admit(self.ip, username, delay=False)
                if reply is None:
                    await gate.record(self.ip, username, True)
                return reply
            with cache.verifying(key, password):
                reply = await gate.verify(
                    self.ip, username,
                    functools.partial(self.host.directory.verify_password, username,
                                      password),
                    lambda: self._answered(event))
        except DirectoryError as exc:
            log_event(log, "password check failed", level=logging.ERROR, error=str(exc))
            return REPLY_AUTH_BUSY
        if reply is None:
            cache.remember(key, password)
        return reply

    async def _open_account(self, username: str, event: Decision) -> bool:
        """Open the user's mailbox for the session; False (answered) if it fails."""
        try:
            account = await self.loop.run_in_executor(None, self.host.accounts.open,
                                                      address_key(username))
        except (OSError, ValueError) as exc:  # ValueError: MailboxNameError
            log_event(log, "mailbox open failed", level=logging.ERROR, client=self.ip,
                      user=username, error=str(exc))
            if self._answered(event):
                if isinstance(event, AuthenticateStep):
                    self.conn.sasl_step(SaslFailure("Mailbox unavailable", "UNAVAILABLE"))
                else:
                    self.conn.complete("NO", "Mailbox unavailable", "UNAVAILABLE")
            return False
        if not self._answered(event):
            self.loop.run_in_executor(None, self.host.accounts.release, account)
            return False
        self.account = account
        self.mail = MailSession(self.conn, account, self.host.watcher, self.host.limits,
                                self._drain, functools.partial(
                                    self.host.directory.quota_limits, account.address))
        self.folders = FolderCommands(self.mail)
        return True

    async def _authenticate(self, event: AuthenticateStep) -> None:
        if event.first:
            self.mechanism = new_mechanism(
                event.mechanism, scram_decoy_key=self.host.scram_decoy_key,
                scram_decoy_iterations=self.host.scram_iterations or 4096)
            if self.mechanism is None:
                self.conn.sasl_step(SaslFailure("Unsupported mechanism", "CANNOT"))
                return
            if (self.mechanism.name == SCRAM
                    and await self.host.auth_gate.admit(self.ip, "") is not None):
                if self._answered(event):
                    self.conn.close(BYE_LOCKED)
                return
            step = self.mechanism.start(event.response)
        else:
            assert self.mechanism is not None
            step = self.mechanism.respond(event.response or b"")
        await self._sasl(event, step)

    async def _sasl(self, event: AuthenticateStep, step: Step) -> None:
        mechanism = self.mechanism
        assert mechanism is not None
        if isinstance(step, NeedScramCredentials):
            assert isinstance(mechanism, ScramSha256Mechanism)
            try:
                found = await self.loop.run_in_executor(
                    None, self.host.directory.scram_credentials, step.username)
            except DirectoryError:
                if self._answered(event):
                    self.conn.sasl_step(SaslFailure("Temporary failure", "UNAVAILABLE"))
                return
            step = mechanism.set_credentials(found)
        if not self._answered(event):
            return
        if isinstance(step, Challenge):
            self.conn.sasl_step(SaslChallenge(step.data))
        elif isinstance(step, Credentials):
            await self._sasl_password(event, step)
        elif isinstance(step, Success):
            gate = self.host.auth_gate
            if await gate.admit(self.ip, step.username, delay=False) is not None:
                if self._answered(event):
                    self.conn.close(BYE_LOCKED)
                return
            await gate.record(self.ip, step.username, True)
            if await self._open_account(step.username, event):
                self.conn.sasl_step(SaslSuccess(step.username))
        else:
            assert isinstance(step, Failure)
            if step.reason is FailureReason.REJECTED and step.username:
                await self.host.auth_gate.record(self.ip, step.username, False)
            if self._answered(event):
                self.conn.sasl_step(SaslFailure())

    async def _sasl_password(self, event: AuthenticateStep, step: Credentials) -> None:
        reply = await self._check_password(step.username, step.password, event)
        if not self._answered(event):
            return
        if reply is REPLY_AUTH_LOCKED_OUT:
            self.conn.close(BYE_LOCKED)
        elif reply is not None:
            self.conn.sasl_step(SaslFailure(*_refusal(reply)))
        elif await self._open_account(step.username, event):
            self.conn.sasl_step(SaslSuccess(step.username))

    # --- IDLE ---------------------------------------------------------------------

    async def _idle(self, event: IdleRequested, mail: MailSession) -> None:
        if mail.watch is not None:
            await mail.watcher.check(mail.watch)
        await mail.refresh()
        if not self._answered(event):
            return
        self.conn.accept()
        mail.flush(expunges=True)
        mail.on_change = self._idle_wake
        self._flush()

    def _idle_wake(self) -> None:
        if self.lost or not self.conn.idling or (self.push is not None and not self.push.done()):
            return
        self.push = self.loop.create_task(self._idle_push())

    async def _idle_push(self) -> None:
        mail = self.mail
        if mail is None:
            return
        try:
            await mail.refresh()
        except OSError as exc:
            log_event(log, "idle refresh failed", level=logging.WARNING, error=str(exc))
            return
        if self.conn.idling:
            mail.flush(expunges=True)
            self._flush()
        if mail.watch is not None and mail.watch.generation != mail.generation:
            self._idle_wake_later()

    def _idle_wake_later(self) -> None:
        self.loop.call_soon(self._idle_wake)


def _refusal(reply: Reply) -> tuple[str, str]:
    """(text, code) of the tagged NO for the AUTH guard's refusal."""
    if reply is REPLY_AUTH_FAILED:
        return "Authentication failed", "AUTHENTICATIONFAILED"
    return "Too many logins at once, try again", "UNAVAILABLE"
