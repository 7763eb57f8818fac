"""The SMTP server protocol core, sans-IO (RFC 5321, with PIPELINING, SIZE, 8BITMIME,
SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING/BINARYMIME, DSN, STARTTLS and AUTH).

Bytes in, events out; decisions in, reply bytes out (the shape of h11)::

    conn = ServerConnection(settings)
    conn.greet()
    conn.receive_data(data)              # b"" means the peer closed
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
        if event.needs_decision:
            conn.accept() / conn.reject(reply)   # now or later
    transport.write(conn.data_to_send())

No sockets, clocks or storage here: timeouts, TLS handshakes, policy and the spool
belong to the adapter (:mod:`mailyard.smtpd`).  Which command is legal when is the
table in :mod:`mailyard.proto.smtp.states`; content handling is in
:mod:`mailyard.proto.smtp.content`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from functools import lru_cache

from mailyard.envelope import Recipient
from mailyard.proto.errors import LocalProtocolError
from mailyard.proto.smtp.address import needs_smtputf8, valid_address_literal
from mailyard.proto.smtp.content import ChunkDecoder, ContentCheck, DataDecoder
from mailyard.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    DataChunk,
    DataStart,
    Decision,
    Event,
    HeaderSection,
    Helo,
    MailFrom,
    MessageComplete,
    MessageRefused,
    RcptTo,
    ScramLookup,
    Sentinel,
    StartTlsRequested,
    TransactionAborted,
    Vrfy,
)
from mailyard.proto.smtp.replies import (
    REPLY_ALREADY_TLS,
    REPLY_BAD_BDAT,
    REPLY_BAD_CHARS,
    REPLY_BAD_SEQUENCE,
    REPLY_BDAT_OK,
    REPLY_BYE,
    REPLY_HELP,
    REPLY_LINE_TOO_LONG,
    REPLY_MESSAGE_TOO_BIG,
    REPLY_NEEDS_SMTPUTF8,
    REPLY_NOOP,
    REPLY_NOT_IMPLEMENTED,
    REPLY_NOT_SMTP,
    REPLY_RCPT_OK,
    REPLY_READY_TLS,
    REPLY_RESET,
    REPLY_SENDER_OK,
    REPLY_START_DATA,
    REPLY_SYNTAX,
    REPLY_TOO_MANY_ERRORS,
    REPLY_TOO_MANY_RECIPIENTS,
    REPLY_UNKNOWN_COMMAND,
    REPLY_VRFY_CANNOT,
    Reply,
    SmtpError,
)
from mailyard.proto.smtp.server_auth import AuthCommands, offered_mechanisms
from mailyard.proto.smtp.session import ServerSettings, Session, Transaction
from mailyard.proto.smtp.states import (
    LINE_LIMITS,
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    NO_ARGUMENT,
    SAME,
    SEQUENCE,
    Mode,
    Outcome,
    State,
    in_transaction,
)
from mailyard.proto.smtp.wire import MailCommand, RcptCommand
from mailyard.sasl.mechanisms import Mechanism
from mailyard.sasl.scram import ScramCredentials, ScramSha256Mechanism

__all__ = ["ServerConnection", "ServerSettings", "Session", "Transaction", "LocalProtocolError"]

# Old or dangerous commands answered 502 rather than 500 (RFC 5321 4.2.4, 7.3).
_NOT_IMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"})
# Another protocol's request (an HTTP proxy abused for cross-protocol attacks): no
# point in answering further; the connection is closed (as Postfix's
# smtpd_forbidden_commands does).
_FOREIGN = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "USER"})
# Control characters (C0, DEL, C1) in an EHLO/HELO argument: never part of a domain or
# address literal, and the name goes to logs, the queue and the operator's terminal.
_HELO_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@lru_cache(maxsize=512)
def _encode(reply: Reply) -> bytes:
    return reply.encode()


class ServerConnection(AuthCommands):
    """One SMTP server connection's protocol state."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.session = Session(tls=settings.implicit_tls)
        self.transaction = Transaction()
        self.state = State.START
        self.mode = Mode.COMMAND
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._greeted = False
        self._skipping_line = False
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: Decision | None = None
        self._data: DataDecoder | None = None
        self._chunks: ChunkDecoder | None = None
        self._chunk_left = 0
        self._chunk_size = 0
        self._chunk_last = False
        self._chunk_refusal: Reply | None = None  # a refused BDAT: discard, then reply
        self._sasl: Mechanism | None = None
        # The table's entry for the command being handled: the state its success leads
        # to (applied by _enter once the command is accepted), SAME, or its refusal.
        self._outcome: Outcome = SAME

    # --- adapter API ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.mode is Mode.CLOSED

    @property
    def tls_pending(self) -> bool:
        """STARTTLS was accepted and its 220 queued: start the handshake now."""
        return self.mode is Mode.TLS_PENDING

    @property
    def in_content(self) -> bool:
        """Reading message content (DATA text or a BDAT chunk)."""
        return self.mode is Mode.DATA or self.mode is Mode.CHUNK

    @property
    def pending(self) -> Decision | None:
        return self._pending

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def line_pending(self) -> bool:
        """Part of a command or SASL line has arrived, not yet its CRLF (or the client
        is still sending an over-long line that is being skipped)."""
        if self.mode is not Mode.COMMAND and self.mode is not Mode.SASL:
            return False
        return self._skipping_line or self._pos < len(self._buf)

    def greet(self) -> None:
        banner = self.settings.banner or "ESMTP Mailyard"
        self._send(Reply(220, "", f"{self.settings.hostname} {banner}"))
        self._greeted = True

    def refuse(self, reply: Reply) -> None:
        """Refuse the connection instead of greeting it (RFC 5321 3.1: 554 or 421)."""
        self._greeted = True
        self.close(reply)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self.mode is Mode.TLS_PENDING or self.mode is Mode.CLOSED:
            return  # RFC 3207 4.2 / CVE-2011-0411: nothing sent before TLS counts
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
            if mode is Mode.DATA:
                progressed = self._read_data()
            elif mode is Mode.CHUNK:
                progressed = self._read_chunk()
            else:
                progressed = self._read_line()
            if not progressed:
                if not self._eof:
                    return NEED_DATA
                self._abort_transaction("connection lost")
                self.mode = Mode.CLOSED

    def accept(self, reply: Reply | None = None) -> None:
        """Say yes to the pending decision (``reply`` overrides the usual one;
        :class:`MessageComplete` needs it: the ``250 ... queued`` reply)."""
        match self._take_pending():  # the most frequent decisions first
            case RcptTo() as event:
                self._accept_rcpt(event, reply)
            case MailFrom() as event:
                self._accept_mail(event, reply)
            case Helo() as event:
                self._accept_helo(event, reply)
            case DataStart() as event:
                self._accept_data(event)
            case MessageComplete():
                if reply is None:
                    raise LocalProtocolError("MessageComplete needs the queued reply")
                self._send(reply)
                self.session.messages += 1
                self.session.errors = 0
                self._reset_transaction()
            case AuthCredentials() as event:
                self._auth_succeeded(event.mechanism, event.username)
            case StartTlsRequested():
                self._send(reply or REPLY_READY_TLS)
                self._buf, self._pos = b"", 0  # CVE-2011-0411: drop pipelined plaintext
                self.mode = Mode.TLS_PENDING
            case Vrfy():
                self._send(reply or REPLY_VRFY_CANNOT)
            case event:
                raise LocalProtocolError(f"accept() does not answer {type(event).__name__}")

    def reject(self, reply: Reply) -> None:
        """Say no to the pending decision with ``reply``."""
        match self._take_pending():
            case AuthCredentials(mechanism=mechanism, username=username):
                self._auth_failed(reply, mechanism, username)
            case ScramLookup(username=username):
                self._auth_failed(reply, ScramSha256Mechanism.name, username)
            case DataStart(chunking=True):
                # RFC 3030 2: the chunk still arrives; read it, then refuse it.
                self._abort_transaction("chunk refused")
                self._begin_chunk_discard(reply)
            case MessageComplete():
                self._reset_transaction()
                self._refuse(reply)
            case _:
                self._refuse(reply)

    def accept_scram(self, credentials: ScramCredentials | None) -> None:
        """Answer :class:`ScramLookup`: the user's stored credentials, or None."""
        event = self._take_pending()
        if type(event) is not ScramLookup or not isinstance(self._sasl, ScramSha256Mechanism):
            raise LocalProtocolError("accept_scram() answers ScramLookup only")
        self._sasl_step(self._sasl.set_credentials(credentials))

    def tls_established(self) -> None:
        """The STARTTLS handshake finished: start over (RFC 3207 4.2)."""
        if self.mode is not Mode.TLS_PENDING:
            raise LocalProtocolError("no STARTTLS in progress")
        self.session = Session(tls=True)
        self._reset_transaction()
        self._enter()  # the table's STARTTLS row: back to START
        self.mode = Mode.COMMAND

    def close(self, reply: Reply | None = None) -> None:
        """Close from the adapter's side (timeout, shutdown, limits), sending ``reply``."""
        if self.mode is Mode.CLOSED:
            return
        self._pending = None
        if self._events:  # decisions nobody may answer any more are dropped
            self._events = deque(e for e in self._events if not e.needs_decision)
        self._abort_transaction("closed")
        if reply is not None:
            self._send(reply)
        self.mode = Mode.CLOSED

    # --- plumbing -------------------------------------------------------------------

    def _take_pending(self) -> Decision:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return event

    def _ask(self, event: Decision) -> None:
        self._pending = event
        self._events.append(event)

    def _send(self, reply: Reply) -> None:
        self._out.append(_encode(reply))

    def _refuse(self, reply: Reply) -> None:
        """Send a negative reply; hard errors count towards smtpd.max_errors."""
        self._send(reply)
        if reply.code >= 500 and self.mode is not Mode.CLOSED:
            self.session.errors += 1
            if self.session.errors >= self.settings.max_errors:
                self.close(REPLY_TOO_MANY_ERRORS)

    def _enter(self) -> None:
        """Apply the table: the state the current command's success leads to."""
        outcome = self._outcome
        if type(outcome) is State:
            self.state = outcome

    def _reset_transaction(self) -> None:
        """The transaction is over (its content answered, RSET, QUIT, EHLO, STARTTLS or
        the connection lost): back to READY, or START before EHLO, as the RSET row has
        it (written out: an enum lookup costs more than this test on every command).
        That is also where DATA and BDAT LAST lead once the content is answered."""
        self.transaction = Transaction()
        self.state = State.READY if self.session.helo else State.START
        self._data = None
        self._chunks = None

    def _abort_transaction(self, reason: str) -> None:
        if in_transaction(self.state) or self.mode is Mode.DATA or self.mode is Mode.CHUNK:
            self._events.append(TransactionAborted(reason))
            self._reset_transaction()
            if self.mode is Mode.DATA or self.mode is Mode.CHUNK:
                self.mode = Mode.COMMAND
        else:  # nothing was started: keep the (untouched) Transaction object
            self.state = State.READY if self.session.helo else State.START

    def _content_check(self) -> ContentCheck:
        s = self.settings
        return ContentCheck(s.max_message_size, s.max_line_length, s.max_received_headers,
                            normalize=s.normalize_bare_line_endings,
                            binary=self.transaction.body == "BINARYMIME")

    # --- reading --------------------------------------------------------------------

    def _read_line(self) -> bool:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos <= MAX_SASL_LINE:
                return False
            # Far too long: drop it (keeping a final CR) and answer at its CRLF.
            self._skipping_line = True
            self._pos = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            return self._pos != pos
        self._pos = end + 2
        if self._skipping_line or end - pos + 2 > MAX_SASL_LINE:
            self._skipping_line = False
            self.mode = Mode.COMMAND
            self._sasl = None
            self._refuse(REPLY_LINE_TOO_LONG)
        elif self.mode is Mode.SASL:
            self._sasl_line(buf[pos:end])
        else:
            self._command(buf[pos:end])
        return True

    def _read_data(self) -> bool:
        assert self._data is not None
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return False
        content, new_pos, done = self._data.decode(buf, pos)
        if new_pos == pos and not done:
            return False
        self._pos = new_pos
        self._header_event(self._data.check)
        if content:
            self._events.append(DataChunk(content))
        if done:
            self.mode = Mode.COMMAND
            self._content_done(self._data.check)
        return True

    def _read_chunk(self) -> bool:
        buf, pos = self._buf, self._pos
        take = min(self._chunk_left, len(buf) - pos)
        if take <= 0 and self._chunk_left:
            return False
        if take:
            piece = buf if pos == 0 and take == len(buf) else buf[pos : pos + take]
            self._pos = pos + take
            self._chunk_left -= take
            if self._chunk_refusal is None and self._chunks is not None:
                content = self._chunks.feed(piece)
                self._header_event(self._chunks.check)
                if content:
                    self._events.append(DataChunk(content))
        if not self._chunk_left:
            self._chunk_done()
        return True

    def _chunk_done(self) -> None:
        self.mode = Mode.COMMAND
        if self._chunk_refusal is not None:
            reply, self._chunk_refusal = self._chunk_refusal, None
            self._refuse(reply)
            return
        assert self._chunks is not None
        self.transaction.chunks += 1
        if self._chunk_last:
            tail = self._chunks.finish()
            self._header_event(self._chunks.check)
            if tail:
                self._events.append(DataChunk(tail))
            self._content_done(self._chunks.check)
        elif self._chunks.check.refusal is not None:
            self._content_done(self._chunks.check)
        else:
            self._send(REPLY_BDAT_OK.with_text(f"{self._chunk_size} octets received"))

    def _header_event(self, check: ContentCheck, at_end: bool = False) -> None:
        """One HeaderSection per message, before MessageComplete or MessageRefused,
        whatever the packet boundaries."""
        header = check.take_header(at_end)
        if header is not None:
            self._events.append(HeaderSection(*header))

    def _content_done(self, check: ContentCheck) -> None:
        self.transaction.size = check.size
        self._header_event(check, at_end=True)
        if check.refusal is None:
            self._ask(MessageComplete(check.size))
            return
        self._events.append(MessageRefused(check.refusal, check.size))
        self._reset_transaction()
        self._refuse(check.refusal)

    # --- commands -------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        if b"\r" in line or b"\n" in line or b"\x00" in line:
            self._refuse(REPLY_BAD_CHARS)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(REPLY_SYNTAX.with_text("Command is not valid UTF-8"))
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        table = SEQUENCE.get(verb)
        if table is None:
            if verb in _FOREIGN:
                self.close(REPLY_NOT_SMTP)
                return
            self._refuse(REPLY_NOT_IMPLEMENTED if verb in _NOT_IMPLEMENTED
                         else REPLY_UNKNOWN_COMMAND)
            return
        if len(line) + 2 > LINE_LIMITS.get(verb, MAX_COMMAND_LINE):
            if verb == "BDAT":  # its chunk size cannot be trusted: out of sync
                self.close(REPLY_LINE_TOO_LONG)
            else:
                self._refuse(REPLY_LINE_TOO_LONG)
            return
        if verb in NO_ARGUMENT and arg.strip():
            self._refuse(REPLY_SYNTAX.with_text(f"{verb} takes no argument"))
            return
        outcome = self._outcome = table[self.state]
        _COMMANDS[verb](self, arg, outcome)

    def _ehlo(self, arg: str, outcome: object, extended: bool = True) -> None:
        name = arg.strip()
        if not name:
            self._refuse(REPLY_SYNTAX.with_text("EHLO/HELO needs a domain or address literal"))
            return
        if _HELO_CONTROL.search(name):  # no domain or address literal contains one
            self._refuse(REPLY_BAD_CHARS.with_text("Control character in EHLO/HELO argument"))
            return
        if name.startswith("[") and not valid_address_literal(name.split(None, 1)[0]):
            # an address literal is checked (it may go to SPF and to trace fields); a
            # domain is not (RFC 5321 4.1.4 forbids refusing mail for a wrong one)
            self._refuse(REPLY_SYNTAX.with_text("Invalid address literal in EHLO/HELO"))
            return
        self._abort_transaction("helo")
        self._ask(Helo(name, extended))

    def _helo(self, arg: str, outcome: object) -> None:
        self._ehlo(arg, outcome, extended=False)

    def _accept_helo(self, event: Helo, reply: Reply | None) -> None:
        self.session.helo = event.name
        self.session.extended = event.extended
        self._enter()
        if reply is not None:
            self._send(reply)
        elif event.extended:
            self._out.append(self._ehlo_reply())
        else:
            self._send(Reply(250, "", self.settings.hostname))

    def _ehlo_reply(self) -> bytes:
        s = self.settings
        lines = [s.hostname, "PIPELINING", f"SIZE {s.max_message_size}", "8BITMIME",
                 "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "DSN"]
        if s.starttls and not self.session.tls:
            lines.append("STARTTLS")
        if s.auth and self.session.tls:
            lines.append(f"AUTH {offered_mechanisms(s)}")
        return _encode(Reply(250, "", "\n".join(lines)))

    def _mail(self, arg: str, outcome: object) -> None:
        if isinstance(outcome, Reply):
            self._refuse(outcome)
            return
        try:
            command = MailCommand.parse(arg, extended=self.session.extended)
        except SmtpError as exc:
            self._refuse(exc.reply)
            return
        mail, address = command.params, command.sender
        if mail.size is not None and mail.size > self.settings.max_message_size:
            self._refuse(REPLY_MESSAGE_TOO_BIG)
            return
        if not mail.smtputf8 and needs_smtputf8(address):
            self._refuse(REPLY_NEEDS_SMTPUTF8)
            return
        self._ask(MailFrom(address, command.mailbox, mail.size, mail.body, mail.smtputf8,
                           mail.ret, mail.envid))

    def _accept_mail(self, event: MailFrom, reply: Reply | None) -> None:
        txn = self.transaction
        txn.sender = event.address
        txn.body = event.body
        txn.smtputf8 = event.smtputf8
        txn.ret = event.ret
        txn.envid = event.envid
        txn.declared_size = event.size
        self._enter()
        self._send(reply or REPLY_SENDER_OK)

    def _rcpt(self, arg: str, outcome: object) -> None:
        if isinstance(outcome, Reply):
            self._refuse(outcome)
            return
        if (len(self.transaction.recipients) >= self.settings.max_recipients
                and arg[:3].upper() == "TO:"):
            self._send(REPLY_TOO_MANY_RECIPIENTS)  # RFC 5321 4.5.3.1.10: not an error
            return
        try:
            command = RcptCommand.parse(arg, extended=self.session.extended)
        except SmtpError as exc:
            self._refuse(exc.reply)
            return
        mailbox = command.mailbox
        assert mailbox is not None
        if not self.transaction.smtputf8 and mailbox.needs_smtputf8:
            self._refuse(REPLY_NEEDS_SMTPUTF8)
            return
        self._ask(RcptTo(command.address, mailbox, command.dsn))

    def _accept_rcpt(self, event: RcptTo, reply: Reply | None) -> None:
        self.transaction.recipients.append(Recipient(event.address, event.dsn))
        self._enter()
        self._send(reply or REPLY_RCPT_OK)

    def _data_command(self, arg: str, outcome: object) -> None:
        if isinstance(outcome, Reply):
            self._refuse(outcome)
        elif self.transaction.body == "BINARYMIME":
            self._refuse(REPLY_BAD_SEQUENCE.with_text("BODY=BINARYMIME requires BDAT (RFC 3030 3)"))
        else:
            self._ask(DataStart(chunking=False))

    def _accept_data(self, event: DataStart) -> None:
        if event.chunking:
            self._enter()
            self._chunks = ChunkDecoder(self._content_check())
            self._begin_chunk()
        else:
            self._data = DataDecoder(self._content_check())
            self.mode = Mode.DATA
            self._send(REPLY_START_DATA)

    def _bdat(self, arg: str, outcome: object) -> None:
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts[0]) > 15 or len(parts) > 2:
            self.close(REPLY_BAD_BDAT)  # RFC 3030 2: the chunk cannot be found any more
            return
        self._chunk_size = self._chunk_left = int(parts[0])
        if len(parts) == 2 and parts[1].upper() != "LAST":
            self._begin_chunk_discard(REPLY_SYNTAX.with_text("Syntax: BDAT <size> [LAST]"))
            return
        self._chunk_last = len(parts) == 2
        if isinstance(outcome, Reply):
            self._begin_chunk_discard(outcome)
        elif self.state is State.RCPT:
            self._ask(DataStart(chunking=True))
        else:
            self._begin_chunk()

    def _begin_chunk(self) -> None:
        assert self._chunks is not None
        check = self._chunks.check
        if check.size + self._chunk_size > self.settings.max_message_size:
            check.refuse(REPLY_MESSAGE_TOO_BIG)
        self.mode = Mode.CHUNK
        if not self._chunk_left:
            self._chunk_done()

    def _begin_chunk_discard(self, reply: Reply) -> None:
        self._chunk_refusal = reply
        self.mode = Mode.CHUNK
        if not self._chunk_left:
            self._chunk_done()

    def _rset(self, arg: str, outcome: object) -> None:
        self._abort_transaction("rset")
        self._enter()
        self._send(REPLY_RESET)

    def _noop(self, arg: str, outcome: object) -> None:
        self._send(REPLY_NOOP)

    def _help(self, arg: str, outcome: object) -> None:
        self._send(REPLY_HELP)

    def _vrfy(self, arg: str, outcome: object) -> None:
        if not arg.strip():
            self._refuse(REPLY_SYNTAX.with_text("VRFY needs an argument"))
        elif self.settings.vrfy:
            self._ask(Vrfy(arg.strip()))
        else:
            self._send(REPLY_VRFY_CANNOT)

    def _quit(self, arg: str, outcome: object) -> None:
        self._abort_transaction("quit")
        self._enter()
        self._send(REPLY_BYE)
        self.mode = Mode.CLOSED

    def _starttls(self, arg: str, outcome: object) -> None:
        if not self.settings.starttls:
            self._refuse(REPLY_NOT_IMPLEMENTED)
        elif self.session.tls:
            self._refuse(REPLY_ALREADY_TLS)
        elif isinstance(outcome, Reply):
            self._refuse(outcome)
        else:
            self._ask(StartTlsRequested())


_COMMANDS: dict[str, Callable[[ServerConnection, str, object], None]] = {
    "EHLO": ServerConnection._ehlo, "HELO": ServerConnection._helo,
    "MAIL": ServerConnection._mail, "RCPT": ServerConnection._rcpt,
    "DATA": ServerConnection._data_command, "BDAT": ServerConnection._bdat,
    "RSET": ServerConnection._rset, "NOOP": ServerConnection._noop,
    "HELP": ServerConnection._help, "VRFY": ServerConnection._vrfy,
    "QUIT": ServerConnection._quit, "STARTTLS": ServerConnection._starttls,
    "AUTH": ServerConnection._auth,
}
