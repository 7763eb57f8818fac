"""A scriptable SMTP server standing in for a remote MX host in delivery tests.

Postfix's ``smtp-sink`` covers the common faults (a soft or hard reply to a whole
command, 421, disconnect after a command), but not these, which this server does:

* a different reply per recipient (one RCPT refused, the others taken);
* a connection cut in the middle of the message content;
* a slow reply that notices the client giving up (the message is then *not* counted
  as accepted, as a real MTA discards a transaction whose client went away before
  the final reply);
* STARTTLS advertised and then a handshake that cannot succeed;
* changing all of that while it runs (``script(...)`` / ``heal()``), so a test can
  let a delivery fail, then let the retry succeed on the same address.

It listens on any loopback address (``127.0.0.2`` ...) and port, speaks just enough
RFC 5321 for Mailyard's client (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing,
RSET, NOOP, QUIT; PIPELINING is advertised and handled by answering in order) and
records every session and every accepted message.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_REPLIES = {
    "EHLO": "250 ok",
    "HELO": "250 {name}",
    "MAIL": "250 2.1.0 Sender ok",
    "RCPT": "250 2.1.5 Recipient ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued as {qid}",
    "RSET": "250 2.0.0 Ok",
    "NOOP": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
    "STARTTLS": "220 2.0.0 Ready to start TLS",
}


@dataclass
class Script:
    """How the server behaves; replace it with :meth:`FakeMx.script`."""

    replies: dict[str, str] = field(default_factory=dict)  # verb ("MAIL", ".") -> reply
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # lower-case address -> reply
    delays: dict[str, float] = field(default_factory=dict)  # verb -> seconds before replying
    drop_after_content_bytes: int | None = None  # cut the connection inside DATA
    starttls: str = "off"  # "off", or "broken": advertise it, then answer the handshake with junk
    greeting: str = "220 {name} ESMTP fake"


@dataclass
class AcceptedMessage:
    session: int
    mail_from: str
    recipients: list[str]
    data: bytes  # dot-unstuffed content, CRLF line ends, without the final "."


@dataclass
class SessionLog:
    number: int
    commands: list[str] = field(default_factory=list)
    peer: str = ""  # the client's address as this server saw it
    tls_attempted: bool = False
    content_received: bool = False  # the whole message, up to the final dot
    ended: str = ""  # "quit", "dropped", "421", "eof", "tls-broken", "client-gone"


class _ClientGone(Exception):
    pass


def _path(arg: str) -> str:
    """The address in ``FROM:<a@b> SIZE=1`` / ``TO:<a@b>``."""
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1:end] if 0 <= start < end else arg.split(":", 1)[-1].strip()


class FakeMx:
    def __init__(self, host: str, port: int, name: str = "fake-mx.test") -> None:
        self.host, self.port, self.name = host, port, name
        self._lock = threading.Lock()
        self._script = Script()
        self.sessions: list[SessionLog] = []
        self.messages: list[AcceptedMessage] = []
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------
    def script(self, **kwargs: Any) -> None:
        with self._lock:
            self._script = Script(**kwargs)

    def heal(self) -> None:
        self.script()

    def current(self) -> Script:
        with self._lock:
            return self._script

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[AcceptedMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"{self.host}: {len(self.messages)} message(s) accepted, "
                             f"wanted {count}; sessions: {self.sessions}")

    def wait_sessions(self, count: int, timeout: float = 15.0) -> list[SessionLog]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [s for s in self.sessions if s.ended]
                if len(done) >= count:
                    return done
            time.sleep(0.02)
        raise AssertionError(f"{self.host}: fewer than {count} sessions ended: {self.sessions}")

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> FakeMx:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._session(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeMx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one session ----------------------------------------------------------------
    def _session(self, sock: socket.socket) -> None:
        peer = ""
        with contextlib.suppress(OSError):
            peer = sock.getpeername()[0]
        with self._lock:
            log = SessionLog(len(self.sessions) + 1, peer=peer)
            self.sessions.append(log)
        sock.settimeout(30)
        conn = _Conn(sock)
        try:
            log.ended = self._converse(conn, log)
        except _ClientGone:
            log.ended = "client-gone"
        except OSError:
            log.ended = "eof"
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _converse(self, conn: _Conn, log: SessionLog) -> str:
        script = self.current()
        if not self._reply(conn, script, "CONNECT", script.greeting.format(name=self.name)):
            return "421"
        mail_from: str | None = None
        rcpts: list[str] = []
        while True:
            line = conn.readline()
            if line is None:
                return "eof"
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            log.commands.append(text)
            script = self.current()
            if verb == "EHLO":
                lines = [self.name, "PIPELINING", "SIZE 52428800", "8BITMIME",
                         "ENHANCEDSTATUSCODES"]
                if script.starttls != "off" and not log.tls_attempted:
                    lines.append("STARTTLS")
                reply = script.replies.get("EHLO") or "\r\n".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{item}"
                    for i, item in enumerate(lines))
            elif verb == "STARTTLS" and script.starttls == "broken":
                log.tls_attempted = True
                conn.send(DEFAULT_REPLIES["STARTTLS"])
                conn.recv_some(2.0)  # the ClientHello
                conn.send_raw(b"this is not a TLS server hello\r\n")
                return "tls-broken"
            elif verb == "MAIL":
                rcpts = []
                reply = script.replies.get("MAIL", DEFAULT_REPLIES["MAIL"])
                mail_from = _path(arg) if reply.startswith("2") else None
            elif verb == "RCPT":
                address = _path(arg)
                reply = script.rcpt_replies.get(address.lower()) or script.replies.get(
                    "RCPT", DEFAULT_REPLIES["RCPT"])
                if reply.startswith("2"):
                    rcpts.append(address)
            elif verb == "DATA":
                reply = script.replies.get("DATA", DEFAULT_REPLIES["DATA"])
                if mail_from is None or not rcpts:
                    reply = "503 5.5.1 No valid recipients"
                if not self._reply(conn, script, "DATA", reply):
                    return "421"
                if not reply.startswith("354"):
                    continue
                content = self._content(conn, script)
                if content is None:
                    return "dropped"
                log.content_received = True
                script = self.current()
                qid = f"F{len(self.messages) + 1:05d}"
                final = script.replies.get(".", DEFAULT_REPLIES["."]).format(qid=qid)
                if not self._reply(conn, script, ".", final):
                    return "421"
                if final.startswith("2"):
                    with self._lock:
                        self.messages.append(AcceptedMessage(log.number, mail_from or "",
                                                             list(rcpts), content))
                mail_from, rcpts = None, []
                continue
            elif verb == "QUIT":
                conn.send(DEFAULT_REPLIES["QUIT"])
                return "quit"
            elif verb in ("RSET", "NOOP", "HELO"):
                reply = script.replies.get(verb, DEFAULT_REPLIES[verb]).format(name=self.name)
                if verb == "RSET":
                    mail_from, rcpts = None, []
            else:
                reply = "502 5.5.1 Command not implemented"
            if not self._reply(conn, script, verb, reply):
                return "421"

    def _reply(self, conn: _Conn, script: Script, verb: str, reply: str) -> bool:
        """Send ``reply`` after the scripted delay; False when it closed the session
        (a 421).  Raises _ClientGone if the client hung up while we waited."""
        delay = script.delays.get(verb, 0.0)
        if delay:
            conn.wait_unless_gone(delay)
        conn.send(reply)
        return not reply.startswith("421")

    def _content(self, conn: _Conn, script: Script) -> bytes | None:
        """The message up to the final dot, unstuffed; None when the script cut it."""
        out: list[bytes] = []
        received = 0
        while True:
            line = conn.readline()
            if line is None:
                raise _ClientGone()
            if line in (b".\r\n", b".\n"):
                return b"".join(out)
            received += len(line)
            if script.drop_after_content_bytes is not None and \
                    received >= script.drop_after_content_bytes:
                conn.abort()
                return None
            out.append(line[1:] if line.startswith(b".") else line)


class _Conn:
    """Line I/O on a socket with its own buffer (so pipelined commands are kept)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def readline(self) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def recv_some(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def send(self, reply: str) -> None:
        self.send_raw(reply.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_unless_gone(self, seconds: float) -> None:
        """Sleep ``seconds``; raise _ClientGone as soon as the peer closes."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], min(left, 0.05))
            if readable:
                try:
                    peek = self.sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    raise _ClientGone() from None
                if not peek:
                    raise _ClientGone()
                time.sleep(min(left, 0.05))  # data waiting: the client is still there

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
