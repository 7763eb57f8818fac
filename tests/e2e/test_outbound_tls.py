"""Outbound TLS against next hops on loopback: the STARTTLS upgrade boundary (RFC 3207 5,
cleartext injected after the 220), under the default asyncio loop and under uvloop
(which ``mailyard serve`` uses), and the TLS levels: certificate chain and host name
checks, a private CA file, fingerprint pins, and credentials only for verified servers."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
import uvloop

from mailyard.config import Config, DeliveryConfig, TransportRoute
from mailyard.delivery.remote import deliver_remote
from mailyard.delivery.routing import NextHop, Router, SmtpAuth
from mailyard.delivery.smtp_session import SessionError, SmtpSession, Timeouts
from mailyard.dns import StaticResolver
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import RecipientState
from mailyard.tls import server_context
from tests.support.certs import fingerprint, make_ca, self_signed
from tests.support.fake_smtp import FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DELIVERED, DEFERRED = RecipientState.DELIVERED, RecipientState.DEFERRED
TIMEOUTS = Timeouts(connect=5.0, command=5.0, data=5.0)
INJECTED = b"250-INJECTED\r\n250 SIZE 7\r\n"
CONTENT = b"Subject: t\r\n\r\nhello\r\n"


def run_on(loop_name: str, coro):
    factory = uvloop.new_event_loop if loop_name == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_name(request) -> str:
    return request.param


# --- STARTTLS injection ---------------------------------------------------------------
@dataclass
class InjectingHop:
    """A next hop on 127.0.0.1 (blocking sockets in a thread, so its timing does not
    depend on the client's loop): it offers STARTTLS, answers ``220 go``, sends
    ``inject`` in clear (in the same segment when ``delay`` is None, else in a separate
    write ``delay`` seconds later), then does a real handshake and, inside TLS, answers
    like a normal server that refuses every recipient (so an off-by-one client would
    take the real replies for the wrong commands)."""

    ssl_context: ssl.SSLContext
    inject: bytes
    delay: float | None
    port: int = 0
    tls_commands: list[bytes] = field(default_factory=list)  # what came in over TLS
    handshake: str = ""  # "ok" or the server's handshake error

    def __enter__(self) -> InjectingHop:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        with sock:
            sock.settimeout(10)
            try:
                self._converse(sock)
            except (OSError, ssl.SSLError) as exc:
                if not self.handshake:
                    self.handshake = str(exc) or type(exc).__name__

    def _converse(self, sock: socket.socket) -> None:
        rfile = sock.makefile("rb")
        sock.sendall(b"220 hop.test ESMTP\r\n")
        rfile.readline()  # EHLO
        sock.sendall(b"250-hop.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        rfile.readline()  # STARTTLS
        if self.delay is None:
            sock.sendall(b"220 go\r\n" + self.inject)
        else:
            sock.sendall(b"220 go\r\n")
            time.sleep(self.delay)
            sock.sendall(self.inject)
        tls = self.ssl_context.wrap_socket(sock, server_side=True)
        self.handshake = "ok"
        tfile = tls.makefile("rb")
        replies = {b"EHLO": b"250-hop.test\r\n250 PIPELINING\r\n", b"MAIL": b"250 2.1.0 ok\r\n",
                   b"RCPT": b"550 5.1.1 no such user\r\n", b"DATA": b"554 5.5.1 no recipients\r\n",
                   b"QUIT": b"221 bye\r\n"}
        while True:
            line = tfile.readline()
            if not line:
                return
            self.tls_commands.append(line)
            tls.sendall(replies.get(line[:4].upper(), b"250 ok\r\n"))


def _open(port: int, tls: str = "encrypt"):
    return SmtpSession.open("hop.test", "127.0.0.1", port, "client.test", tls=tls,
                            timeouts=TIMEOUTS)


@pytest.mark.parametrize("delay", [0.0005, 0.002, 0.005])
def test_cleartext_injected_after_starttls_220_fails_the_session(tmp_path, loop_name, delay):
    """RFC 3207 5: a segment sent in clear after the 220 (here a forged EHLO reply) must
    never be read as if it came over TLS, whatever the event loop does with it."""
    cert, key = self_signed(tmp_path, "hop.test")
    with InjectingHop(server_context(cert, key), INJECTED, delay) as hop:
        async def go():
            with pytest.raises(SessionError) as info:
                await _open(hop.port)
            return info.value.failure
        failure = run_on(loop_name, go())
    assert failure.stage == "tls" and failure.reply.code == 451 and not failure.permanent
    # Either the client saw the cleartext (it says so) or the bytes broke the handshake.
    text = failure.reply.text
    assert "in clear during the STARTTLS handshake" in text or "TLS handshake" in text, text
    assert not failure.tls_failure or "TLS handshake" in text
    assert hop.tls_commands == []  # nothing was sent on the strength of the forged reply


def test_cleartext_in_the_same_segment_as_the_220_fails_the_session(tmp_path, loop_name):
    cert, key = self_signed(tmp_path, "hop.test")
    with InjectingHop(server_context(cert, key), INJECTED, None) as hop:
        async def go():
            with pytest.raises(SessionError) as info:
                await _open(hop.port, tls="may")
            return info.value.failure
        failure = run_on(loop_name, go())
    assert failure.reply.code == 451 and failure.reply.status == "4.5.0"
    assert not failure.tls_failure  # not retried in clear either
    assert hop.tls_commands == []


def test_injection_defers_the_message_and_is_not_retried_in_clear(tmp_path, loop_name):
    """The delivery view: the message stays queued (temporary failure) and is never
    counted delivered, also with opportunistic TLS."""
    cert, key = self_signed(tmp_path, "hop.test")
    inject = b"250 ok\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
    with InjectingHop(server_context(cert, key), inject, 0.001) as hop:
        async def go():
            env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
            return await deliver_remote(
                [NextHop("hop.test", "127.0.0.1", hop.port, "may")], env,
                list(enumerate(env.recipients)), lambda: io.BytesIO(CONTENT), len(CONTENT),
                Config(hostname="client.test", delivery=DeliveryConfig(
                    connect_timeout=5.0, command_timeout=5.0, data_timeout=5.0)))
        (result,) = run_on(loop_name, go())
    assert result.state is DEFERRED and str(result.reply).startswith("451 4."), result.reply
    assert not any(c.startswith((b"MAIL", b"RCPT", b"DATA")) for c in hop.tls_commands)


@pytest.mark.parametrize("when", ["before", "after"])
def test_cleartext_handed_to_the_reader_around_the_handshake_is_never_read(
        tmp_path, monkeypatch, loop_name, when):
    """What uvloop does with a segment that arrives just before the switch to TLS, made
    deterministic: the bytes reach the connection's reader right before the handshake,
    or show up there once it is done.  Either way they are not taken as the reply to
    the EHLO sent inside TLS."""
    cert, key = self_signed(tmp_path, "hop.test")
    real_start_tls = asyncio.StreamWriter.start_tls

    async def start_tls_with_cleartext(self, *args, **kwargs):
        client_side = not kwargs.get("server_side") and self.get_extra_info("peername")[1] == port
        if client_side and when == "before":
            self._reader.feed_data(INJECTED)
        await real_start_tls(self, *args, **kwargs)
        if client_side and when == "after":
            self._reader.feed_data(INJECTED)

    monkeypatch.setattr(asyncio.StreamWriter, "start_tls", start_tls_with_cleartext)

    port = 0

    async def go():
        nonlocal port
        async with FakeSmtpServer(starttls="ok", ssl_context=server_context(cert, key)) as server:
            port = server.port
            with pytest.raises(SessionError) as info:
                await _open(server.port)
            return server, info.value.failure
    server, failure = run_on(loop_name, go())
    assert failure.stage == "tls" and (failure.reply.code, failure.reply.status) == (451, "4.5.0")
    assert f"{len(INJECTED)} byte(s) received in clear during the STARTTLS handshake" in (
        failure.reply.text)
    assert server.commands == ["EHLO client.test", "STARTTLS"]  # no EHLO inside TLS


# --- TLS levels and certificates ------------------------------------------------------
SMARTHOST = "smarthost.test"
ZONES = {SMARTHOST: {"A": ["127.0.0.1"]}}


async def relay_via(server: FakeSmtpServer, **delivery):
    """Deliver one message the way the dispatcher does: routing from the config (relay
    host by name, so the name is what the certificate is checked against), then the pool."""
    config = Config(hostname="client.test", delivery=DeliveryConfig(
        relayhost=f"{SMARTHOST}:{server.port}", connect_timeout=5.0, command_timeout=5.0,
        data_timeout=5.0, **delivery))
    config.validate()
    hops = await Router(config, StaticResolver(ZONES)).route("dest.test")
    env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
    (result,) = await deliver_remote(hops, env, list(enumerate(env.recipients)),
                                     lambda: io.BytesIO(CONTENT), len(CONTENT), config)
    return result


def tls_server(cert_key: tuple[str, str], **kw) -> FakeSmtpServer:
    return FakeSmtpServer(extensions=("PIPELINING", "AUTH PLAIN"), starttls="ok",
                          ssl_context=server_context(*cert_key), **kw)


def sent_auth(server: FakeSmtpServer) -> bool:
    return any(c.upper().startswith("AUTH") for c in server.commands)


CREDENTIALS = {"relayhost_username": "relayuser", "relayhost_password": "S3cret-relay-pw"}


def test_credentials_are_not_sent_to_an_unverified_smarthost(tmp_path) -> None:
    """The default level with credentials is verify: a self-signed certificate for
    another name (a man-in-the-middle) gets no AUTH, and the mail is retried later."""
    async def go():
        async with tls_server(self_signed(tmp_path, "evil.invalid")) as server:
            return server, await relay_via(server, **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DEFERRED and str(result.reply).startswith("451 4.7.5"), result.reply
    assert "certificate" in str(result.reply).lower()
    assert not sent_auth(server) and server.messages == []


def test_private_ca_file_verifies_the_smarthost_and_auth_is_sent(tmp_path) -> None:
    ca = make_ca(tmp_path)

    async def go():
        async with tls_server(ca.issue(tmp_path, SMARTHOST)) as server:
            return server, await relay_via(server, relayhost_tls_ca_file=str(ca.cert_file),
                                           **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DELIVERED, result.reply
    assert sent_auth(server) and len(server.messages) == 1


def test_private_ca_file_still_checks_the_host_name(tmp_path) -> None:
    ca = make_ca(tmp_path)

    async def go():
        async with tls_server(ca.issue(tmp_path, "evil.invalid")) as server:
            return server, await relay_via(server, relayhost_tls_ca_file=str(ca.cert_file),
                                           relayhost_tls="secure", **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DEFERRED and "4.7.5" in str(result.reply)
    assert "mismatch" in str(result.reply).lower(), result.reply
    assert not sent_auth(server)


def test_fingerprint_pin_that_matches_is_enough(tmp_path) -> None:
    """A pinned leaf certificate needs no chain and no matching name."""
    cert_key = self_signed(tmp_path, "evil.invalid")

    async def go():
        async with tls_server(cert_key) as server:
            return server, await relay_via(
                server, relayhost_tls_fingerprints=(fingerprint(cert_key[0]).upper(),),
                **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DELIVERED, result.reply
    assert sent_auth(server) and len(server.messages) == 1


def test_fingerprint_pin_that_does_not_match_defers(tmp_path) -> None:
    other = self_signed(tmp_path, "other.test")

    async def go():
        async with tls_server(self_signed(tmp_path, "evil.invalid")) as server:
            return server, await relay_via(
                server, relayhost_tls_fingerprints=(fingerprint(other[0]),), **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DEFERRED and "4.7.5" in str(result.reply)
    assert "fingerprint" in str(result.reply)
    assert not sent_auth(server) and server.messages == []


def test_encrypt_without_credentials_delivers_over_unverified_tls(tmp_path) -> None:
    async def go():
        async with tls_server(self_signed(tmp_path, "evil.invalid")) as server:
            return server, await relay_via(server, relayhost_tls="encrypt")
    server, result = asyncio.run(go())
    assert result.state is DELIVERED
    assert server.commands[:3] == ["EHLO client.test", "STARTTLS", "EHLO client.test"]


def test_encrypt_with_credentials_only_when_explicitly_allowed(tmp_path) -> None:
    async def go():
        async with tls_server(self_signed(tmp_path, "evil.invalid")) as server:
            return server, await relay_via(server, relayhost_tls="encrypt",
                                           relayhost_auth_unverified=True, **CREDENTIALS)
    server, result = asyncio.run(go())
    assert result.state is DELIVERED and sent_auth(server)


def test_encrypt_defers_when_starttls_is_not_offered() -> None:
    async def go():
        async with FakeSmtpServer() as server:
            return server, await relay_via(server, relayhost_tls="encrypt")
    server, result = asyncio.run(go())
    assert result.state is DEFERRED and "4.7.4" in str(result.reply) and server.messages == []


def test_may_falls_back_to_cleartext_when_starttls_is_not_offered() -> None:
    async def go():
        async with FakeSmtpServer() as server:
            return server, await relay_via(server)
    server, result = asyncio.run(go())
    assert result.state is DELIVERED
    assert "STARTTLS" not in server.commands and len(server.messages) == 1


def test_verify_on_an_mx_host_uses_the_system_store(tmp_path) -> None:
    """MX delivery with tls = "verify": a self-signed certificate fails the chain check
    (temporary failure); the default "may" delivers over the same certificate."""
    cert_key = self_signed(tmp_path, "hop.test")

    async def go():
        async with tls_server(cert_key) as server:
            hop = NextHop("hop.test", "127.0.0.1", server.port, "verify")
            env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
            config = Config(hostname="client.test", delivery=DeliveryConfig(
                connect_timeout=5.0, command_timeout=5.0))
            args = (env, list(enumerate(env.recipients)), lambda: io.BytesIO(CONTENT),
                    len(CONTENT), config)
            (strict,) = await deliver_remote([hop], *args)
            (relaxed,) = await deliver_remote([NextHop("hop.test", "127.0.0.1", server.port,
                                                       "may")], *args)
            return strict, relaxed
    strict, relaxed = asyncio.run(go())
    assert strict.state is DEFERRED and "4.7.5" in str(strict.reply), strict.reply
    assert relaxed.state is DELIVERED


def test_auth_object_without_opt_in_is_refused_over_unverified_tls(tmp_path) -> None:
    """The client core refuses too, whatever reached it (defence in depth)."""
    async def go():
        async with tls_server(self_signed(tmp_path, "evil.invalid")) as server:
            hop = NextHop(SMARTHOST, "127.0.0.1", server.port, "encrypt",
                          SmtpAuth("relayuser", "S3cret-relay-pw"))
            env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
            (result,) = await deliver_remote(
                [hop], env, list(enumerate(env.recipients)), lambda: io.BytesIO(CONTENT),
                len(CONTENT), Config(hostname="client.test"))
            return server, result
    server, result = asyncio.run(go())
    assert result.state is DEFERRED and "not verified" in str(result.reply)
    assert not sent_auth(server)


def test_transport_to_an_ip_address_is_checked_against_the_certificates_ip(tmp_path) -> None:
    """A transport's own tls_ca_file; a next hop given as an IP address must be named by
    an IP address entry in the certificate."""
    ca = make_ca(tmp_path)
    good, wrong = ca.issue(tmp_path, "127.0.0.1"), ca.issue(tmp_path, "127.0.0.2")

    async def go(cert_key):
        async with tls_server(cert_key) as server:
            transport = TransportRoute(domain="dest.test", nexthop=f"127.0.0.1:{server.port}",
                                       tls="verify", tls_ca_file=str(ca.cert_file))
            config = Config(hostname="client.test", delivery=DeliveryConfig(
                transports=(transport,), connect_timeout=5.0, command_timeout=5.0))
            config.validate()
            hops = await Router(config, StaticResolver({})).route("dest.test")
            env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
            (result,) = await deliver_remote(hops, env, list(enumerate(env.recipients)),
                                             lambda: io.BytesIO(CONTENT), len(CONTENT), config)
            return result
    assert asyncio.run(go(good)).state is DELIVERED
    refused = asyncio.run(go(wrong))
    assert refused.state is DEFERRED and "4.7.5" in str(refused.reply)


def test_mailyard_refuses_credentials_without_certificate_check(tmp_path) -> None:
    """What an operator upgrading with relayhost_tls = "require" and credentials sees:
    one line naming the key and the way out, no traceback, exit status 2."""
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
                      '[delivery]\nrelayhost = "smtp.provider.example:587"\n'
                      'relayhost_username = "u"\nrelayhost_password = "p"\n'
                      'relayhost_tls = "require"\n')
    proc = subprocess.run([sys.executable, "-m", "mailyard.cli.main", "--config", str(config),
                           "queue", "list"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    # the loader reads enumerated values once: "require" is the earlier name of "encrypt"
    assert "delivery.relayhost_tls: is 'encrypt'" in proc.stderr
    assert "relayhost_auth_unverified" in proc.stderr and "Traceback" not in proc.stderr
