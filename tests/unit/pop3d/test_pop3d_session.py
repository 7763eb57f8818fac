"""The POP3 adapter (mailyard.pop3d) over loopback, in-process: a real Maildir store,
a fake directory, no AUTH guard counters; plus its SASL bridge and UIDL rule."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from mailyard.config import Config, ListenConfig, Pop3Config
from mailyard.directory.api import Directory, DirectoryError
from mailyard.pop3d.maildrop import uidl
from mailyard.pop3d.sasl import MechanismExchange
from mailyard.pop3d.server import Pop3Server
from mailyard.proto.pop3 import SaslChallenge, SaslFailure, SaslSuccess
from mailyard.sasl.mechanisms import PlainMechanism
from mailyard.sasl.scram import ScramCredentials, ScramSha256Mechanism
from mailyard.smtpd.authguard import AuthGate
from mailyard.store.maildir import MaildirStore

USER, PASSWORD = "user@example.test", "secret"


class FakeDirectory:
    def verify_password(self, username: str, password: str) -> bool:
        return username.lower() == USER and password == PASSWORD

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        raise DirectoryError("database is locked")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def cmd(self, text: str) -> bytes:
        self.writer.write(text.encode() + b"\r\n")
        return await self.line()

    async def multi(self) -> list[bytes]:
        out = []
        while (line := await self.line()) != b".\r\n":
            assert line, "connection closed"
            out.append(line)
        return out


@asynccontextmanager
async def serving(tmp_path: Path, idle_timeout: float = 600.0,
                  ) -> AsyncIterator[tuple[Pop3Server, MaildirStore, int]]:
    config = Config(hostname="mx.example.test", data_dir=str(tmp_path),
                    listen=ListenConfig(),
                    pop3=Pop3Config(allow_plaintext_login=True, idle_timeout=idle_timeout))
    store = MaildirStore(tmp_path / "mail", "mx.example.test")
    gate = AuthGate(None, 1, 4)
    server = Pop3Server(config, cast(Directory, FakeDirectory()), store, None, gate)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    await server.serve("pop3", sock)
    try:
        yield server, store, sock.getsockname()[1]
    finally:
        await server.close(grace=2)
        gate.close()


async def connect(port: int) -> Client:
    client = Client(*await asyncio.open_connection("127.0.0.1", port))
    assert (await client.line()).startswith(b"+OK")
    return client


async def login(port: int) -> Client:
    client = await connect(port)
    assert (await client.cmd(f"USER {USER}")).startswith(b"+OK")
    assert (await client.cmd(f"PASS {PASSWORD}")).startswith(b"+OK")
    return client


def test_message_removed_by_another_program(tmp_path: Path) -> None:
    """A message gone since login: -ERR for it, the session goes on (RFC 1939 5)."""
    asyncio.run(_test_message_removed_by_another_program(tmp_path))


async def _test_message_removed_by_another_program(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, store, port):
        box = store.mailbox(USER)
        gone = box.deliver(io.BytesIO(b"Subject: a\r\n\r\n.dot\r\n"), key="q1")
        box.deliver(io.BytesIO(b"Subject: b\r\n\r\nbody"), key="q2")  # no final line end
        client = await login(port)
        os.unlink(store.maildir(USER).path / "new" / gone.ref)
        assert (await client.cmd("RETR 1")).startswith(b"-ERR")
        assert await client.cmd("RETR 2") == b"+OK 18 octets\r\n"
        assert await client.multi() == [b"Subject: b\r\n", b"\r\n", b"body\r\n"]
        assert (await client.cmd("DELE 1")).startswith(b"+OK")
        assert (await client.cmd("QUIT")).startswith(b"+OK")  # a file already gone is fine
        assert [m.size for m in box.inbox_messages()] == [18]


def test_pipelined_commands_answered_in_order(tmp_path: Path) -> None:
    """RFC 2449 6.6 PIPELINING: a batch of commands, answered one by one in order."""
    asyncio.run(_test_pipelined_commands_answered_in_order(tmp_path))


async def _test_pipelined_commands_answered_in_order(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, store, port):
        store.mailbox(USER).deliver(io.BytesIO(b"Subject: a\r\n\r\nline\r\n"), key="q1")
        client = await connect(port)
        client.writer.write(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nTOP 1 0\r\nNOOP\r\n"
                            .encode())
        answers = [await client.line() for _ in range(4)]
        assert answers[0].startswith(b"+OK") and answers[1].startswith(b"+OK maildrop")
        assert answers[2] == b"+OK 1 20\r\n" and answers[3].startswith(b"+OK")
        assert await client.multi() == [b"Subject: a\r\n", b"\r\n"]
        assert await client.line() == b"+OK\r\n"


def test_in_use_then_free_after_disconnect(tmp_path: Path) -> None:
    asyncio.run(_test_in_use_then_free_after_disconnect(tmp_path))


async def _test_in_use_then_free_after_disconnect(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, store, port):
        first = await login(port)
        second = await connect(port)
        await second.cmd(f"USER {USER}")
        assert (await second.cmd(f"PASS {PASSWORD}")).startswith(b"-ERR [IN-USE]")
        first.writer.close()
        answer = b""
        for _ in range(100):
            await second.cmd(f"USER {USER}")
            answer = await second.cmd(f"PASS {PASSWORD}")
            if answer.startswith(b"+OK"):
                break
            await asyncio.sleep(0.02)
        assert answer.startswith(b"+OK")


def test_scram_lookup_failure_is_temporary(tmp_path: Path) -> None:
    """A directory error during SCRAM: [SYS/TEMP], not a counted bad password."""
    asyncio.run(_test_scram_lookup_failure_is_temporary(tmp_path))


async def _test_scram_lookup_failure_is_temporary(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, store, port):
        client = await connect(port)
        first = base64.b64encode(b"n,,n=user@example.test,r=abc").decode()
        assert (await client.cmd(f"AUTH SCRAM-SHA-256 {first}")).startswith(b"-ERR [SYS/TEMP]")


def test_exchange_bridge_plain_and_scram_failures() -> None:
    plain = MechanismExchange(PlainMechanism(), lambda user: None)
    assert plain.step(None) == SaslChallenge(b"")
    assert plain.step(b"\0u@x\0pw") == SaslSuccess("u@x", password="pw")
    scram = MechanismExchange(ScramSha256Mechanism(), lambda user: None)
    assert isinstance(scram.step(b"n,,n=u@x,r=abc"), SaslChallenge)  # decoy for unknown
    assert isinstance(scram.step(b"c=biws,r=wrong,p=AAAA"), SaslFailure)
    assert scram.rejected_user == "u@x" and not scram.lookup_failed


def test_uidl_is_the_key_or_a_stable_digest() -> None:
    """RFC 1939 7: 1 to 70 characters from 0x21 to 0x7E."""
    assert uidl("1700000000.M1P2Q3.host") == "1700000000.M1P2Q3.host"
    long = "x" * 71
    assert uidl(long) == uidl(long) != long and len(uidl(long)) <= 70
    assert uidl("with space") != "with space"


def test_client_that_does_not_read_stops_the_reading(tmp_path: Path) -> None:
    """A client that pipelines commands but never reads the replies: once the
    replies back up, the session stops reading its input (the replies would pile up
    in memory without bound otherwise), and goes on when the client reads."""
    asyncio.run(_test_client_that_does_not_read_stops_the_reading(tmp_path))


async def _test_client_that_does_not_read_stops_the_reading(tmp_path: Path) -> None:
    async with serving(tmp_path) as (server, store, port):
        client = await connect(port)
        count = 100_000  # 600 kB of commands, some 10 MB of replies
        client.writer.write(b"CAPA\r\n" * count + b"QUIT\r\n")
        (session,) = server.sessions
        for _ in range(1000):
            if "writing" in session.reading_paused:
                break
            await asyncio.sleep(0.01)
        assert "writing" in session.reading_paused
        assert session.transport.get_write_buffer_size() < 1 << 20
        replies = await asyncio.wait_for(client.reader.read(), 60)
        assert replies.count(b"+OK Capability list follows\r\n") == count
        assert replies.endswith(b"+OK Bye\r\n")


def test_idle_timeout_ends_a_session_whose_client_does_not_read(tmp_path: Path) -> None:
    """The idle timeout of a client that stopped reading its replies aborts the
    connection (a close would wait for ever on replies nobody reads): its place in
    the connection caps comes back."""
    asyncio.run(_test_idle_timeout_ends_a_session_whose_client_does_not_read(tmp_path))


async def _test_idle_timeout_ends_a_session_whose_client_does_not_read(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout=0.5) as (server, store, port):
        client = await connect(port)
        client.writer.write(b"CAPA\r\n" * 100_000)
        for _ in range(2000):
            if not server.sessions:
                break
            await asyncio.sleep(0.01)
        assert not server.sessions
        client.writer.close()
