"""What a security audit tried against a running server and found handled well, kept
as a regression suite against the real ``mailyard serve`` on 127.0.0.1: relay tricks
on port 25, hostile addresses, header injection through HELO/ENVID/ORCPT, BDAT and
command-line limits, TLS versions and ciphers, and a full disk."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


class Client:
    """A raw SMTP client: one command, one (possibly multi-line) reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    return "\n".join(lines) or "<closed>"
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, line: str | bytes) -> str:
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MailyardServer(tmp_path_factory.mktemp("audit"),
                         overrides={"relay_domains": ["relay.example.org"]})
    srv.add_user("alice@example.test", "alice-secret")
    with srv:
        yield srv


def rcpt_reply(server: MailyardServer, address: str) -> str:
    c = Client(server.ports["smtp"])
    try:
        c.cmd("EHLO probe.test")
        assert c.cmd("MAIL FROM:<probe@remote.test>").startswith("250")
        return c.cmd(f"RCPT TO:{address}")
    finally:
        c.close()


@pytest.mark.parametrize("address", [
    "<user%remote.org@example.test>",  # percent hack
    "<remote.org!user@example.test>",  # bang path
    "<@example.test:user@remote.org>",  # source route towards a remote domain
    "<user@[127.0.0.1]>",
    "<user@[IPv6:::1]>",
    '<"user@remote.org"@example.test>',
    '<"user@remote.org">',
    "<user@remote.org@example.test>",
    "<alice@example.test.>",  # trailing dot
    "<alice@xn--exmple-cua.test>",  # punycode look-alike of the local domain
    "<alice@ex\u00e4mple.test>",  # U-label look-alike
    "<alice@\uff45xample.test>",  # full-width letter
    "<alice@example\u3002test>",  # ideographic full stop
    "<user@localhost>",
    "<user@mx.example.test>",
    "<user@127.0.0.1>",
    "<user@example.test:25>",
    "<user@sub.relay.example.org>",  # only the exact relay domain is listed
    "<user@remote.org>",
])
def test_port_25_is_no_open_relay(server: MailyardServer, address: str) -> None:
    reply = rcpt_reply(server, address)
    assert reply[:3] in ("550", "554", "501", "553"), (address, reply)
    assert server.queue() == [] or all(
        not any("remote.org" in r["address"] for r in e.get("recipients", []))
        for e in server.queue())


@pytest.mark.parametrize("address", [
    "<ALICE@EXAMPLE.TEST>",  # case-insensitive local domain
    "<alice+tag@example.test>",  # sub-addressing
    "<@remote.org:alice@example.test>",  # a source route is dropped (RFC 5321 C)
    "<user@relay.example.org>",  # the listed relay domain itself
    "<postmaster>",
])
def test_port_25_accepts_local_and_relay_domains(server: MailyardServer, address: str) -> None:
    assert rcpt_reply(server, address).startswith("250"), address


@pytest.mark.parametrize("tag", ["../../etc", "x/y", "a" * 60])
def test_plus_tags_never_reach_the_path(server: MailyardServer, tag: str) -> None:
    c = Client(server.ports["smtp"])
    try:
        c.cmd("EHLO probe.test")
        c.cmd("MAIL FROM:<probe@remote.test>")
        reply = c.cmd(f"RCPT TO:<alice+{tag}@example.test>")
        if reply.startswith("250"):
            c.cmd("DATA")
            assert c.cmd(f"Subject: tag {len(tag)}\r\n\r\nx\r\n.").startswith("250")
        else:
            assert reply.startswith("501"), reply
    finally:
        c.close()
    mail = server.data_dir / "mail"
    assert {p.name for p in mail.iterdir()} <= {"example.test"}
    assert {p.name for p in (mail / "example.test").iterdir()} <= {"alice", "postmaster"}


def test_hostile_cli_mailbox_names_are_refused(server: MailyardServer) -> None:
    for name in ("../x", "a/b", ".x", "..", "a\\b", "x@../example.test", "x@example.test/..",
                 "a\x01b", "a+b", '"q"'):
        address = name if "@" in name else f"{name}@example.test"
        res = server.cli("user", "add", address, "--password-stdin",
                         input=b"long enough password\n", check=False)
        assert res.returncode != 0, name
        assert b"Traceback" not in res.stderr
    assert {p.name for p in (server.data_dir / "mail").iterdir()} <= {"example.test"}


def test_helo_envid_orcpt_cannot_inject_header_fields(server: MailyardServer) -> None:
    c = Client(server.ports["smtp"])
    try:
        assert c.cmd("EHLO evil.test").startswith("250")
        assert c.cmd("MAIL FROM:<alice@example.test> RET=HDRS "
                     "ENVID=e+0D+0AX-Injected-Envid:+20yes").startswith("250")
        assert c.cmd("RCPT TO:<nobody@example.test> NOTIFY=FAILURE "
                     "ORCPT=rfc822;o+0D+0AX-Injected-Orcpt:+20yes").startswith("550")
        assert c.cmd("RCPT TO:<alice@example.test> NOTIFY=SUCCESS "
                     "ORCPT=rfc822;o+0D+0AX-Injected-Orcpt:+20yes").startswith("250")
        c.cmd("DATA")
        assert c.cmd("Subject: inject\r\n\r\nbody\r\n.").startswith("250")
    finally:
        c.close()
    message = wait_for(lambda: next((m for m in server.messages("alice@example.test")
                                     if b"Subject: inject" in m), None))
    header = message.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Injected" not in header
    # The success notice comes back to the sender (alice): its DSN fields are single
    # lines whatever ENVID and ORCPT held.
    notice = wait_for(lambda: next((m for m in server.messages("alice@example.test")
                                    if b"multipart/report" in m and b"Subject: inject" in m), None))
    lines = notice.split(b"\r\n")
    assert not any(line.startswith(b"X-Injected") for line in lines), notice
    assert any(line.startswith(b"Original-Envelope-Id:") for line in lines)


