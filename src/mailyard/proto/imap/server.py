"""The IMAP server protocol core, sans-IO (RFC 9051, RFC 3501; see the package
docstring for why it is hand-written).

Bytes in, events out; decisions in, response bytes out::

    conn = ServerConnection(settings)
    conn.greet()
    conn.receive_data(data)              # b"" means the peer closed
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
        if event.needs_decision:
            conn.respond(...); conn.complete("OK")   # now or later
    transport.write(conn.data_to_send())

The framing (lines, literals, APPEND streaming), the connection's state and the
reply helpers are in :mod:`mailyard.proto.imap.server_framing`; the commands of the
not-authenticated state in :mod:`mailyard.proto.imap.server_auth`, those of the
authenticated and selected states in :mod:`mailyard.proto.imap.server_mailbox`.  This
module holds the adapter API, the dispatch and the commands valid in any state.

The state table is :mod:`mailyard.proto.imap.states`; the grammar
:mod:`mailyard.proto.imap.parser`.
"""

from __future__ import annotations

from collections.abc import Callable

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import Command, Id
from mailyard.proto.imap.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AppendComplete,
    AppendRequested,
    AuthenticateStep,
    ClientId,
    CommandRequested,
    Decision,
    Event,
    IdleRequested,
    LoginRequested,
    LogoutRequested,
    SelectRequested,
    Sentinel,
    StartTlsRequested,
)
from mailyard.proto.imap.parser import ParseError, command_name, parse_command, parse_tag
from mailyard.proto.imap.server_auth import AuthCommands
from mailyard.proto.imap.server_framing import LITERAL_MINUS_LIMIT, LocalProtocolError
from mailyard.proto.imap.server_mailbox import MailboxCommands
from mailyard.proto.imap.session import ImapSettings, Session
from mailyard.proto.imap.states import ON_NO, ON_OK, Mode, State

__all__ = ["LITERAL_MINUS_LIMIT", "ImapSettings", "LocalProtocolError", "ServerConnection",
           "Session"]


