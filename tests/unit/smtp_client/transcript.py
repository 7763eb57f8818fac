"""Drives the sans-IO SMTP client against a scripted server, the way an adapter would,
with the server's bytes cut whole, byte by byte or at random points."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from mailyard.proto.smtp.client import Idle, NeedContent, NeedData, Send, SmtpClient, StartTls
from tests.support.chunking import Chunker, bytewise, random_chunker, whole

CHUNKERS: dict[str, Chunker] = {"whole": whole, "bytewise": bytewise,
                                "random1": random_chunker(1), "random2": random_chunker(2)}


class Script:
    """The server side: its writes in order, fed only when the client asks for data."""

    def __init__(self, chunker: Chunker = whole) -> None:
        self.chunker = chunker
        self.pieces: deque[bytes] = deque()
        self.eof = False

    def reply(self, *writes: bytes) -> Script:
        for w in writes:
            self.pieces.extend(p for p in self.chunker(w) if p)
        return self

    def hang_up(self) -> Script:
        self.eof = True
        return self


class Transcript:
    """Client bytes sent and result events seen."""

    def __init__(self, client: SmtpClient, script: Script,
                 content: bytes = b"", content_chunker: Chunker = whole) -> None:
        self.client = client
        self.script = script
        self.sent = bytearray()
        self.events: list[object] = []
        self.content = content
        self.content_chunker = content_chunker
        self.tls_verified = False  # what the adapter reports of the certificate check

    def pump(self) -> list[object]:
        """Run until the client is idle; returns the result events of this run."""
        start = len(self.events)
        while True:
            ev = self.client.next_event()
            if isinstance(ev, Send):
                self.sent += ev.data
            elif isinstance(ev, NeedData):
                if self.script.pieces:
                    self.client.receive_data(self.script.pieces.popleft())
                elif self.script.eof:
                    self.client.receive_data(b"")
                else:
                    raise AssertionError(f"client waits for a reply the script lacks; "
                                         f"sent so far: {bytes(self.sent)!r}")
            elif isinstance(ev, NeedContent):
                for piece in self.content_chunker(self.content):
                    self.client.send_content(piece)
                self.client.end_content()
            elif isinstance(ev, StartTls):
                self.client.tls_established(verified=self.tls_verified)
            elif isinstance(ev, Idle):
                return self.events[start:]
            else:
                self.events.append(ev)

    def lines(self) -> list[bytes]:
        return bytes(self.sent).split(b"\r\n")

    def take(self) -> bytes:
        out = bytes(self.sent)
        self.sent.clear()
        return out


def commands(data: bytes) -> list[str]:
    return [line.decode() for line in data.split(b"\r\n") if line]


def join(lines: Iterable[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()
