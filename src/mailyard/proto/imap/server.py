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

Framing: a command is its lines and the literals announced at their ends.  A
synchronising literal ``{n}`` gets ``+`` only once the core knows it will take it (size,
state); a non-synchronising one (``{n+}``, RFC 7888) that is too big cannot be
refused without losing the stream, so the connection ends with ``BYE [TOOBIG]``.  An
APPEND message is not buffered: the adapter decides on the head
(:class:`AppendRequested`) and receives the message as :class:`AppendData` pieces.

The state table is :mod:`mailyard.proto.imap.states`; the grammar
:mod:`mailyard.proto.imap.parser`.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import (
    Append,
    Authenticate,
    Command,
    CopyMove,
    Enable,
    Expunge,
    Fetch,
    Id,
    ListMailboxes,
    Login,
    Search,
    Select,
    Sort,
    Status,
    Store,
    Thread,
)
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
    Enabled,
    Event,
    ExpungeRequested,
    FetchRequested,
    IdleDone,
    IdleRequested,
    ListRequested,
    LoginRequested,
    LogoutRequested,
    SaslChallenge,
    SaslFailure,
    SaslOutcome,
    SaslSuccess,
    SearchRequested,
    SelectRequested,
    Sentinel,
    StartTlsRequested,
    StatusRequested,
    StoreRequested,
)
from mailyard.proto.imap.parser import (
    KNOWN_COMMANDS,
    LITERAL_AT_END,
    ParseContext,
    ParseError,
    append_head,
    command_name,
    decode_base64,
    parse_command,
    parse_tag,
)
from mailyard.proto.imap.session import ImapSettings, Session
from mailyard.proto.imap.states import ENABLEABLE, ON_NO, ON_OK, READ_WRITE, VALID_IN, Mode, State

__all__ = ["ImapSettings", "LocalProtocolError", "ServerConnection", "Session"]

LITERAL_MINUS_LIMIT = 4096  # RFC 7888 5: largest non-synchronising literal under LITERAL-


class LocalProtocolError(RuntimeError):
    """The adapter used the core wrongly (a decision with nothing pending, ...)."""


