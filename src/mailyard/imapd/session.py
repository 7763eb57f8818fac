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
from dataclasses import dataclass
from typing import Protocol

from mailyard.directory.addresses import address_key
from mailyard.directory.api import Directory, DirectoryError
from mailyard.imapd.accounts import Account, Accounts
from mailyard.imapd.engine import Limits, MailSession
from mailyard.imapd.folders import FolderCommands, PendingAppend
from mailyard.imapd.logincache import LoginCache
from mailyard.imapd.refusals import write_refusal
from mailyard.imapd.watch import Watcher
from mailyard.listener.session import StreamSession
from mailyard.obs import log_event
from mailyard.proto.imap.events import (
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
from mailyard.proto.imap.server import ImapSettings, ServerConnection, command_of
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


class ImapSession(StreamSession):
    protocol = "imap"
    log = log
    shutting_down_refusal = BYE_SHUTTING_DOWN
    listener: ImapListener
    host: ImapHost
    conn: ServerConnection

    def __init__(self, listener: ImapListener, host: ImapHost) -> None:
        super().__init__(listener, host, ServerConnection(listener.settings))
        self.account: Account | None = None
        self.mail: MailSession | None = None
        self.folders: FolderCommands | None = None
        self.mechanism: Mechanism | None = None
        self.append: PendingAppend | None = None
        self.push: asyncio.Task[None] | None = None

    def _greet_refused(self, refusal: str) -> None:
        self.conn.refuse(refusal, "UNAVAILABLE")

    def _close_on_error(self) -> None:
        self.conn.close(BYE_INTERNAL, "SERVERBUG")

    def _release(self) -> None:
        if self.push is not None and not self.push.done():
            self.push.cancel()
        self._drop_append()
        if self.mail is not None:
            self.mail.leave()
        account, self.account = self.account, None
        if account is not None:
            self.loop.run_in_executor(None, self.host.accounts.release, account)

    # --- driving the core ---------------------------------------------------------

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
            self._refuse(event, *write_refusal(command_of(event), exc, client=self.ip))
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

    async def _drain(self) -> None:
        """Write what the core has and wait until the client takes it."""
        self._flush()
        await self.writable.wait()

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
        self._time_out(functools.partial(self.conn.close, text))

    def shutdown(self) -> None:
        """Server shutdown: ``* BYE`` and close (an APPEND in progress is dropped)."""
        if self._shutdown_early():
            return
        if self.task is not None:
            self.task.cancel()
        self.conn.close(BYE_SHUTTING_DOWN, "UNAVAILABLE")
        self._pump()

    # --- authentication -----------------------------------------------------------

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
