"""Drives an IMAP ServerConnection with canned input and a synchronous fake store,
the way the asyncio adapter will, and records output and events.  Input can be fed
whole, byte by byte or in random pieces (h11-style): :func:`run_all_ways` runs all
three and asserts they agree."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AppendComplete,
    AppendData,
    AppendRequested,
    AuthenticateStep,
    CommandRequested,
    Event,
    FetchRequested,
    IdleRequested,
    LoginRequested,
    SaslChallenge,
    SaslFailure,
    SaslOutcome,
    SaslSuccess,
    SearchRequested,
    SelectRequested,
    StartTlsRequested,
)
from mailyard.proto.imap.server import ImapSettings, ServerConnection

SPLITS = ("whole", "bytes", "random")
SETTINGS = ImapSettings(hostname="imap.test", plaintext_auth=True)
TAGGED = re.compile(rb"^([^ *+]+) (OK|NO|BAD) ", re.M)


class FakePlain:
    """A SaslExchange (events.SaslExchange) for PLAIN: alice/secret only."""

    def step(self, response: bytes | None) -> SaslOutcome:
        if response is None:
            return SaslChallenge(b"")
        parts = response.split(b"\x00")
        if len(parts) == 3 and parts[1:] == [b"alice", b"secret"]:
            return SaslSuccess("alice")
        return SaslFailure()


class FakeStore:
    """Answers decisions like a tiny store with INBOX (172 messages) and Sent."""

    def __init__(self) -> None:
        self.sasl: FakePlain | None = None
        self.appended: list[bytes] = []
        self._current: list[bytes] | None = None

    def __call__(self, conn: ServerConnection, event: Event) -> None:
        if isinstance(event, AppendData):
            assert self._current is not None
            self._current.append(event.data)
        if not event.needs_decision:
            return
        if isinstance(event, LoginRequested):
            ok = (event.username, event.password) == ("alice", "secret")
            conn.complete("OK" if ok else "NO", "" if ok else "Invalid credentials")
        elif isinstance(event, AuthenticateStep):
            if event.first:
                self.sasl = FakePlain()
            assert self.sasl is not None
            conn.sasl_step(self.sasl.step(event.response))
        elif isinstance(event, StartTlsRequested):
            conn.accept()
        elif isinstance(event, SelectRequested):
            if event.command.mailbox.name not in ("INBOX", "Sent", "Ölkanne"):
                conn.complete("NO", "No such mailbox", "NONEXISTENT")
                return
            conn.respond(resp.exists(172),
                         resp.flags(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                     "\\Draft"]),
                         resp.untagged_status("OK", "UIDs valid", "UIDVALIDITY 3857529045"),
                         resp.untagged_status("OK", "Predicted next UID", "UIDNEXT 4392"))
            conn.complete("OK", "SELECT completed")
        elif isinstance(event, AppendRequested):
            if event.command.mailbox.name == "missing":
                conn.complete("NO", "No such mailbox", "TRYCREATE")
            else:
                self._current = []
                conn.accept()
        elif isinstance(event, AppendComplete):
            assert self._current is not None
            self.appended.append(b"".join(self._current))
            self._current = None
            conn.complete("OK", "APPEND completed", "APPENDUID 38505 3955")
        elif isinstance(event, IdleRequested):
            conn.accept()
            conn.respond(resp.exists(173))
        elif isinstance(event, FetchRequested):
            conn.respond(resp.fetch(12, [("FLAGS", [resp.Atom("\\Seen")])]))
            conn.complete("OK", "FETCH completed")
        elif isinstance(event, SearchRequested):
            conn.respond(resp.search([2, 84, 882]))
            conn.complete("OK", "SEARCH completed")
        elif isinstance(event, CommandRequested):
            conn.complete("OK")
        else:
            conn.complete("OK")


@dataclass
class Run:
    conn: ServerConnection
    store: FakeStore
    output: bytes = b""
    events: list[Event] = field(default_factory=list)

    @property
    def lines(self) -> list[bytes]:
        return self.output.split(b"\r\n")

    def tagged(self) -> list[tuple[bytes, bytes]]:
        """(tag, status) of every tagged completion, in order."""
        return [(m.group(1), m.group(2)) for m in TAGGED.finditer(self.output)]

    def status_of(self, tag: bytes) -> bytes:
        found = [s for t, s in self.tagged() if t == tag]
        assert len(found) == 1, (tag, self.output)
        return found[0]

    def line_of(self, tag: bytes) -> bytes:
        found = [ln for ln in self.lines if ln.startswith(tag + b" ")]
        assert len(found) == 1, (tag, self.output)
        return found[0]

    def of_type(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def pieces(data: bytes, split: str, seed: int = 0) -> list[bytes]:
    if split == "whole":
        return [data]
    if split == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, 40)
        out.append(data[pos : pos + n])
        pos += n
    return out


def pump(run: Run) -> None:
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
        assert isinstance(event, Event)
        run.events.append(event)
        run.store(conn, event)
    run.output += conn.data_to_send()


def run_session(data: bytes | list[bytes], split: str = "whole",
                settings: ImapSettings = SETTINGS, eof: bool = True, seed: int = 0) -> Run:
    """``data`` may be a list of flights: each is sent only after the server answered
    the previous one (as a client waits after STARTTLS)."""
    conn = ServerConnection(settings)
    run = Run(conn, FakeStore())
    conn.greet()
    pump(run)
    for flight in [data] if isinstance(data, bytes) else data:
        for piece in pieces(flight, split, seed):
            conn.receive_data(piece)
            pump(run)
    if eof:
        conn.receive_data(b"")
        pump(run)
    return run


def run_all_ways(data: bytes | list[bytes], **kw: object) -> Run:
    """Whole, byte by byte and random pieces must give the same output, events and
    appended messages.  Returns the 'whole' run."""
    runs = [run_session(data, split, **kw) for split in SPLITS]  # type: ignore[arg-type]
    for other in runs[1:]:
        assert other.output == runs[0].output
        assert other.store.appended == runs[0].store.appended
        assert [type(e) for e in other.events if not isinstance(e, AppendData)] == \
            [type(e) for e in runs[0].events if not isinstance(e, AppendData)]
    return runs[0]
