"""Sans-IO SMTP client: the sending side of RFC 5321, as a state machine.

Bytes from the server go in with :meth:`SmtpClient.receive_data`; the adapter then asks
:meth:`SmtpClient.next_event` what to do, and gets one of:

* :class:`Send` - write these bytes;
* :class:`NeedData` - read more (and which timeout of RFC 5321 4.5.3.2 applies);
* :class:`StartTls` - run the TLS handshake now, then call :meth:`~SmtpClient.tls_established`;
* :class:`NeedContent` - feed the next chunk of message content with
  :meth:`~SmtpClient.send_content`, or :meth:`~SmtpClient.end_content` at the end;
* a result: :class:`SessionReady`, :class:`SessionFailed`, :class:`TransactionDone`,
  :class:`Closed`, or :class:`Idle` when there is nothing to do.

Everything the protocol decides lives here: extension negotiation (EHLO, HELO fallback,
STARTTLS with a fresh EHLO, AUTH PLAIN/LOGIN), MAIL/RCPT parameters (SIZE, BODY,
SMTPUTF8, DSN), pipelining (RFC 2920), DATA with dot-stuffing or BDAT (RFC 3030), and
how each reply turns into a per-recipient result.  Refusals are values: every recipient
ends with a :class:`~mailyard.proto.smtp.replies.Reply` (the remote's, or a synthesized
one), and the transaction with a message-level reply.

Reply parsing and content encoding live in :mod:`mailyard.proto.smtp.client_codec`.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailyard.envelope import Envelope, Recipient
from mailyard.proto.errors import LocalProtocolError
from mailyard.proto.smtp.client_codec import (
    DataEncoder,
    Extensions,
    RawEncoder,
    RemoteProtocolError,
    ReplyParser,
    describe,
)
from mailyard.proto.smtp.client_events import (
    Closed,
    Event,
    Idle,
    NeedContent,
    NeedData,
    Phase,
    RecipientResult,
    Send,
    SessionFailed,
    SessionReady,
    StartTls,
    TransactionDone,
    TransactionResult,
)
from mailyard.proto.smtp.params import MailParameters
from mailyard.proto.smtp.replies import (
    REPLY_NO_VALID_RECIPIENTS,
    REPLY_REMOTE_AUTH_MECH,
    REPLY_REMOTE_AUTH_NO_TLS,
    REPLY_REMOTE_AUTH_UNVERIFIED,
    REPLY_REMOTE_BAD_ADDRESS,
    REPLY_REMOTE_CERT_UNVERIFIED,
    REPLY_REMOTE_LOST,
    REPLY_REMOTE_NO_BINARYMIME,
    REPLY_REMOTE_NO_SMTPUTF8,
    REPLY_REMOTE_NO_TLS,
    REPLY_REMOTE_PROTOCOL,
    REPLY_REMOTE_TLS_FAILED,
    REPLY_REMOTE_TOO_BIG,
    Reply,
)
from mailyard.proto.smtp.wire import MailCommand, RcptCommand, forward_path_ok, reverse_path_ok

__all__ = [
    "Closed", "DataEncoder", "Event", "Extensions", "Idle", "LocalProtocolError", "NeedContent",
    "NeedData", "Phase",
    "RecipientResult", "RemoteProtocolError", "ReplyParser", "Send", "SessionFailed",
    "SessionReady", "SmtpClient", "StartTls", "State", "TLS_LEVELS", "TRANSITIONS",
    "TransactionDone", "TransactionResult", "describe", "tls_level",
]


# --- the state machine ------------------------------------------------------------------
class State(enum.Enum):
    GREETING = "greeting"
    EHLO = "ehlo"  # EHLO or the HELO fallback sent
    STARTTLS = "starttls"
    TLS_HANDSHAKE = "tls-handshake"
    AUTH = "auth"
    READY = "ready"  # between transactions (an RSET probe also runs here)
    TRANSACTION = "transaction"  # MAIL .. final reply
    FAILED = "failed"  # the session cannot be used, but QUIT may still be sent
    QUIT = "quit"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.GREETING: frozenset({State.EHLO, State.FAILED, State.CLOSED}),
    State.EHLO: frozenset({State.STARTTLS, State.AUTH, State.READY, State.FAILED, State.CLOSED}),
    State.STARTTLS: frozenset({State.TLS_HANDSHAKE, State.AUTH, State.READY, State.FAILED,
                               State.CLOSED}),
    State.TLS_HANDSHAKE: frozenset({State.EHLO, State.CLOSED}),
    State.AUTH: frozenset({State.READY, State.FAILED, State.CLOSED}),
    State.READY: frozenset({State.TRANSACTION, State.FAILED, State.QUIT, State.CLOSED}),
    State.TRANSACTION: frozenset({State.READY, State.CLOSED}),
    State.FAILED: frozenset({State.QUIT, State.CLOSED}),
    State.QUIT: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


#: What an awaited reply answers; each has its handler in ``_HANDLERS``.
Cmd = enum.Enum("Cmd", "GREETING EHLO HELO STARTTLS AUTH PROBE RSET MAIL RCPT DATA DISCARD "
                       "DOT BDAT BDAT_LAST QUIT")


_FINAL = (Cmd.DOT, Cmd.BDAT_LAST)
BDAT_CHUNK = 262144
#: Outbound TLS security levels, weakest first (like Postfix's smtp_tls_security_level).
#: "verify" and "secure" have the adapter check the certificate (mailyard.tls.PeerCheck).
TLS_LEVELS = ("none", "may", "encrypt", "verify", "secure")
#: Earlier names still accepted: "require" meant what "encrypt" means.
TLS_LEVEL_ALIASES = {"require": "encrypt"}
_TLS_REQUIRED = ("encrypt", "verify", "secure")


def tls_level(value: str) -> str:
    """The level ``value`` names; ValueError if it names none."""
    level = TLS_LEVEL_ALIASES.get(value, value)
    if level not in TLS_LEVELS:
        raise ValueError(f"bad TLS level {value!r}")
    return level


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class _Transaction:
    """Per-transaction state (the session's state lives on :class:`SmtpClient`)."""

    envelope: Envelope
    recipients: list[Recipient]
    size: int
    bdat: bool
    smtputf8: bool
    results: list[Reply | None]
    retry: list[bool]
    unsent: deque[tuple[str, Cmd, int]] = field(default_factory=deque)
    accepted: list[int] = field(default_factory=list)
    mail_reply: Reply | None = None
    data_reply: Reply | None = None
    encoder: DataEncoder | None = None
    bdat_buffer: bytearray = field(default_factory=bytearray)
    wants_content: bool = False
    content_sent: bool = False  # the final "." or BDAT LAST went out

    def live(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None]


class SmtpClient:
    """One SMTP client connection.  ``tls`` is the hop's level: "none", "may" (use
    STARTTLS when offered), "encrypt" (STARTTLS required; "require" is its earlier
    name), "verify" or "secure" (STARTTLS required and the adapter checks the
    certificate, reporting the result to :meth:`tls_established`).

    ``auth`` is (username, password) for a smarthost.  It is sent only after a
    handshake whose certificate was verified; with ``auth_unverified`` (the operator's
    explicit choice) also over unverified TLS, and in clear when the level is "none"."""

    def __init__(self, helo_name: str, tls: str = "may", auth: tuple[str, str] | None = None,
                 *, auth_unverified: bool = False, bdat_chunk: int = BDAT_CHUNK,
                 parser: ReplyParser | None = None) -> None:
        self.helo_name = helo_name
        self.tls_policy = tls_level(tls)
        self.auth = auth
        self.auth_unverified = auth_unverified
        self.tls_verified = False  # the server's certificate was checked and passed
        self.bdat_chunk = bdat_chunk
        self.state = State.GREETING
        self.extensions = Extensions()
        self.tls_active = False
        self.transactions = 0  # messages whose content went out on this connection
        self.replies_seen = 0  # lets the adapter bound the wait for one reply, not one read
        self._parser = parser or ReplyParser()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: deque[tuple[Cmd, int]] = deque([(Cmd.GREETING, 0)])
        self._eof = False
        self._tried_helo = False
        self._auth_answers: list[str] = []
        self._needs_reset = False
        self._txn: _Transaction | None = None

    # --- public API -----------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self.state is State.READY and not self._pending

    @property
    def can_quit(self) -> bool:
        return self.state in (State.READY, State.FAILED) and not self._pending

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; b"" means the server closed the connection."""
        if not data:
            self._eof = True
            return
        try:
            self._parser.feed(data)
        except RemoteProtocolError as exc:
            self._abort(REPLY_REMOTE_PROTOCOL.with_text(
                f"{REPLY_REMOTE_PROTOCOL.text}: {exc}"))

    def connection_lost(self, reply: Reply) -> None:
        """The adapter gave up on the connection (timeout, reset, write error)."""
        self._abort(reply)

    def next_event(self) -> Event:
        while True:
            if self._out:
                data = bytes(self._out)
                self._out.clear()
                return Send(data)
            if self._events:
                return self._events.popleft()
            if self._pending:
                if self._parser.replies:
                    self._dispatch(self._parser.replies.popleft())
                    continue
                if self._eof:
                    self._abort(REPLY_REMOTE_LOST)
                    continue
                cmd = self._pending[0][0]
                return NeedData(Phase.DATA_END if cmd in _FINAL else Phase.COMMAND)
            if self._parser.replies and self.state is not State.CLOSED:
                self._abort(REPLY_REMOTE_PROTOCOL.with_text(
                    "Unexpected reply from the remote server"))
                continue
            if self._txn is not None and self._txn.wants_content:
                return NeedContent()
            return Idle()

    def tls_established(self, verified: bool = False) -> None:
        """The handshake after STARTTLS succeeded: forget the EHLO state (RFC 3207 4.2).
        ``verified``: the adapter checked the server's certificate for this hop."""
        self._require(State.TLS_HANDSHAKE)
        self.tls_active = True
        self.tls_verified = verified
        self.extensions = Extensions()
        self._parser.reset()
        self._set_state(State.EHLO)
        self._command(f"EHLO {self.helo_name}", Cmd.EHLO)

    def tls_failed(self, reason: str, *, certificate: bool = False) -> None:
        """The handshake failed, or (``certificate``) the server's certificate did not
        pass the level's check.  Either is a temporary failure; only a failed handshake
        counts as ``tls_failure`` (opportunistic TLS may then retry in clear)."""
        self._require(State.TLS_HANDSHAKE)
        template = REPLY_REMOTE_CERT_UNVERIFIED if certificate else REPLY_REMOTE_TLS_FAILED
        reply = template.with_text(f"{template.text}: {reason}")
        self._events.append(SessionFailed(reply, "tls", tls_failure=not certificate))
        self._close()

    def cleartext_in_handshake(self, size: int) -> None:
        """``size`` bytes arrived after the 220 to STARTTLS and before the session's
        first command inside TLS: they came in clear (RFC 3207 5; a server says nothing
        between the handshake and the client's EHLO), so nothing of this session can be
        trusted.  A temporary failure, never a retry in clear."""
        self._require(State.TLS_HANDSHAKE)
        reply = REPLY_REMOTE_PROTOCOL.with_text(
            f"{REPLY_REMOTE_PROTOCOL.text}: {size} byte(s) received in clear during the "
            "STARTTLS handshake")
        self._events.append(SessionFailed(reply, "tls"))
        self._close()

    def reset(self) -> None:
        """RSET on an idle connection before reuse; answers SessionReady or SessionFailed."""
        self._require(State.READY)
        self._command("RSET", Cmd.PROBE)

    def quit(self) -> None:
        if not self.can_quit:
            raise LocalProtocolError(f"cannot QUIT in state {self.state.value}")
        self._set_state(State.QUIT)
        self._command("QUIT", Cmd.QUIT)

    def start_transaction(self, envelope: Envelope, recipients: Sequence[Recipient],
                          size: int) -> None:
        """Begin one message for ``recipients``; ends with a TransactionDone event."""
        self._require(State.READY)
        ext = self.extensions
        txn = _Transaction(envelope, list(recipients), size, bdat="CHUNKING" in ext,
                           smtputf8=False, results=[None] * len(recipients),
                           retry=[False] * len(recipients))
        self._txn = txn
        self._set_state(State.TRANSACTION)
        blocked = self._check_message(txn)
        if blocked is not None:
            self._finish(blocked, False)
            return
        needs_utf8 = not envelope.sender.isascii()
        for i, rcpt in enumerate(txn.recipients):
            if not forward_path_ok(rcpt.address):
                txn.results[i] = REPLY_REMOTE_BAD_ADDRESS
            elif not rcpt.address.isascii():
                if "SMTPUTF8" not in ext:
                    txn.results[i] = REPLY_REMOTE_NO_SMTPUTF8
                needs_utf8 = True
        if not txn.live():
            self._finish(REPLY_NO_VALID_RECIPIENTS, False)
            return
        txn.smtputf8 = "SMTPUTF8" in ext and (needs_utf8 or envelope.smtputf8)
        self._plan(txn)
        self._send_planned()

    def send_content(self, chunk: bytes) -> None:
        txn = self._content_txn()
        assert txn.encoder is not None
        data = txn.encoder.encode(chunk)
        if not txn.bdat:
            self._out += data
            return
        txn.bdat_buffer += data
        if len(txn.bdat_buffer) >= self.bdat_chunk:
            self._bdat(txn, last=False)

    def end_content(self) -> None:
        txn = self._content_txn()
        assert txn.encoder is not None
        tail = txn.encoder.finish()
        txn.wants_content = False
        txn.content_sent = True
        if txn.bdat:
            txn.bdat_buffer += tail
            self._bdat(txn, last=True)
        else:
            self._out += tail + b".\r\n"
            self._pending.append((Cmd.DOT, 0))

    # --- plumbing -------------------------------------------------------------------
    def _set_state(self, new: State) -> None:
        if new is not self.state and new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"SMTP client: {self.state.value} -> {new.value} not allowed")
        self.state = new

    def _require(self, state: State) -> None:
        if self.state is not state or self._pending:
            raise LocalProtocolError(f"SMTP client is {self.state.value}, not {state.value}")

    def _command(self, line: str, cmd: Cmd, arg: int = 0) -> None:
        self._out += line.encode("utf-8") + b"\r\n"
        self._pending.append((cmd, arg))

    def _close(self) -> None:
        self._pending.clear()
        self._out.clear()
        self._set_state(State.CLOSED)

    def _abort(self, reply: Reply) -> None:
        """The connection is gone (or going: 421): turn that into results."""
        if self.state is State.CLOSED:
            return
        if self.state is State.TRANSACTION and self._txn is not None:
            self._finish(reply, not self._txn.content_sent, close=True)
        elif self.state in (State.QUIT, State.FAILED):
            self._events.append(Closed())
        elif self._pending and self._pending[0][0] is Cmd.PROBE:
            self._events.append(SessionFailed(reply, "rset"))
        elif self.state is not State.READY:
            self._events.append(SessionFailed(reply, self._stage()))
        else:
            self._events.append(Closed())
        self._close()

    def _stage(self) -> str:
        if self._pending and self._pending[0][0] is Cmd.HELO:
            return "helo"
        return {State.TLS_HANDSHAKE: "tls"}.get(self.state, self.state.value)

    def _fail_session(self, reply: Reply, stage: str) -> None:
        self._events.append(SessionFailed(reply, stage))
        self._pending.clear()
        self._set_state(State.FAILED)

    def _dispatch(self, reply: Reply) -> None:
        self.replies_seen += 1
        cmd, arg = self._pending.popleft()
        if reply.code == 421 and cmd is not Cmd.QUIT:  # RFC 5321 3.8: the server is closing
            self._pending.appendleft((cmd, arg))
            self._abort(reply)
            return
        _HANDLERS[cmd](self, reply, arg)

    # --- session set-up -------------------------------------------------------------
    def _on_greeting(self, reply: Reply, _: int) -> None:
        if reply.code != 220:
            self._fail_session(reply, "greeting")
            return
        self._set_state(State.EHLO)
        self._command(f"EHLO {self.helo_name}", Cmd.EHLO)

    def _on_ehlo(self, reply: Reply, _: int) -> None:
        if reply.code == 250:
            self.extensions = Extensions.from_ehlo(reply)
            self._after_ehlo()
        elif reply.is_permanent and not self._tried_helo:  # RFC 5321 3.2: fall back to HELO
            self._tried_helo = True
            self._command(f"HELO {self.helo_name}", Cmd.HELO)
        else:
            self._fail_session(reply, "ehlo")

    def _on_helo(self, reply: Reply, _: int) -> None:
        if reply.code != 250:
            self._fail_session(reply, "helo")
            return
        self.extensions = Extensions()
        self._after_ehlo()

    def _after_ehlo(self) -> None:
        if not self.tls_active and self.tls_policy != "none":
            if "STARTTLS" in self.extensions:
                self._set_state(State.STARTTLS)
                self._command("STARTTLS", Cmd.STARTTLS)
                return
            if self.tls_policy in _TLS_REQUIRED:
                self._fail_session(REPLY_REMOTE_NO_TLS, "starttls")
                return
        self._start_auth()

    def _on_starttls(self, reply: Reply, _: int) -> None:
        if reply.code == 220:
            if self._parser.buffered:  # RFC 3207 5: nothing may follow the 220 in clear
                self._abort(REPLY_REMOTE_PROTOCOL.with_text("Data pipelined after STARTTLS 220"))
                return
            self._set_state(State.TLS_HANDSHAKE)
            self._events.append(StartTls())
        elif self.tls_policy in _TLS_REQUIRED:
            self._fail_session(reply, "starttls")
        else:
            self._start_auth()

    def _start_auth(self) -> None:
        mechanisms = self.extensions.auth_mechanisms
        if self.auth is None or "AUTH" not in self.extensions:
            self._ready()
        elif not self._may_send_credentials():
            refusal = REPLY_REMOTE_AUTH_UNVERIFIED if self.tls_active else REPLY_REMOTE_AUTH_NO_TLS
            self._fail_session(refusal, "auth")
        elif "PLAIN" in mechanisms:
            self._set_state(State.AUTH)
            self._auth_answers = [_b64(f"\0{self.auth[0]}\0{self.auth[1]}")]
            self._command(f"AUTH PLAIN {self._auth_answers[0]}", Cmd.AUTH)
        elif "LOGIN" in mechanisms:
            self._set_state(State.AUTH)
            self._auth_answers = [_b64(self.auth[0]), _b64(self.auth[1])]
            self._command("AUTH LOGIN", Cmd.AUTH)
        else:
            self._fail_session(REPLY_REMOTE_AUTH_MECH, "auth")

    def _may_send_credentials(self) -> bool:
        if self.tls_verified:
            return True
        if not self.auth_unverified:
            return False
        return self.tls_active or self.tls_policy == "none"

    def _on_auth(self, reply: Reply, _: int) -> None:
        if reply.code // 100 == 2:  # 235 (RFC 4954 6); some test servers say 250
            self._ready()
        elif reply.code == 334 and self._auth_answers:  # RFC 4954 4 (LOGIN: user, password)
            self._command(self._auth_answers.pop(0), Cmd.AUTH)
        else:
            self._fail_session(reply, "auth")

    def _ready(self) -> None:
        self._set_state(State.READY)
        self._events.append(SessionReady())

    def _on_probe(self, reply: Reply, _: int) -> None:
        if reply.code == 250:
            self._needs_reset = False
            self._events.append(SessionReady())
        else:
            self._fail_session(reply, "rset")

    def _on_quit(self, reply: Reply, _: int) -> None:
        self._events.append(Closed())
        self._close()

    # --- transactions ---------------------------------------------------------------
    def _check_message(self, txn: _Transaction) -> Reply | None:
        """Refusals decided from the EHLO capabilities before anything is sent."""
        ext, env = self.extensions, txn.envelope
        limit = ext.size_limit
        if limit and txn.size > limit:  # RFC 1870 6
            return REPLY_REMOTE_TOO_BIG.with_text(
                f"{REPLY_REMOTE_TOO_BIG.text} ({txn.size} > {limit} octets)")
        if env.body_type.upper() == "BINARYMIME" and not ("BINARYMIME" in ext and txn.bdat):
            return REPLY_REMOTE_NO_BINARYMIME  # RFC 3030 3: no downgrade of binary content
        if not reverse_path_ok(env.sender):
            return REPLY_REMOTE_BAD_ADDRESS
        if not env.sender.isascii() and "SMTPUTF8" not in ext:  # RFC 6531 3.2
            return REPLY_REMOTE_NO_SMTPUTF8
        return None

    def _mail_line(self, txn: _Transaction) -> str:
        ext, env = self.extensions, txn.envelope
        body = env.body_type.upper()
        if not (body == "BINARYMIME" or (body == "8BITMIME" and "8BITMIME" in ext)):
            body = "7BIT"  # sent without BODY=
        dsn = "DSN" in ext  # RFC 3461 4.3, 4.4
        params = MailParameters(size=txn.size if ext.size_limit is not None else None,
                                body=body, smtputf8=txn.smtputf8,
                                ret=env.ret if dsn else "", envid=env.envid if dsn else "")
        return MailCommand(env.sender, params).encode()

    def _rcpt_line(self, rcpt: Recipient) -> str:
        if "DSN" in self.extensions:  # RFC 3461 4.1, 4.2
            return RcptCommand(rcpt.address, rcpt.dsn).encode()
        return RcptCommand(rcpt.address).encode()

    def _plan(self, txn: _Transaction) -> None:
        if self._needs_reset:
            txn.unsent.append(("RSET", Cmd.RSET, 0))
        txn.unsent.append((self._mail_line(txn), Cmd.MAIL, 0))
        for i in txn.live():
            txn.unsent.append((self._rcpt_line(txn.recipients[i]), Cmd.RCPT, i))
        if not txn.bdat:
            txn.unsent.append(("DATA", Cmd.DATA, 0))
        self._needs_reset = True

    def _send_planned(self) -> None:
        """RFC 2920 3.1: with PIPELINING the whole envelope (ending at DATA) goes in one
        write; without it, one command at a time."""
        txn = self._txn
        assert txn is not None
        while txn.unsent:
            self._command(txn.unsent[0][0], txn.unsent[0][1], txn.unsent[0][2])
            txn.unsent.popleft()
            if "PIPELINING" not in self.extensions:
                return

    def _on_rset(self, reply: Reply, _: int) -> None:
        if reply.code != 250:
            self._finish(reply, True, close=False, fail=True)
            return
        self._needs_reset = True
        self._step()

    def _on_mail(self, reply: Reply, _: int) -> None:
        txn = self._txn
        assert txn is not None
        txn.mail_reply = reply
        if reply.code // 100 != 2:
            txn.unsent.clear()
        self._step()

    def _on_rcpt(self, reply: Reply, index: int) -> None:
        txn = self._txn
        assert txn is not None
        if txn.mail_reply is not None and txn.mail_reply.code // 100 == 2:
            if reply.code // 100 == 2:
                txn.accepted.append(index)
            else:
                txn.results[index] = reply
        self._step()

    def _on_data(self, reply: Reply, _: int) -> None:
        txn = self._txn
        assert txn is not None
        txn.data_reply = reply
        self._step()

    def _step(self) -> None:
        """After a reply during MAIL/RCPT/DATA: send the next command or move on."""
        txn = self._txn
        assert txn is not None
        if self._pending:
            return
        mail_failed = txn.mail_reply is not None and txn.mail_reply.code // 100 != 2
        if txn.data_reply is not None and txn.data_reply.code == 354 and (
                mail_failed or not txn.accepted):
            self._out += b".\r\n"  # RFC 2920 3.1: an empty message ends a lone DATA
            self._pending.append((Cmd.DISCARD, 0))
            return
        if mail_failed:
            self._end_refused(txn)
            return
        if txn.unsent:
            if txn.unsent[0][1] is Cmd.DATA and not txn.accepted:
                txn.unsent.clear()
            else:
                self._send_planned()
                return
        if not txn.accepted:
            self._finish(REPLY_NO_VALID_RECIPIENTS, False)
        elif txn.bdat or (txn.data_reply is not None and txn.data_reply.code == 354):
            self._begin_content(txn)
        elif txn.data_reply is not None:
            self._finish(txn.data_reply, False)

    def _end_refused(self, txn: _Transaction) -> None:
        """MAIL was refused: no transaction is open, every recipient gets that reply (a
        4xx may work on another host)."""
        assert txn.mail_reply is not None
        self._needs_reset = False
        self._finish(txn.mail_reply, txn.mail_reply.is_transient)

    def _on_discard(self, reply: Reply, _: int) -> None:
        txn = self._txn
        assert txn is not None
        if txn.mail_reply is not None and txn.mail_reply.code // 100 != 2:
            self._end_refused(txn)
        else:
            self._needs_reset = reply.code != 250
            self._finish(REPLY_NO_VALID_RECIPIENTS, False)

    def _begin_content(self, txn: _Transaction) -> None:
        raw = txn.envelope.body_type.upper() == "BINARYMIME"
        txn.encoder = RawEncoder() if raw else DataEncoder(dot_stuff=not txn.bdat)
        txn.wants_content = True

    def _content_txn(self) -> _Transaction:
        txn = self._txn
        if self.state is not State.TRANSACTION or txn is None or not txn.wants_content:
            raise LocalProtocolError("SMTP client is not sending content now")
        return txn

    def _bdat(self, txn: _Transaction, last: bool) -> None:
        size = len(txn.bdat_buffer)
        self._out += f"BDAT {size}{' LAST' if last else ''}\r\n".encode("ascii")
        self._out += txn.bdat_buffer
        txn.bdat_buffer = bytearray()
        self._pending.append((Cmd.BDAT_LAST if last else Cmd.BDAT, 0))

    def _on_bdat(self, reply: Reply, _: int) -> None:
        if reply.code != 250:  # RFC 3030 2: a failed chunk ends the transaction
            self._finish(reply, False)

    def _on_dot(self, reply: Reply, _: int) -> None:
        self._needs_reset = False
        self.transactions += 1
        self._finish(reply, False)

    def _finish(self, reply: Reply, retry_elsewhere: bool, close: bool = False,
                fail: bool = False) -> None:
        """Every recipient still open gets ``reply``; the transaction ends."""
        txn = self._txn
        assert txn is not None
        for i in range(len(txn.results)):
            if txn.results[i] is None:
                txn.results[i] = reply
                txn.retry[i] = retry_elsewhere
        recipients = tuple(RecipientResult(r, res, retry)  # type: ignore[arg-type]
                           for r, res, retry in zip(txn.recipients, txn.results, txn.retry,
                                                    strict=True))
        result = TransactionResult(reply, recipients, txn.content_sent)
        self._events.append(TransactionDone(result))
        self._txn = None
        if close:
            self._close()
        else:
            self._pending.clear()
            self._set_state(State.READY)
            if fail:
                self._set_state(State.FAILED)


#: The handler of each awaited reply (declared, not looked up by name).
_HANDLERS: dict[Cmd, Callable[[SmtpClient, Reply, int], None]] = {
    Cmd.GREETING: SmtpClient._on_greeting, Cmd.EHLO: SmtpClient._on_ehlo,
    Cmd.HELO: SmtpClient._on_helo, Cmd.STARTTLS: SmtpClient._on_starttls,
    Cmd.AUTH: SmtpClient._on_auth, Cmd.PROBE: SmtpClient._on_probe,
    Cmd.RSET: SmtpClient._on_rset, Cmd.MAIL: SmtpClient._on_mail, Cmd.RCPT: SmtpClient._on_rcpt,
    Cmd.DATA: SmtpClient._on_data, Cmd.DISCARD: SmtpClient._on_discard,
    Cmd.DOT: SmtpClient._on_dot, Cmd.BDAT: SmtpClient._on_bdat,
    Cmd.BDAT_LAST: SmtpClient._on_dot, Cmd.QUIT: SmtpClient._on_quit,
}