class ServerConnection(AuthCommands, MailboxCommands):
    """One IMAP server connection's protocol state."""

    # --- adapter API ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.mode is Mode.CLOSED

    @property
    def tls_pending(self) -> bool:
        return self.mode is Mode.TLS_PENDING

    @property
    def idling(self) -> bool:
        return self.mode is Mode.IDLE

    @property
    def buffered(self) -> int:
        """Octets received and not read yet (the adapter stops reading past a limit)."""
        return len(self._buf) - self._pos

    @property
    def pending(self) -> Decision | None:
        return self._pending

    def greet(self, preauth_user: str = "") -> None:
        """``* OK [CAPABILITY ...]`` (RFC 9051 7.1.1), or ``* PREAUTH`` for a
        connection already authenticated by its transport (7.1.4)."""
        self._greeted = True
        if preauth_user:
            self.state = State.AUTHENTICATED
            self.session.user = preauth_user
            self._ctx = self._context()
            self._send(resp.untagged_status("PREAUTH", f"{self.settings.hostname} ready",
                                            self._capability_code()))
            return
        text = f"{self.settings.hostname} {self.settings.greeting}"
        self._send(resp.untagged_status("OK", text, self._capability_code()))

    def refuse(self, text: str, code: str = "") -> None:
        """Refuse the connection instead of greeting it (RFC 9051 7.1.5 BYE)."""
        self._greeted = True
        self.close(text, code)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self.mode is Mode.TLS_PENDING or self.mode is Mode.CLOSED:
            return  # RFC 9051 6.2.1: nothing sent before the TLS handshake counts
        if self._pos >= len(self._buf):
            self._buf, self._pos = data, 0
        else:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | Sentinel:
        while True:
            if self._events:
                return self._events.popleft()
            if self._pending is not None or not self._greeted:
                return PAUSED
            mode = self.mode
            if mode is Mode.CLOSED:
                return CLOSED
            if mode is Mode.TLS_PENDING:
                return PAUSED
            if mode is Mode.LITERAL or mode is Mode.APPEND or mode is Mode.DISCARD:
                progressed = self._read_octets()
            else:
                progressed = self._read_line()
            if not progressed:
                if not self._eof:
                    return NEED_DATA
                self._lost()

    def respond(self, *data: bytes) -> None:
        """Queue untagged responses (built with :mod:`responses`)."""
        if self.mode is Mode.CLOSED:
            return
        self._out.extend(data)

    def complete(self, status: str = "OK", text: str = "", code: str = "") -> None:
        """Finish the pending command with its tagged status (OK, NO or BAD)."""
        if status not in ("OK", "NO", "BAD"):
            raise LocalProtocolError(f"complete() takes OK, NO or BAD, not {status!r}")
        event = self._take_pending()
        tag = event.tag
        if isinstance(event, AppendRequested):
            self._refuse_append(event, status, text, code)
            return
        if isinstance(event, AppendComplete):
            self._append = None
        if isinstance(event, LoginRequested):
            self._auth_done(tag, "LOGIN", event.username, status, text, code)
            return
        if isinstance(event, AuthenticateStep):
            raise LocalProtocolError("AuthenticateStep is answered with sasl_step()")
        name = command_of(event)
        if status == "OK":
            new = ON_OK.get(name)
            if isinstance(event, SelectRequested):
                cmd = event.command
                self.session.mailbox = cmd.mailbox.name
                self.session.readonly = cmd.readonly or code.startswith("READ-ONLY")
                code = code or ("READ-ONLY" if self.session.readonly else "READ-WRITE")
            elif new is State.AUTHENTICATED:
                self.session.mailbox = ""
        else:
            new = ON_NO.get(name)
            if new is State.AUTHENTICATED:
                self.session.mailbox = ""
        if new is not None:
            self.state = new
        self._tagged(tag, status, text or f"{name} completed" if status == "OK" else text,
                     code)

    def accept(self) -> None:
        """Go ahead with STARTTLS, an APPEND message, or IDLE."""
        event = self._take_pending()
        if isinstance(event, StartTlsRequested):
            self._send(resp.tagged(event.tag, "OK", "Begin TLS negotiation now"))
            self._buf, self._pos = b"", 0  # RFC 9051 6.2.1: discard buffered plaintext
            self.mode = Mode.TLS_PENDING
        elif isinstance(event, AppendRequested):
            self._append = event.command
            if event.command.synchronizing:
                self._send(resp.continuation(b"Ready for literal data"))
            self._left = event.command.size
            self.mode = Mode.APPEND
            self._segments = [event.tag.encode("ascii")]  # keeps the tag for the tail
        elif isinstance(event, IdleRequested):
            self._idle_tag = event.tag
            self._send(resp.continuation(b"idling"))
            self.mode = Mode.IDLE
        else:
            self._pending = event
            raise LocalProtocolError(f"accept() does not answer {type(event).__name__}")

    def tls_established(self) -> None:
        """The STARTTLS handshake finished (RFC 9051 6.2.1)."""
        if self.mode is not Mode.TLS_PENDING:
            raise LocalProtocolError("no STARTTLS in progress")
        self.session.tls = True
        self.mode = Mode.COMMAND

    # --- dispatch, and the commands of any state (RFC 9051 6.1) -------------------------

    def _dispatch(self, segments: list[bytes]) -> None:
        first = segments[0]
        if len(segments) == 1 and not first.strip():
            self._bad(None, "Empty command line")
            return
        tag = parse_tag(first)
        if any(b"\x00" in seg for seg in segments[::2]):
            self._bad(tag, "NUL in a command line")
            return
        name = command_name(first)
        refusal = self._precheck(tag, name)
        if refusal is not None:
            self._bad(tag, refusal[1])
            return
        assert tag is not None
        try:
            tag, command = parse_command(segments, self._ctx)
        except ParseError as exc:
            if exc.status == "BAD":
                self._bad(tag, exc.text, exc.code)
            else:
                self._tagged(tag, exc.status, exc.text, exc.code)
            return
        handler = _HANDLERS.get(command.name, ServerConnection._store_command)
        handler(self, tag, command)

    def _capability(self, tag: str, command: Command) -> None:
        self._send(resp.capability(self.capabilities()))
        self._tagged(tag, "OK", "CAPABILITY completed")

    def _noop(self, tag: str, command: Command) -> None:
        if self.state is State.SELECTED:
            self._ask(CommandRequested(tag, command))
        else:
            self._tagged(tag, "OK", f"{command.name} completed")

    def _logout(self, tag: str, command: Command) -> None:
        self._send(resp.bye(f"{self.settings.hostname} logging out"))
        self._tagged(tag, "OK", "LOGOUT completed")
        self._events.append(LogoutRequested(tag))
        self.mode = Mode.CLOSED
        self.state = State.LOGOUT

    def _id(self, tag: str, command: Command) -> None:
        assert isinstance(command, Id)
        self._events.append(ClientId(command.parameters))
        params = self.settings.server_id
        flat: list[str] = [x for pair in params for x in pair]
        self._send(resp.untagged(resp.Atom("ID"), flat if params else None))
        self._tagged(tag, "OK", "ID completed")


def command_of(event: Decision) -> str:
    """The name of the IMAP command a decision answers ("" if none)."""
    command = getattr(event, "command", None)
    if isinstance(command, Command):
        return command.name
    return _NAMED_DECISIONS.get(type(event), "")


_NAMED_DECISIONS: dict[type[Decision], str] = {
    LoginRequested: "LOGIN", AuthenticateStep: "AUTHENTICATE",
    StartTlsRequested: "STARTTLS", IdleRequested: "IDLE", AppendComplete: "APPEND"}


_Handler = Callable[[ServerConnection, str, Command], None]
_HANDLERS: dict[str, _Handler] = {
    "CAPABILITY": ServerConnection._capability, "NOOP": ServerConnection._noop,
    "CHECK": ServerConnection._noop, "LOGOUT": ServerConnection._logout,
    "STARTTLS": ServerConnection._starttls, "LOGIN": ServerConnection._login,
    "AUTHENTICATE": ServerConnection._authenticate, "ENABLE": ServerConnection._enable,
    "ID": ServerConnection._id, "NAMESPACE": ServerConnection._namespace,
    "SELECT": ServerConnection._select, "EXAMINE": ServerConnection._select,
    "LIST": ServerConnection._list, "LSUB": ServerConnection._list,
    "STATUS": ServerConnection._status, "IDLE": ServerConnection._idle,
    "FETCH": ServerConnection._selected_command, "STORE": ServerConnection._selected_command,
    "SEARCH": ServerConnection._selected_command, "SORT": ServerConnection._selected_command,
    "THREAD": ServerConnection._selected_command, "COPY": ServerConnection._selected_command,
    "MOVE": ServerConnection._selected_command, "EXPUNGE": ServerConnection._expunge,
}
