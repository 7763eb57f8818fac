"""The IMAP connection's state and framing, the base of
:class:`~mailyard.proto.imap.server.ServerConnection`.

:class:`Framing` holds what one connection keeps between reads (buffers, mode, the
command being framed, the pending decision) and turns input into commands: a command
is its lines and the literals announced at their ends; a synchronising literal
``{n}`` gets ``+`` only once the core knows it will take it (size, state); a
non-synchronising one (``{n+}``, RFC 7888) that is too big cannot be refused without
losing the stream, so the connection ends with ``BYE [TOOBIG]``.  An APPEND message
is not buffered: the adapter decides on the head (:class:`AppendRequested`) and
receives the message as :class:`AppendData` pieces.  The lines that are not commands
(an AUTHENTICATE response, IDLE's ``DONE``) are read here too.  It also holds the
helpers every command answers with (tagged replies, the bad-command count, asking
the adapter), the CAPABILITY list and :meth:`Framing.close`, which the framing
itself uses (a line too long, too many bad commands).

Separate from :mod:`~mailyard.proto.imap.server` (the adapter API and the command
dispatch) so that each of the two reads as one thing: how octets become commands,
and what a command does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import Append
from mailyard.proto.imap.events import (
    AppendAborted,
    AppendComplete,
    AppendData,
    AppendRequested,
    AuthenticateStep,
    AuthResult,
    Decision,
    Event,
    IdleDone,
)
from mailyard.proto.imap.parser import (
    KNOWN_COMMANDS,
    LITERAL_AT_END,
    ParseContext,
    ParseError,
    append_head,
    command_name,
    decode_base64,
    parse_tag,
)
from mailyard.proto.imap.session import ImapSettings, Session
from mailyard.proto.imap.states import VALID_IN, Mode, State

LITERAL_MINUS_LIMIT = 4096  # RFC 7888 5: largest non-synchronising literal under LITERAL-


class LocalProtocolError(RuntimeError):
    """The adapter used the core wrongly (a decision with nothing pending, ...)."""


class Framing:
    """One IMAP connection's state, framing and reply helpers."""

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

    if TYPE_CHECKING:  # the command dispatch, in ServerConnection (server.py)
        def _dispatch(self, segments: list[bytes]) -> None: ...

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
