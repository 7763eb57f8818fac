"""The POP3 server protocol core, sans-IO (RFC 1939 with RFC 2449 CAPA, RESP-CODES and
PIPELINING, RFC 2595 STLS, RFC 5034 AUTH, RFC 3206 response codes).

Hand-written because Python has no well-kept POP3 *server* protocol library to build
on: :mod:`poplib` is a client, and the server packages on PyPI are unmaintained and
tied to their own socket loops.  POP3 is small; this core is the SMTP server core's
shape (:mod:`mailyard.proto.smtp.server`) applied to it.

Bytes in, events out; decisions in, bytes out::

    conn = Pop3Connection(settings, tls_active=False)
    conn.greet()
    conn.receive_data(data)              # b"" means the peer closed
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
        if event.needs_decision:
            ...answer: accept_login(), accept_auth(), accept(), reject(), send_content()...
    transport.write(conn.data_to_send())

No sockets, clocks, TLS or storage here: the adapter (``mailyard.pop3d``) owns the
maildrop lock, the message files, delays and timeouts.  Which command is legal when is
the table in :mod:`mailyard.proto.pop3.states`; message streaming is
:mod:`mailyard.proto.pop3.content`; the SASL seam is :mod:`mailyard.proto.pop3.exchange`.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from mailyard.proto.pop3.content import ContentEncoder
from mailyard.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthFailed,
    AuthStart,
    Decision,
    Event,
    LoggedIn,
    Login,
    Retrieve,
    Sentinel,
    Update,
)
from mailyard.proto.pop3.exchange import SaslChallenge, SaslExchange, SaslStep, SaslSuccess
from mailyard.proto.pop3.responses import (
    CODE_AUTH,
    RESP_ALREADY_DELETED,
    RESP_ALREADY_TLS,
    RESP_APOP_NOT_OFFERED,
    RESP_AUTH_BAD_BASE64,
    RESP_AUTH_CANCELLED,
    RESP_AUTH_FAILED,
    RESP_AUTH_MECHANISM,
    RESP_BAD_CHARS,
    RESP_BAD_STATE,
    RESP_BYE,
    RESP_CAPA,
    RESP_DELETED,
    RESP_LINE_TOO_LONG,
    RESP_NO_SUCH_MESSAGE,
    RESP_NOT_UTF8,
    RESP_OK,
    RESP_PASS_WITHOUT_USER,
    RESP_PLAINTEXT_DISALLOWED,
    RESP_STLS,
    RESP_STLS_UNAVAILABLE,
    RESP_SYNTAX,
    RESP_TOO_MANY_AUTH_FAILURES,
    RESP_TOO_MANY_ERRORS,
    RESP_TOP,
    RESP_UNKNOWN_COMMAND,
    RESP_USER_OK,
    Pop3Error,
    Response,
    ok,
)
from mailyard.proto.pop3.session import Maildrop, MessageInfo, Pop3Settings
from mailyard.proto.pop3.states import (
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    NO_ARGUMENT,
    SEQUENCE,
    Mode,
    State,
    in_authorization,
)

__all__ = ["LocalProtocolError", "Pop3Connection"]

_MAX_NUMBER_DIGITS = 9  # message numbers and TOP line counts: no big-int games


class LocalProtocolError(RuntimeError):
    """The adapter used the core wrongly (an answer with no decision pending, ...)."""


class Pop3Connection:
    """One POP3 server connection's protocol state."""

    def __init__(self, settings: Pop3Settings, tls_active: bool = False) -> None:
        self.settings = settings
        self.tls_active = tls_active  # implicit TLS (port 995) or after STLS
        self.state = State.AUTHORIZATION
        self.mode = Mode.COMMAND
        self.username = ""  # from USER, then the logged-in user
        self.maildrop: Maildrop | None = None
        self.bad_commands = 0
        self.auth_failures = 0
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._greeted = False
        self._skipping_line = False
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: Decision | None = None
        self._sasl: SaslExchange | None = None
        self._sasl_final: SaslSuccess | None = None  # success data sent, empty line due
        self._initial: bytes | None = None  # AUTH's initial response (SASL-IR)
        self._content: ContentEncoder | None = None

    # --- adapter API ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.mode is Mode.CLOSED

    @property
    def tls_pending(self) -> bool:
        """STLS was accepted and its +OK queued: start the handshake now."""
        return self.mode is Mode.TLS_PENDING

    @property
    def streaming(self) -> bool:
        """A RETR/TOP response is open: feed :meth:`send_content`, then :meth:`end_content`."""
        return self.mode is Mode.CONTENT

    @property
    def pending(self) -> Decision | None:
        return self._pending

    @property
    def buffered(self) -> int:
        """Input octets received but not yet read (for the adapter's flow control)."""
        return len(self._buf) - self._pos

    @property
    def login_allowed(self) -> bool:
        """USER/PASS and AUTH are offered: on TLS, or where policy allows plaintext."""
        return self.tls_active or self.settings.allow_plaintext_login

    def greet(self) -> None:
        """RFC 1939 4: the greeting (no APOP timestamp: APOP is not offered)."""
        self._send(ok(f"{self.settings.hostname} POP3 server ready"))
        self._greeted = True

    def refuse(self, response: Response) -> None:
        """Refuse the connection instead of greeting it (``-ERR [SYS/TEMP] ...``)."""
        self._greeted = True
        self.close(response)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self.mode is Mode.TLS_PENDING or self.mode is Mode.CLOSED:
            return  # RFC 2595 4 / CVE-2011-0411: nothing sent before TLS counts
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
            if self.mode is Mode.CLOSED:
                return CLOSED
            if (self._pending is not None or not self._greeted
                    or self.mode is Mode.TLS_PENDING or self.mode is Mode.CONTENT):
                return PAUSED
            if not self._read_line():
                if not self._eof:
                    return NEED_DATA
                self._close_quietly()  # a dropped connection deletes nothing

    def accept(self) -> None:
        """Say yes to a pending :class:`Retrieve`, :class:`Update` or :class:`AuthFailed`."""
        event = self._take_pending()
        if isinstance(event, Retrieve):
            if event.body_lines is None:
                self._send(ok(f"{event.message.size} octets"))
            else:
                self._send(RESP_TOP)
            self._content = ContentEncoder(event.body_lines)
            self.mode = Mode.CONTENT
        elif isinstance(event, Update):
            self._send(RESP_BYE)
            self._close_quietly()
        elif isinstance(event, AuthFailed):
            if self.auth_failures >= self.settings.max_auth_failures:
                self.close(RESP_TOO_MANY_AUTH_FAILURES)
            else:
                self._send(event.response)
        else:
            raise LocalProtocolError(f"accept() does not answer {type(event).__name__}")

    def reject(self, response: Response) -> None:
        """Say no to the pending decision with a ``-ERR`` response."""
        if response.ok:
            raise LocalProtocolError("reject() needs a -ERR response")
        event = self._take_pending()
        if isinstance(event, Login):
            self.state = State.AUTHORIZATION
            self.username = ""
            if response.code in ("", CODE_AUTH):  # bad credentials (RFC 3206 4)
                self._auth_failed(event.username, event.mechanism, response)
            else:  # [IN-USE], [LOGIN-DELAY], [SYS/TEMP]: not the client's fault
                self._send(response)
        elif isinstance(event, AuthStart):
            self._send(response)
        elif isinstance(event, Update):
            self._send(response)
            self._close_quietly()
        elif isinstance(event, Retrieve):
            self._send(response)
        else:
            raise LocalProtocolError(f"reject() does not answer {type(event).__name__}")

    def accept_auth(self, exchange: SaslExchange) -> None:
        """Answer :class:`AuthStart` with a fresh exchange for its mechanism."""
        event = self._take_pending()
        if not isinstance(event, AuthStart):
            raise LocalProtocolError("accept_auth() answers AuthStart only")
        self._sasl = exchange
        initial, self._initial = self._initial, None
        self._sasl_step(exchange.step(initial))

    def accept_login(self, messages: Sequence[MessageInfo]) -> None:
        """Answer :class:`Login`: the maildrop snapshot, locked for this session."""
        event = self._take_pending()
        if not isinstance(event, Login):
            raise LocalProtocolError("accept_login() answers Login only")
        self.maildrop = Maildrop(tuple(messages))
        self.username = event.username
        self.state = State.TRANSACTION
        self._events.append(LoggedIn(event.username, event.mechanism))
        count, size = self.maildrop.stat()
        self._send(ok(f"maildrop has {count} messages ({size} octets)"))

    def send_content(self, chunk: bytes) -> None:
        """The next piece of the message being retrieved, as stored."""
        if self._content is None:
            raise LocalProtocolError("no RETR/TOP response is open")
        if chunk and not self._content.done:
            out = self._content.feed(chunk)
            if out:
                self._out.append(out)

    @property
    def content_done(self) -> bool:
        """TOP has all the lines it needs: the adapter may stop reading the file."""
        return self._content is not None and self._content.done

    def end_content(self) -> None:
        """The whole message was fed: close the multi-line response and go on."""
        if self._content is None:
            raise LocalProtocolError("no RETR/TOP response is open")
        self._out.append(self._content.finish())
        self._content = None
        self.mode = Mode.COMMAND

    def tls_established(self) -> None:
        """The STLS handshake finished: the session starts over, encrypted (RFC 2595 4)."""
        if self.mode is not Mode.TLS_PENDING:
            raise LocalProtocolError("no STLS in progress")
        self.tls_active = True
        self.state = State.AUTHORIZATION
        self.username = ""
        self.mode = Mode.COMMAND

    def close(self, response: Response | None = None) -> None:
        """Close from the adapter's side (timeout, shutdown, limits), sending ``response``.
        Nothing is deleted: no :class:`Update` comes out of a close."""
        if self.mode is Mode.CLOSED:
            return
        if response is not None:
            self._send(response)
        self._close_quietly()

    # --- plumbing -------------------------------------------------------------------

    def _close_quietly(self) -> None:
        self._pending = None
        self._events = deque(e for e in self._events if not e.needs_decision)
        self._sasl = None
        self._content = None
        self.mode = Mode.CLOSED

    def _take_pending(self) -> Decision:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return event

    def _ask(self, event: Decision) -> None:
        self._pending = event
        self._events.append(event)

    def _send(self, response: Response) -> None:
        self._out.append(response.encode())

    def _send_multi(self, first: Response, lines: Iterable[str]) -> None:
        """A multi-line response (RFC 1939 3), each line byte-stuffed."""
        out = [first.encode()]
        for line in lines:
            out.append(("." + line if line.startswith(".") else line).encode() + b"\r\n")
        out.append(b".\r\n")
        self._out.append(b"".join(out))

    def _refuse(self, response: Response) -> None:
        """A bad command: ``-ERR``; the ``max_bad_commands``-th closes the connection
        (its answer then says so, still one status line per command)."""
        self.bad_commands += 1
        if self.bad_commands >= self.settings.max_bad_commands:
            self.close(RESP_TOO_MANY_ERRORS)
        else:
            self._send(response)

    # --- reading --------------------------------------------------------------------

    def _read_line(self) -> bool:
        limit = MAX_SASL_LINE if self.mode is Mode.SASL else MAX_COMMAND_LINE
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos <= limit:
                return False
            # Too long: drop what came (keeping a final CR) and answer at its CRLF.
            self._skipping_line = True
            self._pos = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            return self._pos != pos
        self._pos = end + 2
        if self._skipping_line or end - pos + 2 > limit:
            self._skipping_line = False
            self._end_sasl()
            self._refuse(RESP_LINE_TOO_LONG)  # RFC 2449 4
        elif self.mode is Mode.SASL:
            self._sasl_line(buf[pos:end])
        else:
            self._command(buf[pos:end])
        return True

    # --- commands -------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        if b"\n" in line or b"\r" in line or b"\x00" in line:
            self._refuse(RESP_BAD_CHARS)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(RESP_NOT_UTF8)
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        row = SEQUENCE.get(verb)
        if row is None:
            self._refuse(RESP_APOP_NOT_OFFERED if verb == "APOP" else RESP_UNKNOWN_COMMAND)
            return
        target = row.get(self.state)
        if target is None:
            self._refuse(RESP_BAD_STATE)
            return
        if verb in NO_ARGUMENT and arg.strip():
            self._refuse(RESP_SYNTAX.with_text(f"{verb} takes no argument"))
            return
        try:
            _COMMANDS[verb](self, arg, target)
        except Pop3Error as exc:
            self._refuse(exc.response)

    def _capa(self, arg: str, target: object) -> None:
        self._send_multi(RESP_CAPA, self.capabilities())

    def capabilities(self) -> list[str]:
        """RFC 2449 5-6, for the current state and TLS."""
        s = self.settings
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if in_authorization(self.state):
            if self.login_allowed:
                caps.append("USER")
                if s.sasl_mechanisms:
                    caps.append("SASL " + " ".join(s.sasl_mechanisms))
            if s.stls and not self.tls_active:
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {s.implementation}")
        return caps

    def _stls(self, arg: str, target: object) -> None:
        if self.tls_active:
            self._refuse(RESP_ALREADY_TLS)
        elif not self.settings.stls:
            self._refuse(RESP_STLS_UNAVAILABLE)
        else:
            self._send(RESP_STLS)
            self._buf, self._pos = b"", 0  # CVE-2011-0411: drop pipelined plaintext
            self.mode = Mode.TLS_PENDING

    def _user(self, arg: str, target: object) -> None:
        if not self.login_allowed:
            self.state = State.AUTHORIZATION
            self._refuse(RESP_PLAINTEXT_DISALLOWED)
            return
        name = arg.strip()
        if not name or len(name) > 255:
            self.state = State.AUTHORIZATION
            raise Pop3Error(RESP_SYNTAX.with_text("Syntax: USER name"))
        self.username = name
        self.state = State.USER_GIVEN
        self._send(RESP_USER_OK)

    def _pass(self, arg: str, target: object) -> None:
        # RFC 1939 7: the argument is the rest of the line, spaces included.
        if not self.username:
            raise Pop3Error(RESP_PASS_WITHOUT_USER)
        if not arg:
            raise Pop3Error(RESP_SYNTAX.with_text("Syntax: PASS password"))
        self._ask(Login(self.username, "USER", arg))

    def _auth(self, arg: str, target: object) -> None:
        self.state = State.AUTHORIZATION
        self.username = ""
        if not self.login_allowed:
            raise Pop3Error(RESP_PLAINTEXT_DISALLOWED)
        name, _, initial_text = arg.strip().partition(" ")
        mechanism = name.upper()
        if not mechanism:
            raise Pop3Error(RESP_SYNTAX.with_text("Syntax: AUTH mechanism [initial-response]"))
        if mechanism not in self.settings.sasl_mechanisms:
            raise Pop3Error(RESP_AUTH_MECHANISM)
        self._initial = None
        if initial_text:
            initial = _b64decode(initial_text.strip())  # RFC 5034 4: "=" is empty
            if initial is None:
                raise Pop3Error(RESP_AUTH_BAD_BASE64)
            self._initial = initial
        self._ask(AuthStart(mechanism))

    def _quit(self, arg: str, target: object) -> None:
        if self.state is State.TRANSACTION and self.maildrop is not None:
            self.state = State.UPDATE  # RFC 1939 6
            self._ask(Update(self.maildrop.marked()))
            return
        self._send(RESP_BYE)  # RFC 1939 4: QUIT in AUTHORIZATION
        self._close_quietly()

    # --- TRANSACTION ----------------------------------------------------------------

    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _message(self, text: str) -> tuple[int, MessageInfo]:
        number = _number(text)
        message = self._drop().get(number) if number is not None else None
        if message is None:
            if number is not None and number in self._drop().deleted:
                raise Pop3Error(RESP_ALREADY_DELETED)
            raise Pop3Error(RESP_NO_SUCH_MESSAGE)
        assert number is not None
        return number, message

    def _stat(self, arg: str, target: object) -> None:
        count, size = self._drop().stat()
        self._send(ok(f"{count} {size}"))

    def _list(self, arg: str, target: object) -> None:
        if arg.strip():
            number, message = self._message(_one_argument(arg, "LIST [msg]"))
            self._send(ok(f"{number} {message.size}"))
            return
        count, size = self._drop().stat()
        self._send_multi(ok(f"{count} messages ({size} octets)"),
                         (f"{n} {m.size}" for n, m in self._drop().visible()))

    def _uidl(self, arg: str, target: object) -> None:
        if arg.strip():
            number, message = self._message(_one_argument(arg, "UIDL [msg]"))
            self._send(ok(f"{number} {message.uid}"))
            return
        self._send_multi(RESP_OK, (f"{n} {m.uid}" for n, m in self._drop().visible()))

    def _retr(self, arg: str, target: object) -> None:
        number, message = self._message(_one_argument(arg, "RETR msg"))
        self._ask(Retrieve(number, message))

    def _top(self, arg: str, target: object) -> None:
        parts = arg.split(" ")
        if len(parts) != 2:
            raise Pop3Error(RESP_SYNTAX.with_text("Syntax: TOP msg n"))
        number, message = self._message(parts[0])
        lines = _line_count(parts[1])
        if lines is None:
            raise Pop3Error(RESP_SYNTAX.with_text("TOP needs a non-negative line count"))
        self._ask(Retrieve(number, message, lines))

    def _dele(self, arg: str, target: object) -> None:
        number, _ = self._message(_one_argument(arg, "DELE msg"))
        self._drop().deleted.add(number)  # RFC 1939 5: removed only in UPDATE
        self._send(RESP_DELETED)

    def _noop(self, arg: str, target: object) -> None:
        self._send(RESP_OK)

    def _rset(self, arg: str, target: object) -> None:
        self._drop().deleted.clear()
        count, size = self._drop().stat()
        self._send(ok(f"maildrop has {count} messages ({size} octets)"))

    # --- AUTH exchange (RFC 5034 4) -------------------------------------------------

    def _sasl_line(self, line: bytes) -> None:
        if line == b"*":
            self._end_sasl()
            self._send(RESP_AUTH_CANCELLED)
            return
        final = self._sasl_final
        if final is not None:  # the client's empty answer to the success data
            self._sasl_final = None
            self._end_sasl()
            if line:
                self._auth_failed(final.username, self._mechanism(), RESP_AUTH_FAILED)
            else:
                self._ask(Login(final.username, self._mechanism(), final.password))
            return
        data = _b64decode(line.decode("ascii", "replace")) if line else b""
        if data is None:
            self._end_sasl()
            self._refuse(RESP_AUTH_BAD_BASE64)
            return
        assert self._sasl is not None
        self._sasl_step(self._sasl.step(data))

    def _mechanism(self) -> str:
        return self._sasl.mechanism if self._sasl is not None else ""

    def _sasl_step(self, step: SaslStep) -> None:
        mechanism = self._mechanism()
        if isinstance(step, SaslChallenge):
            self.mode = Mode.SASL
            self._out.append(b"+ " + base64.b64encode(step.data) + b"\r\n")
        elif isinstance(step, SaslSuccess):
            if step.data:
                self._sasl_final = step
                self.mode = Mode.SASL
                self._out.append(b"+ " + base64.b64encode(step.data) + b"\r\n")
                return
            self._end_sasl()
            self._ask(Login(step.username, mechanism, step.password))
        else:
            self._end_sasl()
            self._auth_failed("", mechanism, RESP_AUTH_FAILED)

    def _end_sasl(self) -> None:
        if self.mode is Mode.SASL:
            self.mode = Mode.COMMAND
        self._sasl = None
        self._sasl_final = None

    def _auth_failed(self, username: str, mechanism: str, response: Response) -> None:
        self.auth_failures += 1
        self._ask(AuthFailed(username, mechanism, self.auth_failures, response))


