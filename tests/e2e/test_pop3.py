"""POP3 end to end (RFC 1939, RFC 2449, RFC 2595, RFC 5034): the real ``mailyard
serve``, mail delivered over SMTP, then read and deleted with Python's poplib and
with fetchmail (a real client from Debian).  Results are checked on disk."""

from __future__ import annotations

import base64
import os
import poplib
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.pop3d.maildrop import uidl
from mailyard.sasl.scram import scram_client_final
from mailyard.store.maildir import base_name
from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORD = "pop-secret"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "fetch")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    root = tmp_path_factory.mktemp("pop3")
    overrides = {"smtpd": {"auth_failure_delay": 0.01, "auth_failure_delay_max": 0.05}}
    srv = MailyardServer(root, overrides=overrides)
    for user in USERS:
        srv.add_user(f"{user}@example.test", PASSWORD)
    with srv:
        yield srv


def deliver(server: MailyardServer, user: str, count: int = 3) -> list[Path]:
    """``count`` messages over SMTP (port 25 role), one with a line starting with "."
    (byte-stuffed on the wire); the files once they are in the Maildir."""
    address = f"{user}@example.test"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as client:
        for i in range(count):
            body = (f"Subject: message {i}\r\nFrom: sender@remote.test\r\nTo: {address}\r\n"
                    f"\r\nline one of {i}\r\n.starts with a dot\r\n..two dots\r\nlast\r\n")
            client.sendmail("sender@remote.test", [address], body.encode())
    deadline = time.monotonic() + 30
    while len(files := server.message_files(address)) < count:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    return sorted(files, key=delivery_time)


def delivery_time(path: Path) -> tuple[int, int]:
    """The Maildir name's ``<sec>.M<usec>`` (the maildrop's order, RFC 1939 5)."""
    sec, rest = path.name.split(".M", 1)
    return int(sec), int(rest.split("P", 1)[0])


def stls_login(server: MailyardServer, user: str) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.stls(context=unverified_tls())
    client.user(f"{user}@example.test")
    client.pass_(PASSWORD)
    return client


def crlf(path: Path) -> bytes:
    return path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_stls_user_pass_retrieve_and_delete(server: MailyardServer) -> None:
    """RFC 1939 5-7 after RFC 2595 STLS: STAT, LIST, UIDL, TOP, RETR byte for byte,
    and DELE taking effect at QUIT on exactly the marked messages."""
    files = deliver(server, "alice")
    client = stls_login(server, "alice")
    sizes = [len(crlf(p)) for p in files]
    assert client.stat() == (3, sum(sizes))
    listed = [line.split() for line in client.list()[1]]
    assert [int(size) for _, size in listed] == sizes
    uids = [line.split()[1].decode() for line in client.uidl()[1]]
    # The base name of the file (the same in new/ and cur/), or its digest when longer
    # than a UIDL may be (RFC 1939 7: 70 characters).
    assert uids == [uidl(base_name(p.name)) for p in files]
    for number, path in enumerate(files, 1):
        _, lines, _ = client.retr(number)
        assert b"\r\n".join(lines) + b"\r\n" == crlf(path)  # poplib undoes the stuffing
        assert b".starts with a dot" in lines and b"..two dots" in lines
    _, top, _ = client.top(2, 1)
    header, body = crlf(files[1]).split(b"\r\n\r\n", 1)
    assert top == [*header.split(b"\r\n"), b"", body.split(b"\r\n")[0]]
    client.dele(1)
    client.dele(3)
    assert client.stat() == (1, sizes[1])
    assert client.quit().startswith(b"+OK")
    assert server.message_files("alice@example.test") == [files[1]]


def test_dropped_connection_deletes_nothing(server: MailyardServer) -> None:
    """RFC 1939 6: without QUIT there is no UPDATE state, so DELE removes nothing;
    the maildrop lock goes with the connection."""
    files = deliver(server, "bob")
    client = stls_login(server, "bob")
    client.dele(1)
    client.dele(2)
    client.sock.close()
    client.file.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            again = stls_login(server, "bob")
            break
        except poplib.error_proto as exc:
            assert b"[IN-USE]" in exc.args[0] and time.monotonic() < deadline
            time.sleep(0.05)
    assert again.stat()[0] == 3
    again.quit()
    assert sorted(server.message_files("bob@example.test"), key=delivery_time) == files


