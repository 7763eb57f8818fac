"""An SmtpSession built from its declared context alone (no SmtpServer, no socket):
a fake host, a fake policy, ingest over a queue in memory, a fake transport.  Also:
the session waiting for the policy's SPF check at MAIL FROM (RFC 7208) while the
client pipelines."""

from __future__ import annotations

import asyncio
from typing import Any

from mailyard.config import SpfConfig
from mailyard.directory.api import ScramCredentials
from mailyard.dns import StaticResolver
from mailyard.ingest.api import Submission
from mailyard.ingest.pipeline import QueueIngest
from mailyard.metrics import SPF_RESULTS
from mailyard.obs import Metrics
from mailyard.proto.smtp.replies import REPLY_UNKNOWN_USER, Reply
from mailyard.proto.smtp.session import ServerSettings
from mailyard.smtpd.context import InboundServices, ListenerSpec, SessionTimers
from mailyard.smtpd.session import SmtpSession
from mailyard.smtpd.spf import SenderVerdict, SpfCheck, SpfVerdict
from mailyard.spf import SpfStatus
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

    def wants_sender_check(self, ip: str) -> bool:
        return False

    async def check_sender(self, ip: str, helo: str, sender: str) -> SpfVerdict:
        return SpfVerdict(None)

    def check_rcpt(self, session: Any, address: str) -> Reply | None:
        return None if address.startswith("bob@") else REPLY_UNKNOWN_USER

    def check_quota(self, address: str, size: int | None) -> Reply | None:
        return None

    def sending_allowance(self, session: Any) -> None:
        return None

    async def message_sent(self, allowance: Any, recipients: int) -> None:
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


# --- SPF at MAIL FROM --------------------------------------------------------------

class SpfPolicy(Policy):
    def __init__(self, check: SpfCheck) -> None:
        self.spf = check

    def wants_sender_check(self, ip: str) -> bool:
        return self.spf.applies(ip)

    def check_sender(self, ip: str, helo: str, sender: str) -> SenderVerdict:
        return self.spf.known(ip, helo, sender) or self.spf.check(ip, helo, sender)


class RecordingIngest(QueueIngest):
    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__(queue, "mx.test")
        self.submissions: list[Submission] = []

    def open(self, submission: Submission) -> Any:
        self.submissions.append(submission)
        return super().open(submission)


def session_transcript(lines: bytes, resolver: StaticResolver
                       ) -> tuple[Transport, RecordingIngest, Metrics]:
    """One pipelined burst from 192.0.2.7, answered while SPF lookups are pending."""
    async def run() -> tuple[Transport, RecordingIngest, Metrics]:
        transport, queue, metrics = Transport(), MemoryQueue(), Metrics()
        ingest = RecordingIngest(queue)
        policy = SpfPolicy(SpfCheck(SpfConfig(), resolver, "mx.test"))
        listener = ListenerSpec("smtp", ServerSettings(hostname="mx.test"), policy, None)
        session = SmtpSession(listener, InboundServices(ingest, metrics, "mx.test"), Host(),
                              TIMERS)
        session.connection_made(transport)
        session.data_received(lines)
        for _ in range(50):
            await asyncio.sleep(0)
        session.connection_lost(None)
        return transport, ingest, metrics
    return asyncio.run(run())


ZONE = {"pass.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "badhelo.test": {"TXT": ["v=spf1 -all"]},
        "fail.test": {"TXT": ["v=spf1 -all exp=why.fail.test"]},
        "why.fail.test": {"TXT": ["%{i} is not ours"]}}


def test_fail_refuses_mail_and_the_pipelined_rest() -> None:
    transport, ingest, metrics = session_transcript(
        b"EHLO client.test\r\nMAIL FROM:<a@fail.test>\r\nRCPT TO:<bob@mx.test>\r\n"
        b"DATA\r\nQUIT\r\n", StaticResolver(ZONE))
    out = transport.out.decode()
    assert "550 5.7.23 SPF validation failed: 192.0.2.7 is not ours\r\n" in out
    assert "503 " in out and "354" not in out  # RCPT and DATA without a sender
    assert not ingest.submissions
    assert metrics.get(SPF_RESULTS, result="fail") == 1


def test_pass_goes_on_to_ingest_with_the_result() -> None:
    transport, ingest, _ = session_transcript(
        b"EHLO client.test\r\nMAIL FROM:<a@pass.test>\r\nRCPT TO:<bob@mx.test>\r\n"
        b"DATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n", StaticResolver(ZONE))
    assert b"354 " in transport.out and b"250 2.0.0 Queued as" in transport.out
    [submission] = ingest.submissions
    assert submission.spf is not None and submission.spf.status is SpfStatus.PASS
    assert submission.spf.mechanism == "ip4:192.0.2.0/24"
    assert submission.spf_helo is not None and submission.spf_helo.status is SpfStatus.NONE


def test_null_sender_checks_the_helo_name() -> None:
    zone = {"client.test": {"TXT": ["v=spf1 -all"]}}
    transport, _, _ = session_transcript(
        b"EHLO client.test\r\nMAIL FROM:<>\r\nQUIT\r\n", StaticResolver(zone))
    assert b"550 5.7.23" in transport.out


def test_helo_fail_refuses_unless_mail_from_passed() -> None:
    """RFC 7208 2.3: the HELO identity is checked too."""
    transport, _, _ = session_transcript(
        b"EHLO badhelo.test\r\nMAIL FROM:<a@nospf.test>\r\nQUIT\r\n", StaticResolver(ZONE))
    assert b"550 5.7.23" in transport.out
    transport, _, _ = session_transcript(
        b"EHLO badhelo.test\r\nMAIL FROM:<a@pass.test>\r\nQUIT\r\n", StaticResolver(ZONE))
    assert b"250 2.1.0" in transport.out


def test_a_remembered_result_answers_mail_at_once_with_the_same_outcome() -> None:
    """The second transaction of each sender is answered from the remembered result
    (no lookup, no task): same replies, same results handed to ingest."""
    message = b"RCPT TO:<bob@mx.test>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n"
    resolver = StaticResolver(ZONE)
    transport, ingest, metrics = session_transcript(
        b"EHLO client.test\r\n" + (b"MAIL FROM:<a@pass.test>\r\n" + message) * 2
        + b"MAIL FROM:<a@fail.test>\r\nRSET\r\n" * 2 + b"QUIT\r\n", resolver)
    out = transport.out.decode()
    assert out.count("250 2.0.0 Queued as") == 2
    assert out.count("550 5.7.23 SPF validation failed: 192.0.2.7 is not ours\r\n") == 2
    first, second = ingest.submissions
    assert first.spf == second.spf and second.spf is not None
    assert first.spf_helo == second.spf_helo
    assert metrics.get(SPF_RESULTS, result="pass") == metrics.get(SPF_RESULTS, result="fail") == 2
    queried = [q for q in resolver.queries if q[0] in ("pass.test", "fail.test")]
    assert len(queried) == 2  # each sender's record asked once