def _b64decode(text: str) -> bytes | None:
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _number(text: str, allow_zero: bool = False) -> int | None:
    """A message number or line count: ASCII digits only (no sign, no space)."""
    if not text or len(text) > _MAX_NUMBER_DIGITS or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value == 0 and not allow_zero:
        return None
    return value


def _line_count(text: str) -> int | None:
    """TOP's line count: ASCII digits.  A count too long for :func:`_number` asks for
    more lines than any message has, so it is read as "the whole body" (RFC 1939 7:
    the server then sends the entire message), without making a big integer."""
    if text.isascii() and text.isdigit():
        text = text.lstrip("0") or "0"
        if len(text) > _MAX_NUMBER_DIGITS:
            return int(10 ** _MAX_NUMBER_DIGITS - 1)
    return _number(text, allow_zero=True)


def _one_argument(arg: str, syntax: str) -> str:
    if not arg or " " in arg:
        raise Pop3Error(RESP_SYNTAX.with_text(f"Syntax: {syntax}"))
    return arg


_COMMANDS: dict[str, Callable[[Pop3Connection, str, object], None]] = {
    "CAPA": Pop3Connection._capa, "STLS": Pop3Connection._stls,
    "USER": Pop3Connection._user, "PASS": Pop3Connection._pass,
    "AUTH": Pop3Connection._auth, "QUIT": Pop3Connection._quit,
    "STAT": Pop3Connection._stat, "LIST": Pop3Connection._list,
    "UIDL": Pop3Connection._uidl, "RETR": Pop3Connection._retr,
    "TOP": Pop3Connection._top, "DELE": Pop3Connection._dele,
    "NOOP": Pop3Connection._noop, "RSET": Pop3Connection._rset,
}