class ServerConnection:
    """One IMAP server connection's protocol state."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.session = Session(tls=settings.implicit_tls)
        self.state = State.NOT_AUTHENTICATED
        self.mode = Mode.COMMAND
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._greeted = False
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: Decision | None = None
        self._segments: list[bytes] = []
        self._command_size = 0
        self._left = 0  # octets still to read in LITERAL/APPEND/DISCARD mode
        self._parts: list[bytes] = []
        self._append: Append | None = None
        self._append_tail = False  # reading the line after an APPEND message
        self._deferred: bytes | None = None  # tagged reply sent after a discard
        self._sasl_tag = ""
        self._sasl_mechanism = ""
        self._idle_tag = ""
        self._ctx = self._context()

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

    @property
    def utf8(self) -> bool:
        """Mailbox names and quoted strings are UTF-8 (RFC 6855 3, RFC 9051 5.1)."""
        enabled = self.session.enabled
        return "UTF8=ACCEPT" in enabled or "IMAP4REV2" in enabled

    def capabilities(self) -> list[str]:
        """The CAPABILITY list for the current state and transport (RFC 9051 7.2.2)."""
        s = self.settings
        caps = ["IMAP4rev2"] + (["IMAP4rev1"] if s.rev1 else [])
        if self.state is State.NOT_AUTHENTICATED:
            if s.starttls and not self.session.tls:
                caps.append("STARTTLS")
            if self._auth_allowed():
                caps.extend("AUTH=" + m for m in s.sasl_mechanisms)
            if not (s.login and self._auth_allowed()):
                caps.append("LOGINDISABLED")
        caps.append("LITERAL+" if s.literal_plus else "LITERAL-")
        for ext in s.extensions:
            if ext == "SASL-IR" and self.state is not State.NOT_AUTHENTICATED:
                continue
            caps.append(ext)
        if self.state is not State.NOT_AUTHENTICATED:
            caps.append(f"APPENDLIMIT={s.max_append}")
        return caps

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
        name = _command_of(event)
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

    def sasl_step(self, outcome: SaslOutcome) -> None:
        """Answer :class:`AuthenticateStep` with what the SASL exchange said."""
        event = self._take_pending()
        if not isinstance(event, AuthenticateStep):
            self._pending = event
            raise LocalProtocolError("sasl_step() answers AuthenticateStep only")
        if isinstance(outcome, SaslChallenge):
            self._sasl_tag, self._sasl_mechanism = event.tag, event.mechanism
            self._send(resp.continuation(base64.b64encode(outcome.data)))
            self.mode = Mode.SASL
        elif isinstance(outcome, SaslSuccess):
            self._auth_done(event.tag, event.mechanism, outcome.username, "OK", "", "")
        else:
            assert isinstance(outcome, SaslFailure)
            self._auth_done(event.tag, event.mechanism, "", "NO", outcome.text, outcome.code)

    def tls_established(self) -> None:
        """The STARTTLS handshake finished (RFC 9051 6.2.1)."""
        if self.mode is not Mode.TLS_PENDING:
            raise LocalProtocolError("no STARTTLS in progress")
        self.session.tls = True
        self.mode = Mode.COMMAND

    def close(self, text: str = "", code: str = "") -> None:
        """End the connection from the adapter's side (shutdown, timeout), with
        ``* BYE text`` when ``text`` is given."""
        if self.mode is Mode.CLOSED:
            return
        self._pending = None
        if self._events:
            self._events = deque(e for e in self._events if not e.needs_decision)
        if self._append is not None:
            self._events.append(AppendAborted("closed"))
            self._append = None
        if text:
            self._send(resp.bye(text, code))
        self.mode = Mode.CLOSED
        self.state = State.LOGOUT

    # --- plumbing ---------------------------------------------------------------------

    def _context(self) -> ParseContext:
        s = self.settings
        return ParseContext(self.utf8, s.max_depth, s.max_sequence_ranges)

    def _auth_allowed(self) -> bool:
        return self.session.tls or self.settings.plaintext_auth

    def _capability_code(self) -> str:
        return "CAPABILITY " + " ".join(self.capabilities())

    def _take_pending(self) -> Decision:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return event

    def _ask(self, event: Decision) -> None:
        self._pending = event
        self._events.append(event)

    def _send(self, data: bytes) -> None:
        self._out.append(data)

    def _tagged(self, tag: str, status: str, text: str, code: str = "") -> None:
        self._send(resp.tagged(tag, status, text, code))
        if status == "BAD":
            self._count_bad()

    def _bad(self, tag: str | None, text: str, code: str = "") -> None:
        if tag is None:
            self._send(resp.untagged_status("BAD", text, code))
            self._count_bad()
        else:
            self._tagged(tag, "BAD", text, code)

    def _count_bad(self) -> None:
        self.session.bad_commands += 1
        if self.session.bad_commands >= self.settings.max_bad_commands:
            self.close("Too many bad commands")

    def _too_big(self, text: str) -> None:
        """A limit we cannot recover from without losing the command stream."""
        self._reset_command()
        self.close(text, "TOOBIG")

    def _reset_command(self) -> None:
        self._segments = []
        self._command_size = 0
        self._parts = []

    def _lost(self) -> None:
        if self._append is not None:
            self._events.append(AppendAborted("connection lost"))
            self._append = None
        self._reset_command()
        self.mode = Mode.CLOSED  # the state stays what it was, for the adapter's log

    # --- reading ----------------------------------------------------------------------

    def _read_line(self) -> bool:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\n", pos)
        limit = self.settings.max_line
        if end < 0:
            if len(buf) - pos > limit + 1:
                self._too_big("Command line too long")
                return True
            return False
        line = buf[pos : end - 1] if end > pos and buf[end - 1] == 0x0D else buf[pos:end]
        self._pos = end + 1
        if len(line) > limit:
            self._too_big("Command line too long")
        elif self.mode is Mode.SASL:
            self._sasl_line(line)
        elif self.mode is Mode.IDLE:
            self._idle_line(line)
        elif self._append_tail:
            self._append_tail_line(line)
        else:
            self._command_line(line)
        return True

    def _read_octets(self) -> bool:
        buf, pos = self._buf, self._pos
        take = min(self._left, len(buf) - pos)
        if take <= 0 and self._left:
            return False
        piece = buf[pos : pos + take]
        self._pos = pos + take
        self._left -= take
        if self.mode is Mode.LITERAL:
            self._parts.append(piece)
        elif self.mode is Mode.APPEND and piece:
            self._events.append(AppendData(piece))
        if not self._left:
            if self.mode is Mode.LITERAL:
                self._segments.append(b"".join(self._parts))
                self._parts = []
            else:
                self._append_tail = True
            self.mode = Mode.COMMAND
        return True

    def _command_line(self, line: bytes) -> None:
        self._segments.append(line)
        self._command_size += len(line)
        if self._command_size > self.settings.max_command:
            self._too_big("Command too long")
            return
        m = LITERAL_AT_END.search(line)
        if m is None:
            segments = self._segments
            self._reset_command()
            self._dispatch(segments)
            return
        self._literal(int(m.group(2)), binary=bool(m.group(1)), sync=not m.group(3))

    def _literal(self, size: int, binary: bool, sync: bool) -> None:
        s = self.settings
        segments = self._segments
        tag = parse_tag(segments[0])
        name = command_name(segments[0])
        if not sync and not s.literal_plus and size > LITERAL_MINUS_LIMIT:
            self._too_big("Non-synchronizing literal over 4096 octets (RFC 7888 LITERAL-)")
            return
        # A synchronising literal can be refused before it is sent; a non-synchronising
        # one is read (within the limits) and the command refused as a whole.
        refusal = self._precheck(tag, name)
        if refusal is None and name == "APPEND":
            try:
                head = append_head(segments, self._ctx)
            except ParseError as exc:
                refusal = (exc.status, exc.text, exc.code)
            else:
                if head is not None:
                    self._append_head(tag or "*", head)
                    return
        if not sync:
            refusal = None
        limit = s.max_literal if self.state is not State.NOT_AUTHENTICATED \
            else s.max_literal_unauthenticated
        if size > limit or self._command_size + size > s.max_command:
            if not sync:
                self._too_big("Literal too big")
                return
            refusal = ("BAD", "Literal too big", "TOOBIG")
        if refusal is not None:
            self._reset_command()
            if refusal[0] == "BAD":
                self._bad(tag, refusal[1], refusal[2])
            else:
                self._tagged(tag or "*", *refusal)
            return
        if sync:
            self._send(resp.continuation(b"Ready for literal data"))
        self._command_size += size
        self._left = size
        self.mode = Mode.LITERAL
        if not size:
            self._read_octets()

    def _precheck(self, tag: str | None, name: str) -> tuple[str, str, str] | None:
        """Refuse a command before its literal arrives when its first line shows it
        cannot succeed (no tag, unknown, wrong state)."""
        if tag is None:
            return ("BAD", "Missing or invalid tag", "")
        if name not in KNOWN_COMMANDS:
            return ("BAD", "Unknown command", "")
        if self.state not in VALID_IN.get(name, VALID_IN["UID"]):
            return ("BAD", f"{name} is not valid in the {self.state.value} state", "")
        return None

    def _append_head(self, tag: str, head: Append) -> None:
        s = self.settings
        if head.size > s.max_append:
            if not head.synchronizing:
                self._too_big("Message too big")
                return
            self._reset_command()
            self._tagged(tag, "NO", "Message too big", "TOOBIG")
            return
        self._reset_command()
        self._ask(AppendRequested(tag, head))

    def _refuse_append(self, event: AppendRequested, status: str, text: str,
                       code: str) -> None:
        reply = resp.tagged(event.tag, status, text or "APPEND refused", code)
        if event.command.synchronizing or not event.command.size:
            self._send(reply)
            if status == "BAD":
                self._count_bad()
            return
        # RFC 7888 4: the client sends a non-synchronising literal regardless.
        self._deferred = reply
        self._left = event.command.size
        self._segments = [event.tag.encode("ascii")]
        self.mode = Mode.DISCARD

    def _append_tail_line(self, line: bytes) -> None:
        """The rest of APPEND's line after the message: must be empty (no MULTIAPPEND)."""
        self._append_tail = False
        tag = self._segments[0].decode("ascii") if self._segments else "*"
        self._segments = []
        deferred, self._deferred = self._deferred, None
        if line:
            if self._append is not None:
                self._append = None
                self._events.append(AppendAborted("extra data after the message"))
            if LITERAL_AT_END.search(line) and line.endswith(b"+}"):
                self.close("MULTIAPPEND is not supported")
                return
            self._bad(tag, "Unexpected data after the APPEND message (no MULTIAPPEND)")
            return
        if deferred is not None:
            self._send(deferred)
            return
        assert self._append is not None
        self._ask(AppendComplete(tag, self._append.size))

    def _sasl_line(self, line: bytes) -> None:
        self.mode = Mode.COMMAND
        tag, mechanism = self._sasl_tag, self._sasl_mechanism
        if line == b"*":  # RFC 9051 6.2.2: the client cancels
            self._events.append(AuthResult(mechanism, "", False))
            self._bad(tag, "Authentication cancelled")
            return
        try:
            data = decode_base64(line) if line else b""
        except ParseError as exc:
            self._events.append(AuthResult(mechanism, "", False))
            self._bad(tag, exc.text)
            return
        self._ask(AuthenticateStep(tag, mechanism, data, first=False))

    def _idle_line(self, line: bytes) -> None:
        self.mode = Mode.COMMAND
        tag = self._idle_tag
        ok = line.upper() == b"DONE"
        self._events.append(IdleDone(tag, ok))
        if ok:
            self._tagged(tag, "OK", "IDLE terminated")
        else:
            self._tagged(tag, "BAD", "Expected DONE")

    # --- commands ---------------------------------------------------------------------

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

    def _starttls(self, tag: str, command: Command) -> None:
        if not self.settings.starttls:
            self._bad(tag, "STARTTLS is not available")
        elif self.session.tls:
            self._bad(tag, "TLS is already active")
        else:
            self._ask(StartTlsRequested(tag))

    def _login(self, tag: str, command: Command) -> None:
        assert isinstance(command, Login)
        if not (self.settings.login and self._auth_allowed()):
            self._tagged(tag, "NO", "LOGIN is disabled; use STARTTLS first", "PRIVACYREQUIRED")
        else:
            self._ask(LoginRequested(tag, command.username, command.password))

    def _authenticate(self, tag: str, command: Command) -> None:
        assert isinstance(command, Authenticate)
        if not self._auth_allowed():
            self._tagged(tag, "NO", "Authentication needs TLS", "PRIVACYREQUIRED")
        elif command.mechanism not in self.settings.sasl_mechanisms:
            self._tagged(tag, "NO", "Unsupported authentication mechanism", "CANNOT")
        else:
            self._ask(AuthenticateStep(tag, command.mechanism, command.initial, first=True))

    def _auth_done(self, tag: str, mechanism: str, username: str, status: str, text: str,
                   code: str) -> None:
        ok = status == "OK"
        self._events.append(AuthResult(mechanism, username, ok))
        if ok:
            self.state = State.AUTHENTICATED
            self.session.user = username
            self.session.mechanism = mechanism
            self._ctx = self._context()
            self._tagged(tag, "OK", text or "Logged in", code or self._capability_code())
            return
        self._tagged(tag, status, text or "Authentication failed",
                     code or ("AUTHENTICATIONFAILED" if status == "NO" else ""))
        self.session.auth_failures += 1
        if self.session.auth_failures >= self.settings.max_auth_failures \
                and self.mode is not Mode.CLOSED:
            self.close("Too many authentication failures")

    def _enable(self, tag: str, command: Command) -> None:
        assert isinstance(command, Enable)
        offered = {c.upper() for c in self.capabilities()}
        new: list[str] = []
        for cap in command.capabilities:
            if cap in ENABLEABLE and cap in offered and cap not in self.session.enabled:
                self.session.enabled.add(cap)
                new.append(cap)
        if "QRESYNC" in self.session.enabled:
            self.session.enabled.add("CONDSTORE")  # RFC 7162 3.2.3
        self._ctx = self._context()
        names = ["IMAP4rev2" if c == "IMAP4REV2" else c for c in new]
        self._send(resp.enabled(names))
        if new:
            self._events.append(Enabled(tuple(names)))
        self._tagged(tag, "OK", "ENABLE completed")

    def _id(self, tag: str, command: Command) -> None:
        assert isinstance(command, Id)
        self._events.append(ClientId(command.parameters))
        params = self.settings.server_id
        flat: list[str] = [x for pair in params for x in pair]
        self._send(resp.untagged(resp.Atom("ID"), flat if params else None))
        self._tagged(tag, "OK", "ID completed")

    def _namespace(self, tag: str, command: Command) -> None:
        delim = self.settings.delimiter
        self._send(resp.untagged(resp.Atom("NAMESPACE"), [["", delim]], None, None))
        self._tagged(tag, "OK", "NAMESPACE completed")

    def _select(self, tag: str, command: Command) -> None:
        assert isinstance(command, Select)
        if command.qresync is not None and "QRESYNC" not in self.session.enabled:
            self._bad(tag, "QRESYNC must be enabled first (RFC 7162 3.2.5)")
            return
        if command.condstore:
            self.session.enabled.add("CONDSTORE")  # RFC 7162 3.1.8
        if self.state is State.SELECTED:
            # RFC 9051 6.3.2: the current mailbox is closed first (RFC 7162 3.2.11).
            self.state = State.AUTHENTICATED
            self.session.mailbox = ""
            self._send(resp.untagged_status("OK", "Previous mailbox closed", "CLOSED"))
        self._ask(SelectRequested(tag, command))

    def _selected_command(self, tag: str, command: Command) -> None:
        if command.name in READ_WRITE and self.session.readonly:
            self._tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return
        if isinstance(command, Fetch):
            if command.vanished and "QRESYNC" not in self.session.enabled:
                self._bad(tag, "VANISHED needs QRESYNC enabled (RFC 7162 3.2.6)")
                return
            if command.changed_since is not None:
                self.session.enabled.add("CONDSTORE")
            self._ask(FetchRequested(tag, command))
        elif isinstance(command, Store):
            if command.unchanged_since is not None:
                self.session.enabled.add("CONDSTORE")
            self._ask(StoreRequested(tag, command))
        elif isinstance(command, (Search, Sort, Thread)):
            self._ask(SearchRequested(tag, command))
        elif isinstance(command, CopyMove):
            self._ask(CopyRequested(tag, command))
        elif isinstance(command, Expunge):
            self._ask(ExpungeRequested(tag, command))
        else:
            self._ask(CommandRequested(tag, command))

    def _expunge(self, tag: str, command: Command) -> None:
        self._selected_command(tag, command if isinstance(command, Expunge) else Expunge())

    def _list(self, tag: str, command: Command) -> None:
        assert isinstance(command, ListMailboxes)
        self._ask(ListRequested(tag, command))

    def _status(self, tag: str, command: Command) -> None:
        assert isinstance(command, Status)
        self._ask(StatusRequested(tag, command))

    def _idle(self, tag: str, command: Command) -> None:
        self._ask(IdleRequested(tag))

    def _store_command(self, tag: str, command: Command) -> None:
        self._ask(CommandRequested(tag, command))


def _command_of(event: Decision) -> str:
    command = getattr(event, "command", None)
    if isinstance(command, Command):
        return command.name
    return {StartTlsRequested: "STARTTLS", IdleRequested: "IDLE",
            AppendComplete: "APPEND"}.get(type(event), "")


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
