"""One POP3 connection: an ``asyncio.Protocol`` around the sans-IO core
(:class:`~mailyard.proto.pop3.server.Pop3Connection`).

It reads, feeds the core, answers the core's decisions and writes what the core
emits; one decision at a time, so pipelined commands are answered in order:

* ``Login``: the password is checked by the AUTH guard (the directory's argon2id
  check on the guard's threads, within its per-address and per-user failure limits,
  shared with SMTP AUTH); then the maildrop is locked and listed in an executor
  (``-ERR [IN-USE]`` when another session holds it);
* ``AuthStart``: a :class:`~mailyard.pop3d.sasl.MechanismExchange`;
* ``Retrieve``: the message file is read in chunks in an executor and streamed
  through the core, waiting while the client does not read;
* ``Update``: the messages marked deleted are removed, then the lock released.  A
  connection that ends any other way removes nothing.

Timers: ``pop3.idle_timeout`` while the client owes a command, ``pop3.command_timeout``
while the server works on one (a RETR to a client that stops reading),
``pop3.max_session_time`` in all.  Implicit TLS (995): the handshake runs here, like
SMTP's port 465 (a connection over a cap is closed before it, with nothing sent).
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from mailyard.directory.addresses import address_key
from mailyard.directory.api import Directory, DirectoryError
from mailyard.listener.session import StreamSession
from mailyard.obs import log_event
from mailyard.pop3d.maildrop import OpenMaildrop, open_maildrop
from mailyard.pop3d.sasl import MechanismExchange
from mailyard.proto.pop3 import (
    AuthFailed,
    AuthStart,
    Event,
    LoggedIn,
    Login,
    Pop3Connection,
    Pop3Settings,
    Response,
    Retrieve,
    Update,
)
from mailyard.proto.pop3.responses import (
    CODE_SYS_TEMP,
    RESP_AUTH_FAILED,
    RESP_AUTH_MECHANISM,
    RESP_IN_USE,
    RESP_TEMP_FAILURE,
    RESP_TOO_MANY_AUTH_FAILURES,
    RESP_UPDATE_FAILED,
)
from mailyard.proto.smtp.replies import REPLY_AUTH_FAILED, REPLY_AUTH_LOCKED_OUT
from mailyard.sasl.mechanisms import new_mechanism
from mailyard.smtpd.authguard import AuthGate
from mailyard.store.api import MailboxBusy, MailStore

__all__ = ["Pop3Host", "Pop3Listener", "Pop3Session", "Pop3Timers"]

log = logging.getLogger("mailyard.pop3d")

SCRAM = "SCRAM-SHA-256"

# Status lines of the adapter (the core names the protocol's own).
RESP_IDLE_TIMEOUT = Response(False, "Idle timeout, closing connection")
RESP_COMMAND_TIMEOUT = Response(False, "Timeout, closing connection", CODE_SYS_TEMP)
RESP_SESSION_TOO_LONG = Response(False, "Session too long, closing connection")
RESP_SHUTTING_DOWN = Response(False, "Server shutting down", CODE_SYS_TEMP)
RESP_INTERNAL_ERROR = Response(False, "Internal server error, closing connection",
                               CODE_SYS_TEMP)
RESP_MESSAGE_GONE = Response(False, "Message was removed by another program")


@dataclass(frozen=True)
class Pop3Timers:
    idle: float
    command: float
    tls_handshake: float
    max_session: float


@dataclass(frozen=True)
class Pop3Listener:
    """What one listening socket serves."""

    kind: str  # "pop3" (STLS) or "pop3s" (implicit TLS)
    settings: Pop3Settings
    tls_context: ssl.SSLContext | None
    implicit_tls: bool
    timers: Pop3Timers


class Pop3Host(Protocol):
    """The server as its sessions see it: services, admission, release."""

    directory: Directory
    store: MailStore
    auth_gate: AuthGate
    scram_decoy_key: bytes
    scram_iterations: int
    shutting_down: bool

    def admit(self, session: Pop3Session, ip: str) -> Response | None:
        """Register a connection; the refusal when over a cap or shutting down."""
        ...

    def release(self, session: Pop3Session, ip: str) -> None: ...


class Pop3Session(StreamSession):
    protocol = "pop3"
    log = log
    shutting_down_refusal = RESP_SHUTTING_DOWN
    listener: Pop3Listener
    host: Pop3Host
    conn: Pop3Connection

    def __init__(self, listener: Pop3Listener, host: Pop3Host) -> None:
        super().__init__(listener, host, Pop3Connection(listener.settings, tls_active=False))
        self.maildrop: OpenMaildrop | None = None
        self.exchange: MechanismExchange | None = None

    def _greet_refused(self, refusal: Response) -> None:
        self.conn.refuse(refusal)

    def _close_on_error(self) -> None:
        self.conn.close(RESP_INTERNAL_ERROR)

    def _release(self) -> None:
        # nothing is deleted: no Update comes out of a close
        self._release_maildrop()

    def _implicit_tls_ready(self) -> None:
        self.conn.tls_active = True

    # --- driving the core ---------------------------------------------------------

    def _handle(self, event: Event) -> None:
        if isinstance(event, Login):
            self._spawn(self._login(event))
        elif isinstance(event, AuthStart):
            self._spawn(self._auth_start(event))
        elif isinstance(event, AuthFailed):
            self._spawn(self._auth_failed(event))
        elif isinstance(event, Retrieve):
            self._spawn(self._retrieve(event))
        elif isinstance(event, Update):
            self._spawn(self._update(event))
        elif isinstance(event, LoggedIn):
            log_event(log, "pop3 login", client=self.ip, user=event.username,
                      mechanism=event.mechanism, result="ok")

    def _release_maildrop(self) -> None:
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            maildrop.release()

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(None, fn, *args)

    # --- timers -------------------------------------------------------------------

    def _next_check(self) -> float:
        timers = self.listener.timers
        limit = timers.command if self.task is not None else timers.idle
        since = self.task_started if self.task is not None else self.last_activity
        return min(since + limit, self.started + timers.max_session)

    def _on_timer(self) -> None:
        self.timer = None
        if self.lost or self.conn.closed:
            return
        now, timers = self.loop.time(), self.listener.timers
        response = None
        if now >= self.started + timers.max_session:
            response = RESP_SESSION_TOO_LONG
        elif self.task is not None and now >= self.task_started + timers.command:
            response = RESP_COMMAND_TIMEOUT
        elif self.task is None and now >= self.last_activity + timers.idle:
            response = RESP_IDLE_TIMEOUT
        if response is None:
            self._arm(max(self._next_check(), now + 0.05))
            return
        log_event(log, "pop3 timeout", client=self.ip, response=str(response))
        self._time_out(functools.partial(self.conn.close, response))

    def shutdown(self) -> None:
        """Server shutdown: close now (a session in UPDATE finishes its removals)."""
        if self._shutdown_early():
            return
        if self.task is None or not isinstance(self.conn.pending, Update):
            if self.task is not None:
                self.task.cancel()
            self.conn.close(RESP_SHUTTING_DOWN)
            self._pump()

    # --- decisions ----------------------------------------------------------------

    async def _auth_start(self, event: AuthStart) -> None:
        mechanism = new_mechanism(event.mechanism, scram_decoy_key=self.host.scram_decoy_key,
                                  scram_decoy_iterations=self.host.scram_iterations or 4096)
        # SCRAM checks no password the guard could delay: its limits apply before the
        # exchange starts (the address) and at its end (the user).
        if (mechanism is not None and mechanism.name == SCRAM
                and await self.host.auth_gate.admit(self.ip, "") is not None):
            if self._answered(event):
                self.conn.close(RESP_TOO_MANY_AUTH_FAILURES)
                self._pump()
            return
        if not self._answered(event):
            return
        if mechanism is None:
            self.conn.reject(RESP_AUTH_MECHANISM)
        else:
            self.exchange = MechanismExchange(mechanism, self.host.directory.scram_credentials)
            self.conn.accept_auth(self.exchange)
        self._pump()

    async def _auth_failed(self, event: AuthFailed) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None and exchange.lookup_failed:
            if self._answered(event):
                self.conn.close(RESP_TEMP_FAILURE)
                self._pump()
            return
        user = event.username or (exchange.rejected_user if exchange is not None else "")
        if event.mechanism == SCRAM and user:
            await self.host.auth_gate.record(self.ip, user, False)
        log_event(log, "pop3 login", level=logging.WARNING, client=self.ip, user=user,
                  mechanism=event.mechanism, result="failed")
        if self._answered(event):
            self.conn.accept()
            self._pump()

    async def _login(self, event: Login) -> None:
        self.exchange = None
        gate = self.host.auth_gate
        try:
            if event.password is not None:
                reply = await gate.verify(
                    self.ip, event.username,
                    functools.partial(self.host.directory.verify_password, event.username,
                                      event.password),
                    lambda: self._answered(event))
            else:  # SCRAM proved the password already
                reply = await gate.admit(self.ip, event.username, delay=False)
                if reply is None:
                    await gate.record(self.ip, event.username, True)
        except DirectoryError as exc:
            log_event(log, "password check failed", level=logging.ERROR, error=str(exc))
            self._answer_login(event, RESP_TEMP_FAILURE)
            return
        if reply is not None:
            if reply is REPLY_AUTH_LOCKED_OUT:
                if self._answered(event):
                    log_event(log, "pop3 login", level=logging.WARNING, client=self.ip,
                              user=event.username, mechanism=event.mechanism, result="locked")
                    self.conn.close(RESP_TOO_MANY_AUTH_FAILURES)
                    self._pump()
                return
            self._answer_login(event, RESP_AUTH_FAILED if reply is REPLY_AUTH_FAILED
                               else RESP_TEMP_FAILURE)
            return
        if not self._answered(event):
            return
        try:
            maildrop: OpenMaildrop = await self._blocking(
                open_maildrop, self.host.store, address_key(event.username))
        except MailboxBusy:
            self._answer_login(event, RESP_IN_USE)
            return
        except (OSError, ValueError) as exc:  # ValueError: MailboxNameError
            log_event(log, "maildrop open failed", level=logging.ERROR, client=self.ip,
                      user=event.username, error=str(exc))
            self._answer_login(event, RESP_TEMP_FAILURE)
            return
        if not self._answered(event):
            maildrop.release()
            return
        self.maildrop = maildrop
        self.conn.accept_login(maildrop.messages)
        self._pump()

    def _answer_login(self, event: Login, response: Response) -> None:
        if self._answered(event):
            self.conn.reject(response)
            self._pump()

    async def _retrieve(self, event: Retrieve) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        chunks: Generator[bytes, None, None] = maildrop.chunks(event.message)
        try:
            first = await self._blocking(next, chunks, None)
        except FileNotFoundError:
            if self._answered(event):
                self.conn.reject(RESP_MESSAGE_GONE)
                self._pump()
            return
        try:
            if not self._answered(event):
                return
            self.conn.accept()
            chunk: bytes | None = first
            while chunk is not None and not self.conn.content_done:
                self.conn.send_content(chunk)
                self._flush()
                await self.writable.wait()
                if self.lost:
                    return
                chunk = await self._blocking(next, chunks, None)
            self.conn.end_content()
        finally:
            await self._blocking(chunks.close)
        self._pump()

    async def _update(self, event: Update) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        try:
            removed = await self._blocking(maildrop.remove, event.deleted)
            failed = False
        except OSError as exc:
            log_event(log, "pop3 update failed", level=logging.ERROR, client=self.ip,
                      error=str(exc))
            removed, failed = 0, True
        finally:
            self._release_maildrop()
        log_event(log, "pop3 update", client=self.ip, user=self.conn.username,
                  deleted=str(len(event.deleted)), removed=str(removed))
        if self._answered(event):
            if failed:
                self.conn.reject(RESP_UPDATE_FAILED)
            else:
                self.conn.accept()
            self._pump()

