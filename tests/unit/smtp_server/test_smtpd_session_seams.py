"""An SmtpSession built from its declared context alone (no SmtpServer, no socket):
a fake host, a fake policy, ingest over a queue in memory, a fake transport."""

from __future__ import annotations

import asyncio
from typing import Any

from mailyard.directory.api import ScramCredentials
from mailyard.ingest.pipeline import QueueIngest
from mailyard.obs import Metrics
from mailyard.proto.smtp.replies import REPLY_UNKNOWN_USER, Reply
from mailyard.proto.smtp.session import ServerSettings
from mailyard.smtpd.context import InboundServices, ListenerSpec, SessionTimers
from mailyard.smtpd.session import SmtpSession
from tests.support.memory_queue import MemoryQueue

TIMERS = SessionTimers(command=30, data=60, min_rate=0, rate_grace=10, tls_handshake=5,
                       max_session=600)


class Host:
    shutting_down = False

    def __init__(self) -> None:
        self.admitted: list[str] = []
        self.released: list[str] = []
        self.qids: list[str] = []

    def admit(self, session: object, ip: str) -> Reply | None:
        self.admitted.append(ip)
        return None

    def release(self, session: object, ip: str) -> None:
        self.released.append(ip)

    def queued(self, qid: str) -> None:
        self.qids.append(qid)


class Policy:
    kind = "smtp"
    submission = False

    def check_mail(self, session: Any, sender: str) -> Reply | None:
        return None

    def check_rcpt(self, session: Any, address: str) -> Reply | None:
        return None if address.startswith("bob@") else REPLY_UNKNOWN_USER

    def check_quota(self, address: str, size: int | None) -> Reply | None:
        return None

    def postmaster_address(self, address: str) -> str:
        return address

    def check_content(self, session: Any, recipients: Any, header: Any) -> Reply | None:
        return None

    def vrfy(self, argument: str) -> Reply | None:
        return None

    async def verify_password(self, ip: str, username: str, password: str,
                              still_wanted: Any) -> Reply | None:
        return None

    async def scram_lookup(self, ip: str, username: str) -> Reply | ScramCredentials | None:
        return None

    async def auth_finished(self, ip: str, username: str, success: bool) -> None:
        return None


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 4321) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_session_runs_on_its_declared_context_alone() -> None:
    async def run() -> tuple[Host, Transport, MemoryQueue]:
        host, transport, queue = Host(), Transport(), MemoryQueue()
        services = InboundServices(QueueIngest(queue, "mx.test"), Metrics(), "mx.test")
        listener = ListenerSpec("smtp", ServerSettings(hostname="mx.test"), Policy(), None)
        session = SmtpSession(listener, services, host, TIMERS)
        session.connection_made(transport)
        session.data_received(b"EHLO client.test\r\nMAIL FROM:<a@x.test>\r\n"
                              b"RCPT TO:<nobody@mx.test>\r\nRCPT TO:<bob@mx.test>\r\n"
                              b"DATA\r\n")
        session.data_received(b"Subject: s\r\n\r\nhello\r\n.\r\n")
        for _ in range(10):  # the commit runs as a task
            await asyncio.sleep(0)
        session.data_received(b"QUIT\r\n")
        session.connection_lost(None)
        return host, transport, queue

    host, transport, queue = asyncio.run(run())
    assert b"550 5.1.1" in transport.out and b"354 " in transport.out
    assert len(host.qids) == 1 and f"250 2.0.0 Queued as {host.qids[0]}".encode() in transport.out
    content = queue.content(host.qids[0])
    assert content.startswith(b"Received: from client.test ([192.0.2.7])")
    assert content.endswith(b"Subject: s\r\n\r\nhello\r\n")
    assert host.admitted == host.released == ["192.0.2.7"] and transport.closed
