"""Drives a Pop3Connection with canned input and a synchronous fake adapter (a
maildrop in memory, a fake SASL exchange), recording output and events.  Input is fed
whole, byte by byte or in random pieces (h11-style); message content is fed to the
core in pieces too, so every transcript test runs all ways and must give one output."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mailyard.proto.pop3 import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthFailed,
    AuthStart,
    Event,
    Login,
    MessageInfo,
    Pop3Connection,
    Pop3Settings,
    Response,
    Retrieve,
    SaslChallenge,
    SaslFailure,
    SaslStep,
    SaslSuccess,
    Update,
)
from mailyard.proto.pop3.responses import RESP_AUTH_FAILED

SPLITS = ("whole", "bytes", "random")
PASSWORD = "secret"


def crlf_size(stored: bytes) -> int:
    """What the store reports: octets with CRLF line ends."""
    return len(stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


class FakePlain:
    """PLAIN-like (RFC 4616 shape): one message "\\0user\\0password"; the password is
    left to the Login decision."""

    mechanism = "PLAIN"

    def step(self, client_data: bytes | None) -> SaslStep:
        if client_data is None:
            return SaslChallenge(b"")
        parts = client_data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            return SaslFailure("malformed")
        return SaslSuccess(parts[1].decode(), password=parts[2].decode())


class FakeScram:
    """Two round trips, verifies by itself and has final data (like SCRAM)."""

    mechanism = "X-FAKE-SCRAM"

    def __init__(self) -> None:
        self.user = ""

    def step(self, client_data: bytes | None) -> SaslStep:
        if client_data is None:
            return SaslChallenge(b"")
        if not self.user:
            self.user = client_data.decode("utf-8", "replace")
            return SaslChallenge(b"r=nonce")
        if client_data == b"proof":
            return SaslSuccess(self.user, data=b"v=verifier")
        return SaslFailure("bad proof")


EXCHANGES = {"PLAIN": FakePlain, "X-FAKE-SCRAM": FakeScram}
SETTINGS = Pop3Settings(hostname="pop.test", stls=True,
                        sasl_mechanisms=("PLAIN", "X-FAKE-SCRAM"))


@dataclass
class FakeAdapter:
    stored: dict[str, bytes]  # uid -> message bytes as on disk (order = numbering)
    seed: int = 0
    update_fails: bool = False
    locked: bool = False
    deleted: list[str] | None = None  # set by an accepted Update
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def snapshot(self) -> list[MessageInfo]:
        return [MessageInfo(uid, crlf_size(data)) for uid, data in self.stored.items()]

    def decide(self, conn: Pop3Connection, event: Event) -> None:
        if isinstance(event, AuthStart):
            conn.accept_auth(EXCHANGES[event.mechanism]())
        elif isinstance(event, Login):
            if event.password is not None and event.password != PASSWORD:
                conn.reject(RESP_AUTH_FAILED)
            elif self.locked:
                conn.reject(Response(False, "Do you have another POP session running?",
                                     "IN-USE"))
            else:
                conn.accept_login(self.snapshot())
        elif isinstance(event, AuthFailed):
            conn.accept()
        elif isinstance(event, Retrieve):
            conn.accept()
            data, pos = self.stored[event.message.uid], 0
            while pos < len(data) and not conn.content_done:
                n = self.rng.randint(1, 7)
                conn.send_content(data[pos : pos + n])
                pos += n
            conn.end_content()
        elif isinstance(event, Update):
            if self.update_fails:
                conn.reject(Response(False, "Some deleted messages not removed", "SYS/TEMP"))
            else:
                self.deleted = [m.uid for m in event.deleted]
                conn.accept()


@dataclass
class Run:
    conn: Pop3Connection
    adapter: FakeAdapter
    output: bytes = b""
    events: list[Event] = field(default_factory=list)

    @property
    def lines(self) -> list[bytes]:
        return self.output.split(b"\r\n")[:-1]

    @property
    def status_lines(self) -> list[bytes]:
        return [ln for ln in self.lines if ln.startswith((b"+OK", b"-ERR"))]

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
        if event.needs_decision:
            run.adapter.decide(conn, event)
    run.output += conn.data_to_send()


def run_session(data: bytes, split: str = "whole", *, settings: Pop3Settings = SETTINGS,
                stored: dict[str, bytes] | None = None, tls: bool = True, eof: bool = True,
                seed: int = 0, **adapter_kw: object) -> Run:
    conn = Pop3Connection(settings, tls_active=tls)
    adapter = FakeAdapter(dict(stored or {}), seed=seed, **adapter_kw)  # type: ignore[arg-type]
    run = Run(conn, adapter)
    conn.greet()
    pump(run)
    for piece in pieces(data, split, seed):
        conn.receive_data(piece)
        pump(run)
    if eof:
        conn.receive_data(b"")
        pump(run)
    return run


def run_all_ways(data: bytes, **kw: object) -> Run:
    """Whole, byte by byte and in random pieces (and content in random pieces): the
    same output, events and deletions every way.  Returns the 'whole' run."""
    runs = [run_session(data, split, **kw) for split in SPLITS]  # type: ignore[arg-type]
    runs += [run_session(data, "random", seed=s, **kw) for s in (1, 2, 3)]  # type: ignore[arg-type]
    for other in runs[1:]:
        assert other.output == runs[0].output
        assert [type(e) for e in other.events] == [type(e) for e in runs[0].events]
        assert other.adapter.deleted == runs[0].adapter.deleted
    return runs[0]