def test_helo_with_line_break_is_refused_and_received_is_safe(server: MailyardServer) -> None:
    c = Client(server.ports["smtp"])
    try:
        assert c.cmd(b"EHLO a\rX-Injected: yes").startswith("501")
        assert c.cmd("EHLO weird<>\"name;(x)").startswith("250")
        c.cmd("MAIL FROM:<probe@remote.test>")
        c.cmd("RCPT TO:<alice@example.test>")
        c.cmd("DATA")
        assert c.cmd("Subject: helo\r\n\r\nx\r\n.").startswith("250")
    finally:
        c.close()
    message = wait_for(lambda: next((m for m in server.messages("alice@example.test")
                                     if b"Subject: helo" in m), None))
    received = message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:3]
    assert all(b"<" not in line and b'"' not in line for line in received), received


def test_bdat_limits(server: MailyardServer) -> None:
    c = Client(server.ports["smtp"])
    try:
        c.cmd("EHLO probe.test")
        # A huge chunk announced before MAIL is read and discarded as a stream (its
        # 503 comes once the whole chunk has gone by), never buffered.
        c.sock.sendall(b"BDAT 999999999999999 LAST\r\n" + b"x" * (4 << 20))
        c.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            c.sock.recv(100)
        other = Client(server.ports["smtp"])
        assert other.greeting.startswith("220")
        other.close()
    finally:
        c.close()
    c = Client(server.ports["smtp"])
    try:
        c.cmd("EHLO probe.test")
        c.cmd("MAIL FROM:<probe@remote.test>")
        c.cmd("RCPT TO:<alice@example.test>")
        assert c.cmd("BDAT 1234567890123456 LAST").startswith("501")
        assert c.reply() == "<closed>"
    finally:
        c.close()


def test_recipient_and_line_limits(server: MailyardServer) -> None:
    c = Client(server.ports["smtp"])
    try:
        c.cmd("EHLO probe.test")
        assert c.cmd("MAIL FROM:<probe@remote.test>").startswith("250")
        # Pipelined: 1,100 RCPTs, at most max_recipients (1,000) accepted, then 452.
        c.sock.sendall(b"".join(b"RCPT TO:<alice+%d@example.test>\r\n" % i for i in range(1100)))
        replies = [c.reply() for _ in range(1100)]
        assert sum(r.startswith("250") for r in replies) == 1000
        assert all(r.startswith("452") for r in replies[1000:])
        assert c.cmd("RSET").startswith("250")
        assert c.cmd("NOOP " + "x" * 20_000).startswith("500")
        assert c.cmd("NOOP").startswith("250")  # the session stays usable
    finally:
        c.close()


def test_http_verbs_close_the_connection(server: MailyardServer) -> None:
    c = Client(server.ports["smtp"])
    try:
        reply = c.cmd("GET / HTTP/1.1")
        assert reply.startswith(("500", "554", "421")), reply
        assert c.reply() == "<closed>"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_are_refused(server: MailyardServer, version: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip(f"this OpenSSL cannot offer {version}")
    with (
        socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        ctx.wrap_socket(raw) as tls,
    ):
        tls.recv(100)


def test_only_forward_secret_aead_or_sha384_ciphers(server: MailyardServer) -> None:
    weak = ["AES128-SHA", "AES256-SHA", "DHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
            "ECDHE-ECDSA-AES128-SHA", "DES-CBC3-SHA", "RC4-SHA"]
    for cipher in weak:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_ciphers(cipher + ":@SECLEVEL=0")
        except ssl.SSLError:
            continue  # this OpenSSL does not even offer it
        with (
            socket.create_connection(("127.0.0.1", server.ports["submissions"]),
                                     timeout=10) as raw,
            pytest.raises((ssl.SSLError, ConnectionError, OSError)),
            ctx.wrap_socket(raw) as tls,
        ):
            tls.recv(100)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.recv(100).startswith(b"220")


def wait_for(probe, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a small tmpfs needs root")
def test_full_disk_loses_nothing(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("tmpfs mount not permitted here")
    try:
        srv = MailyardServer(small / "srv", overrides={"smtpd": {"min_free_disk": 0},
                                                        "log": {"file": str(tmp_path / "log")}})
        srv.add_user("alice@example.test", "alice-secret")
        with srv:
            c = Client(srv.ports["smtp"])
            try:
                c.cmd("EHLO probe.test")
                c.cmd("MAIL FROM:<probe@remote.test>")
                c.cmd("RCPT TO:<alice@example.test>")
                assert c.cmd("DATA").startswith("354")
                chunk = b"x" * 998 + b"\r\n"
                c.sock.sendall(chunk * 5200)  # about 5 MiB: more than the disk holds
                reply = c.cmd(b".")
                assert reply.startswith("451"), reply
            finally:
                c.close()
            assert not list((srv.data_dir / "queue" / "tmp").iterdir())
            # A small message still goes through once the space is back.
            c = Client(srv.ports["smtp"])
            try:
                c.cmd("EHLO probe.test")
                c.cmd("MAIL FROM:<probe@remote.test>")
                c.cmd("RCPT TO:<alice@example.test>")
                c.cmd("DATA")
                assert c.cmd("Subject: small\r\n\r\nx\r\n.").startswith("250")
            finally:
                c.close()
            wait_for(lambda: next((m for m in srv.messages("alice@example.test")
                                   if b"Subject: small" in m), None))
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