def test_second_session_in_use(server: MailyardServer) -> None:
    """RFC 2449 8.1.1 / RFC 1939 8: one session per maildrop, [IN-USE] for the next."""
    deliver(server, "carol", 1)
    first = stls_login(server, "carol")
    with pytest.raises(poplib.error_proto) as refused:
        stls_login(server, "carol")
    assert refused.value.args[0].startswith(b"-ERR [IN-USE]")
    first.quit()
    stls_login(server, "carol").quit()


def test_wrong_password_is_auth_error(server: MailyardServer) -> None:
    """RFC 3206 4: a bad password is answered -ERR [AUTH]."""
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.stls(context=unverified_tls())
    client.user("dave@example.test")
    with pytest.raises(poplib.error_proto) as refused:
        client.pass_("not-the-password")
    assert refused.value.args[0].startswith(b"-ERR [AUTH]")
    client.quit()


def test_no_login_before_tls(server: MailyardServer) -> None:
    """RFC 2595 3.1 / RFC 8314: no USER (nor AUTH) before STLS; CAPA says so."""
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    caps = client.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto) as refused:
        client.user("erin@example.test")
    assert refused.value.args[0].startswith(b"-ERR [AUTH]")
    client.quit()


def test_auth_plain_over_pop3s(server: MailyardServer) -> None:
    """RFC 5034 AUTH PLAIN (with an initial response) on implicit TLS (RFC 8314)."""
    files = deliver(server, "frank", 2)
    client = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], timeout=30,
                             context=unverified_tls())
    assert "SASL" in client.capa() and "STLS" not in client.capa()
    token = base64.b64encode(f"\0frank@example.test\0{PASSWORD}".encode()).decode()
    assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert client.stat() == (2, sum(len(crlf(p)) for p in files))
    client.quit()


def test_auth_scram_over_pop3s(server: MailyardServer) -> None:
    """RFC 5034 4 with SCRAM-SHA-256 (RFC 7677): the server-final message comes as a
    last challenge, answered with an empty line."""
    client = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], timeout=30,
                             context=unverified_tls())
    first_bare = "n=grace@example.test,r=clientnonce123"
    client._putcmd("AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode())
                   .decode())
    line = client._getline()[0]
    assert line.startswith(b"+ ")
    server_first = base64.b64decode(line[2:]).decode()
    final, expected = scram_client_final(PASSWORD, first_bare, server_first)
    client._putcmd(base64.b64encode(final.encode()).decode())
    line = client._getline()[0]
    assert base64.b64decode(line[2:]).decode() == expected
    client._putcmd("")
    assert client._getresp().startswith(b"+OK")
    client.quit()


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_over_stls(server: MailyardServer, tmp_path: Path) -> None:
    """fetchmail (Debian) fetches over POP3 with STLS into an MDA that writes files,
    and deletes what it fetched."""
    files = deliver(server, "fetch")
    stored = [p.read_bytes().replace(b"\r\n", b"\n") for p in files]
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no syslog\nset invisible\n"
        f'poll 127.0.0.1 service {server.ports["pop3"]} protocol POP3 auth password\n'
        f'  user "fetch@example.test" password "{PASSWORD}" is "x"'
        " here\n"
        "  sslproto 'TLS1.2+' no sslcertck\n"
        f"  fetchall nokeep mda \"cat > $(mktemp {out}/msg.XXXXXX)\"\n")
    rc.chmod(0o600)
    env = {**os.environ, "FETCHMAILHOME": str(home), "HOME": str(home)}
    res = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nodetach"],
                         capture_output=True, timeout=60, env=env)
    log = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    assert res.returncode == 0, log
    assert "POP3> STLS" in log and "upgrade to TLS succeeded" in log, log
    fetched = sorted(p.read_bytes() for p in out.iterdir())
    assert len(fetched) == 3, log
    for message in stored:
        assert any(message in f for f in fetched), log
    assert server.message_files("fetch@example.test") == []


def test_pop3_listeners_printed(server: MailyardServer) -> None:
    text = (server.root / "serve.out").read_text()
    for kind in ("pop3", "pop3s"):
        assert f"{kind} listening on 127.0.0.1:{server.ports[kind]}" in text
    with socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10) as s:
        assert s.recv(512).startswith(b"+OK")
