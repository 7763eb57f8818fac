"""A small scriptable SMTP server for client tests, on 127.0.0.1 in the test's event loop.

It offers what a test asks for (PIPELINING, CHUNKING, STARTTLS, SIZE, ...), records every
command line and each message's content exactly as it came over the wire (before and
after dot-unstuffing), and can misbehave on cue: a chosen reply for a command or one
recipient, a hang-up at a chosen point (including in the middle of the content), or a
STARTTLS that answers 220 and then breaks the handshake.  Postfix's smtp-sink covers the
ordinary cases; this covers what smtp-sink cannot do (BDAT, TLS, per-recipient replies,
raw bytes with CRLF intact).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

HANGUP = b"<hangup>"


@dataclass
class ReceivedMessage:
    mail: str
    rcpts: list[str]
    wire: bytes  # the content as sent, dot-stuffed (DATA) or the concatenated BDAT chunks
    content: bytes  # after removing dot-stuffing
    peer: str = ""  # the client's address, as this server saw it
    helo: str = ""  # the name the client gave in EHLO/HELO


@dataclass
class FakeSmtpServer:
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME")
    # Replies by command verb ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", ".", "BDAT",
    # "RSET"); HANGUP closes the connection instead.
    replies: dict[str, bytes] = field(default_factory=dict)
    # Replies for one recipient address (RCPT TO:<address>).
    rcpt_replies: dict[str, bytes] = field(default_factory=dict)
    starttls: str = "none"  # "none", "ok" (needs ssl_context) or "broken"
    ssl_context: ssl.SSLContext | None = None
    hangup_after_content_bytes: int | None = None  # drop the connection mid-content
    max_rcpts: int | None = None  # 452 4.5.3 beyond this many per transaction
    delays: dict[str, float] = field(default_factory=dict)  # verb -> seconds before replying
    drip: float = 0.0  # seconds between the bytes of each reply (a tar pit)
    # Client address -> seconds before the reply to the end of the content, for
    # clients from that address only (a destination slow for one sender).
    peer_delays: dict[str, float] = field(default_factory=dict)
    host: str = "127.0.0.1"  # another loopback address stands for another MX host
    bind_port: int = 0  # 0: any free port (several hosts on one port for MX delivery)

    def __post_init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.commands: list[str] = []
        self.messages: list[ReceivedMessage] = []
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> FakeSmtpServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.bind_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # --- one connection -------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await _Conversation(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, _HangUp):
            pass
        finally:
            writer.close()


class _HangUp(Exception):
    pass


class _Conversation:
    def __init__(self, server: FakeSmtpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.tls = False
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.helo = ""
        self.mail = ""
        self.rcpts: list[str] = []
        self.chunks: list[bytes] = []

    async def reply(self, verb: str, default: bytes) -> None:
        data = self.server.replies.get(verb, default)
        if verb in self.server.delays:
            await asyncio.sleep(self.server.delays[verb])
        if verb == "." and self.peer in self.server.peer_delays:
            await asyncio.sleep(self.server.peer_delays[self.peer])
        if data == HANGUP:
            raise _HangUp()
        if self.server.drip:
            for i in range(len(data)):
                self.writer.write(data[i:i + 1])
                await self.writer.drain()
                await asyncio.sleep(self.server.drip)
            return
        self.writer.write(data)
        await self.writer.drain()

    def ehlo_reply(self) -> bytes:
        exts = [e for e in self.server.extensions if e != "STARTTLS"]
        if self.server.starttls != "none" and not self.tls:
            exts.append("STARTTLS")
        lines = ["fake.test", *exts]
        return "".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n"
                       for i, line in enumerate(lines)).encode()

    async def run(self) -> None:
        await self.reply("GREETING", b"220 fake.test ESMTP\r\n")
        while True:
            line = await self.reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.server.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            handler = getattr(self, f"do_{verb.lower()}", None)
            if handler is None:
                await self.reply(verb, b"502 5.5.1 not implemented\r\n")
            elif await handler(text):
                return

    async def do_ehlo(self, text: str) -> bool:
        self.helo = text.partition(" ")[2].strip()
        await self.reply("EHLO", self.ehlo_reply())
        return False

    async def do_helo(self, text: str) -> bool:
        self.helo = text.partition(" ")[2].strip()
        await self.reply("HELO", b"250 fake.test\r\n")
        return False

    async def do_starttls(self, text: str) -> bool:
        await self.reply("STARTTLS", b"220 2.0.0 go ahead\r\n")
        if self.server.starttls == "broken":  # answer the ClientHello with garbage
            await self.reader.read(1)
            self.writer.write(b"\x15\x03\x03\x00\x02\x02\x28not a TLS server hello\r\n")
            await self.writer.drain()
            return True
        assert self.server.ssl_context is not None
        await self.writer.start_tls(self.server.ssl_context)
        self.tls = True
        return False

    async def do_mail(self, text: str) -> bool:
        self.mail, self.rcpts, self.chunks = text, [], []
        await self.reply("MAIL", b"250 2.1.0 ok\r\n")
        return False

    async def do_rcpt(self, text: str) -> bool:
        address = text.partition("<")[2].partition(">")[0]
        special = self.server.rcpt_replies.get(address)
        if special is not None:
            if special == HANGUP:
                raise _HangUp()
            self.writer.write(special)
            return False
        if self.server.max_rcpts is not None and len(self.rcpts) >= self.server.max_rcpts:
            await self.reply("RCPT", b"452 4.5.3 too many recipients\r\n")
            return False
        self.rcpts.append(address)
        await self.reply("RCPT", b"250 2.1.5 ok\r\n")
        return False

    async def do_data(self, text: str) -> bool:
        if not self.rcpts:
            await self.reply("DATA", b"554 5.5.1 no valid recipients\r\n")
            return False
        await self.reply("DATA", b"354 go ahead\r\n")
        wire = bytearray()
        limit = self.server.hangup_after_content_bytes
        while not (wire == b".\r\n" or wire.endswith(b"\r\n.\r\n")):
            line = await self.reader.readline()
            if not line:
                return True
            wire += line
            if limit is not None and len(wire) >= limit:
                raise _HangUp()
        body = bytes(wire[:-3])
        lines = body.split(b"\r\n")
        content = b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)
        self.server.messages.append(ReceivedMessage(self.mail, self.rcpts, body, content,
                                                    self.peer, self.helo))
        await self.reply(".", b"250 2.0.0 queued\r\n")
        return False

    async def do_bdat(self, text: str) -> bool:
        parts = text.split()
        size, last = int(parts[1]), len(parts) > 2 and parts[2].upper() == "LAST"
        chunk = await self.reader.readexactly(size)
        self.chunks.append(chunk)
        if last:
            wire = b"".join(self.chunks)
            self.server.messages.append(ReceivedMessage(self.mail, self.rcpts, wire, wire,
                                                        self.peer, self.helo))
            await self.reply(".", b"250 2.0.0 queued\r\n")
        else:
            await self.reply("BDAT", f"250 2.0.0 {size} octets\r\n".encode())
        return False

    async def do_rset(self, text: str) -> bool:
        self.mail, self.rcpts, self.chunks = "", [], []
        await self.reply("RSET", b"250 2.0.0 ok\r\n")
        return False

    async def do_noop(self, text: str) -> bool:
        await self.reply("NOOP", b"250 2.0.0 ok\r\n")
        return False

    async def do_auth(self, text: str) -> bool:
        """Any credentials are good (the command line is in ``commands``)."""
        await self.reply("AUTH", b"235 2.7.0 Authentication successful\r\n")
        return False

    async def do_quit(self, text: str) -> bool:
        await self.reply("QUIT", b"221 2.0.0 bye\r\n")
        return True
