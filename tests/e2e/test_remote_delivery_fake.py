"""Remote delivery against the scriptable server in tests/support/fake_smtp.py, for what
smtp-sink cannot show: STARTTLS (RFC 3207) good and broken, BDAT (RFC 3030), exact
bytes on the wire, per-recipient replies, hang-ups mid-content, RFC 5321 4.5.3.1.10
"too many recipients", SMTPUTF8 (RFC 6531) and the idle connection pool."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import pytest

from mailyard.config import Config, DeliveryConfig
from mailyard.delivery.remote import ConnectionPool, RemoteResult, deliver_remote
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import RecipientState
from mailyard.tls import ensure_certificate, server_context
from tests.support.fake_smtp import HANGUP, FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DELIVERED = RecipientState.DELIVERED
DEFERRED = RecipientState.DEFERRED
FAILED = RecipientState.FAILED
CONFIG = Config(hostname="client.test",
                delivery=DeliveryConfig(connect_timeout=2.0, command_timeout=2.0, data_timeout=2.0))
CONTENT = (b"Subject: exact\r\n\r\n.one\r\n..two\r\nbare lf\nbare cr\r"
           b"\r\n.\r\nlast line without newline.")
ON_THE_WIRE = (b"Subject: exact\r\n\r\n..one\r\n...two\r\nbare lf\r\nbare cr\r\n"
               b"\r\n..\r\nlast line without newline.\r\n")
NORMALISED = (b"Subject: exact\r\n\r\n.one\r\n..two\r\nbare lf\r\nbare cr\r\n"
              b"\r\n.\r\nlast line without newline.\r\n")


@dataclass(frozen=True)
class Hop:
    host: str
    ip: str
    port: int
    tls_policy: str = "none"
    auth: object = None
    tls_ca_file: str = ""
    tls_fingerprints: tuple[str, ...] = ()
    tls_tlsa: tuple[str, ...] = ()
    tls_names: tuple[str, ...] = ()
    tls_report: object = None


def hop(server: FakeSmtpServer, tls: str = "none", auth: object = None) -> Hop:
    return Hop("fake.test", "127.0.0.1", server.port, tls, auth)


def envelope(*addresses: str, **kw) -> Envelope:
    return Envelope("sender@origin.test", tuple(Recipient(a) for a in addresses), **kw)


async def send(hops, env: Envelope, content: bytes = CONTENT, pool=None) -> list[RemoteResult]:
    return await deliver_remote(hops, env, list(enumerate(env.recipients)),
                                lambda: io.BytesIO(content), len(content), CONFIG, pool)


def states(results: list[RemoteResult]) -> list[RecipientState]:
    return [r.state for r in results]


def run(coro):
    return asyncio.run(coro)


def test_exact_bytes_with_data() -> None:
    """RFC 5321 4.5.2 dot-stuffing and 2.3.8 CRLF-only, checked on the raw wire bytes."""
    async def go():
        async with FakeSmtpServer() as server:
            res = await send([hop(server)], envelope("r@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED]
    (msg,) = server.messages
    assert msg.wire == ON_THE_WIRE
    assert msg.content == NORMALISED


def test_bdat_when_chunking_is_offered() -> None:
    """RFC 3030: BDAT chunks, no dot-stuffing, CRLF line endings."""
    async def go():
        async with FakeSmtpServer(extensions=("PIPELINING", "CHUNKING", "8BITMIME")) as server:
            res = await send([hop(server)], envelope("r@dest.test", "s@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED, DELIVERED]
    (msg,) = server.messages
    assert msg.wire == NORMALISED and msg.rcpts == ["r@dest.test", "s@dest.test"]
    assert any(c.startswith("BDAT ") and c.endswith(" LAST") for c in server.commands)
    assert "DATA" not in server.commands


def test_large_bdat_message_in_several_chunks(tmp_path) -> None:
    path = tmp_path / "big.eml"
    body = b"Subject: big\r\n\r\n" + b"y" * 78 + b"\r\n"
    path.write_bytes(body * 10000)

    async def go():
        async with FakeSmtpServer(extensions=("PIPELINING", "CHUNKING")) as server:
            env = envelope("r@dest.test")
            def opener():  # hands the open file over: deliver_remote reads and closes it
                return open(path, "rb")  # noqa: SIM115
            res = await deliver_remote([hop(server)], env, [(0, env.recipients[0])],
                                       opener, path.stat().st_size, CONFIG, None)
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED]
    assert server.messages[0].wire == path.read_bytes()
    assert sum(c.startswith("BDAT") for c in server.commands) >= 3


def test_one_recipient_refused_the_others_delivered() -> None:
    async def go():
        async with FakeSmtpServer(rcpt_replies={
                "bad@dest.test": b"550 5.1.1 <bad@dest.test>: user unknown\r\n",
                "later@dest.test": b"452 4.2.2 mailbox full\r\n"}) as server:
            res = await send([hop(server)], envelope("a@dest.test", "bad@dest.test",
                                                     "later@dest.test", "b@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED, FAILED, DEFERRED, DELIVERED]
    assert str(res[1].reply) == "550 5.1.1 <bad@dest.test>: user unknown"
    assert str(res[2].reply) == "452 4.2.2 mailbox full"
    assert server.messages[0].rcpts == ["a@dest.test", "b@dest.test"]


def test_too_many_recipients_go_in_a_second_transaction() -> None:
    """RFC 5321 4.5.3.1.10: 452 for the excess recipients; the client sends them again."""
    async def go():
        async with FakeSmtpServer(max_rcpts=2) as server:
            env = envelope(*(f"r{i}@dest.test" for i in range(5)))
            return server, await send([hop(server)], env)
    server, res = run(go())
    assert states(res) == [DELIVERED] * 5
    assert [len(m.rcpts) for m in server.messages] == [2, 2, 1]
    assert server.connections == 1


def test_more_than_100_recipients_are_split() -> None:
    """RFC 5321 4.5.3.1.8: a server need not take more than 100 per transaction."""
    async def go():
        async with FakeSmtpServer() as server:
            res = await send([hop(server)], envelope(*(f"r{i}@dest.test" for i in range(230))))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED] * 230
    assert [len(m.rcpts) for m in server.messages] == [100, 100, 30]


def test_hangup_mid_content_defers(tmp_path) -> None:
    async def go():
        async with FakeSmtpServer(hangup_after_content_bytes=1000) as server:
            res = await send([hop(server)], envelope("r@dest.test"),
                             content=b"Subject: x\r\n\r\n" + b"z" * 70 + b"\r\n" * 10000)
            return server, res
    server, res = run(go())
    assert states(res) == [DEFERRED]
    assert str(res[0].reply).startswith("451 4.4.2")
    assert server.messages == []


def test_hangup_at_rcpt_goes_to_the_next_hop() -> None:
    async def go():
        async with FakeSmtpServer(rcpt_replies={"r@dest.test": HANGUP}) as bad, \
                FakeSmtpServer() as good:
            res = await send([hop(bad), hop(good)], envelope("r@dest.test"))
            return good, res
    good, res = run(go())
    assert states(res) == [DELIVERED] and len(good.messages) == 1


def test_starttls(tmp_path) -> None:
    cert, key = ensure_certificate(tmp_path, "fake.test")

    async def go():
        async with FakeSmtpServer(starttls="ok", ssl_context=server_context(cert, key)) as server:
            res = await send([hop(server, "require")], envelope("r@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED]
    assert server.commands[:3] == ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    assert server.messages[0].wire == ON_THE_WIRE


def test_broken_tls_with_policy_may_retries_in_clear() -> None:
    """RFC 3207 practice: opportunistic TLS that fails is retried without TLS."""
    async def go():
        async with FakeSmtpServer(starttls="broken") as server:
            res = await send([hop(server, "may")], envelope("r@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED]
    assert server.connections == 2
    assert server.commands.count("STARTTLS") == 1


def test_broken_tls_with_policy_require_defers() -> None:
    async def go():
        async with FakeSmtpServer(starttls="broken") as server, FakeSmtpServer() as plain:
            res = await send([hop(server, "require")], envelope("r@dest.test"))
            res2 = await send([hop(plain, "require")], envelope("r@dest.test"))
            return server, res, res2
    server, res, res2 = run(go())
    assert states(res) == [DEFERRED] and "4.7.5" in str(res[0].reply)
    assert server.messages == [] and server.connections == 1
    assert states(res2) == [DEFERRED] and "4.7.4" in str(res2[0].reply)


def test_smtputf8_recipient_to_a_server_without_it_fails_with_5_6_7() -> None:
    """RFC 6531 3.2: never sent; a permanent failure the DSN can explain."""
    async def go():
        async with FakeSmtpServer() as server:
            res = await send([hop(server)], envelope("jürgen@dest.test", "r@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [FAILED, DELIVERED]
    assert str(res[0].reply).startswith("553 5.6.7")
    assert server.messages[0].rcpts == ["r@dest.test"]


def test_smtputf8_to_a_server_with_it() -> None:
    async def go():
        async with FakeSmtpServer(extensions=("PIPELINING", "8BITMIME", "SMTPUTF8")) as server:
            res = await send([hop(server)], envelope("jürgen@dest.test"))
            return server, res
    server, res = run(go())
    assert states(res) == [DELIVERED]
    assert server.commands[1] == "MAIL FROM:<sender@origin.test> SMTPUTF8"


def test_idle_connection_is_reused_then_closed() -> None:
    async def go():
        async with FakeSmtpServer() as server:
            pool = ConnectionPool(CONFIG, idle_seconds=0.2)
            for _ in range(3):
                results = await send([hop(server)], envelope("r@dest.test"), pool=pool)
                assert states(results) == [DELIVERED]
            assert pool.idle_count() == 1
            for _ in range(100):
                if "QUIT" in server.commands:
                    break
                await asyncio.sleep(0.02)
            assert pool.idle_count() == 0
            await pool.close()
            return server, pool
    server, pool = run(go())
    assert server.connections == 1 and (pool.opened, pool.reused) == (1, 2)
    # Used moments ago: no RSET probe, the next MAIL goes straight out.
    assert server.commands.count("RSET") == 0 and server.commands[-1] == "QUIT"


def test_session_idle_for_a_while_is_probed_with_rset() -> None:
    async def go():
        async with FakeSmtpServer() as server:
            pool = ConnectionPool(CONFIG, probe_after=0.0)
            for _ in range(3):
                results = await send([hop(server)], envelope("r@dest.test"), pool=pool)
                assert states(results) == [DELIVERED]
            await pool.close()
            return server, pool
    server, pool = run(go())
    assert server.connections == 1 and (pool.opened, pool.reused) == (1, 2)
    assert server.commands.count("RSET") == 2


def test_reused_session_closed_by_the_server_is_replaced_without_a_deferral() -> None:
    """RFC 5321 3.8: the server may close an idle connection with 421; without a probe
    the 421 answers the next MAIL, and the message goes out on a new connection."""
    async def go():
        closing = b"250 2.0.0 queued\r\n421 4.4.2 fake.test idle timeout\r\n"
        async with FakeSmtpServer(replies={".": closing}) as server:
            pool = ConnectionPool(CONFIG)
            results = [await send([hop(server)], envelope("r@dest.test"), pool=pool)
                       for _ in range(2)]
            await pool.close()
            return server, pool, results
    server, pool, results = run(go())
    assert [states(r) for r in results] == [[DELIVERED], [DELIVERED]]
    assert server.connections == 2 and len(server.messages) == 2
    assert (pool.opened, pool.reused) == (2, 1)


def test_concurrent_deliveries_do_not_share_a_session() -> None:
    async def go():
        async with FakeSmtpServer(delays={".": 0.1}) as server:
            pool = ConnectionPool(CONFIG)
            results = await asyncio.gather(
                *(send([hop(server)], envelope(f"r{i}@dest.test"), pool=pool) for i in range(4)))
            await pool.close()
            return server, results
    server, results = run(go())
    assert all(states(r) == [DELIVERED] for r in results)
    assert server.connections == 4 and len(server.messages) == 4


def test_tar_pit_times_out_per_reply_not_per_read() -> None:
    """RFC 5321 4.5.3.2: the timeout bounds the wait for a whole reply; a server sending
    one byte every 0.2 s must not hold the client past command_timeout (2 s here)."""
    async def go():
        async with FakeSmtpServer(drip=0.2) as server:
            loop = asyncio.get_running_loop()
            started = loop.time()
            res = await send([hop(server)], envelope("r@dest.test"))
            return res, loop.time() - started
    res, elapsed = run(go())
    assert states(res) == [DEFERRED] and "Timed out" in str(res[0].reply)
    assert elapsed < 3.5


def test_no_hops() -> None:
    res = run(send([], envelope("r@dest.test")))
    assert states(res) == [DEFERRED] and str(res[0].reply).startswith("451 4.4.0")
