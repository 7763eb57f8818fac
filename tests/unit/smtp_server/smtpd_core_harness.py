"""Drives a ServerConnection with canned input and a synchronous policy, the way the
asyncio adapter does, and records replies and events.  Input can be fed whole, byte by
byte or in random pieces (h11-style), so every transcript test runs all three ways."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailyard.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    DataChunk,
    DataStart,
    Event,
    MessageComplete,
    ScramLookup,
)
from mailyard.proto.smtp.replies import REPLY_QUEUED, Reply
from mailyard.proto.smtp.server import ServerConnection, ServerSettings
from tests.support.chunking import bytewise, random_pieces, whole

Policy = Callable[[ServerConnection, Event], None]
SPLITS = ("whole", "bytes", "random")


def accept_all(conn: ServerConnection, event: Event) -> None:
    if isinstance(event, MessageComplete):
        conn.accept(REPLY_QUEUED.with_text("Queued as TESTQID"))
    elif isinstance(event, ScramLookup):
        conn.accept_scram(None)
    else:
        conn.accept()


@dataclass
class Run:
    conn: ServerConnection
    output: bytes = b""
    events: list[Event] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    _current: list[bytes] | None = None

    @property
    def replies(self) -> list[bytes]:
        """Every reply sent, as the exact bytes of :meth:`Reply.encode` (all its lines),
        so replies that share a code and enhanced code are told apart."""
        out, current = [], b""
        for line in self.output.splitlines(keepends=True):
            current += line
            if len(line) < 4 or line[3:4] != b"-":  # "250 text" ends a reply; "250-" does not
                out.append(current)
                current = b""
        if current:
            out.append(current)
        return out

    @property
    def last(self) -> bytes:
        return self.replies[-1]

    @property
    def codes(self) -> list[str]:
        """The reply code (plus enhanced code) of every final reply line, in order."""
        out = []
        for line in self.output.decode("utf-8", "replace").split("\r\n"):
            m = re.match(r"(\d{3}) (\d\.\d{1,3}\.\d{1,3})?", line)
            if m:
                out.append(f"{m.group(1)} {m.group(2)}" if m.group(2) else m.group(1))
        return out

    def has(self, reply: Reply) -> bool:
        """``reply`` itself (code, enhanced code and text) was sent."""
        return reply.encode() in self.replies

    def of_type(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def pieces(data: bytes, split: str, seed: int = 0) -> list[bytes]:
    if split == "whole":
        return whole(data)
    if split == "bytes":
        return bytewise(data)
    return random_pieces(data, random.Random(seed), 40)


def pump(run: Run, policy: Policy) -> None:
    conn = run.conn
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is CLOSED:
            break
        if event is PAUSED:
            if conn.tls_pending:
                run.output += conn.data_to_send()
                conn.tls_established()
                continue
            break
        run.events.append(event)
        if isinstance(event, DataStart):
            run._current = []
        elif isinstance(event, DataChunk):
            assert run._current is not None, "content outside a transaction"
            run._current.append(event.data)
        elif isinstance(event, MessageComplete):
            assert run._current is not None
            run.messages.append(b"".join(run._current))
        if event.needs_decision:
            policy(conn, event)
    run.output += conn.data_to_send()


def run_session(data: bytes, split: str = "whole", policy: Policy = accept_all,
                settings: ServerSettings | None = None, eof: bool = True,
                seed: int = 0) -> Run:
    conn = ServerConnection(settings or ServerSettings(hostname="mx.test"))
    run = Run(conn)
    conn.greet()
    pump(run, policy)
    for piece in pieces(data, split, seed):
        conn.receive_data(piece)
        pump(run, policy)
    if eof:
        conn.receive_data(b"")
        pump(run, policy)
    return run


def run_all_ways(data: bytes, **kw: object) -> Run:
    """Run the transcript whole, byte by byte and in random pieces; all three must give
    the same replies, events and stored messages.  Returns the 'whole' run."""
    runs = [run_session(data, split, **kw) for split in SPLITS]  # type: ignore[arg-type]
    for other in runs[1:]:
        assert other.output == runs[0].output
        assert other.messages == runs[0].messages
        assert [type(e) for e in other.events if not isinstance(e, DataChunk)] == \
            [type(e) for e in runs[0].events if not isinstance(e, DataChunk)]
    return runs[0]
