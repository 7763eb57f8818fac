"""IMAP end to end (RFC 9051, RFC 3501 and extensions): the real ``mailyard serve``,
mail delivered over SMTP (local delivery in the dispatcher process), then read,
flagged, searched, moved and deleted with Python's imaplib over real sockets, with
STARTTLS and implicit TLS.  Also: IDLE woken by a delivery, two sessions seeing each
other's changes, user isolation, hostile input, a worker killed mid-APPEND."""

from __future__ import annotations

import base64
import datetime as dt
import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.sasl.scram import scram_client_final
from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORD = "imap-secret"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
         "judy", "mallory", "oscar", "sync", "peggy", "victor")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    root = tmp_path_factory.mktemp("imap")
    overrides = {"smtpd": {"auth_failure_delay": 0.01, "auth_failure_delay_max": 0.05,
                           "auth_max_failures_per_ip": 1000,
                           "auth_max_failures_per_user": 3},
                 "imap": {"appendlimit": 2_000_000, "search_time_budget": 2.0}}
    srv = MailyardServer(root, overrides=overrides, workers=2)
    for user in USERS:
        srv.add_user(f"{user}@example.test", PASSWORD)
    with srv:
        yield srv


def deliver(server: MailyardServer, user: str, count: int = 3, subject: str = "message"
            ) -> None:
    address = f"{user}@example.test"
    before = len(server.message_files(address))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as client:
        for i in range(count):
            body = (f"Subject: {subject} {i}\r\nFrom: sender@remote.test\r\nTo: {address}\r\n"
                    f"Message-ID: <{user}.{subject}.{i}.{time.monotonic_ns()}@remote.test>\r\n"
                    f"\r\nbody line of {subject} {i}\r\n")
            client.sendmail("sender@remote.test", [address], body.encode())
    deadline = time.monotonic() + 30
    while len(server.message_files(address)) < before + count:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def login(server: MailyardServer, user: str, implicit: bool = False) -> imaplib.IMAP4:
    client: imaplib.IMAP4
    if implicit:
        client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                                   timeout=30)
    else:
        client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        client.starttls(ssl_context=unverified_tls())
    client.login(f"{user}@example.test", PASSWORD)
    return client


def raw_connect(server: MailyardServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
    assert sock.recv(4096).startswith(b"* OK")
    return sock


def exchange(sock: socket.socket, data: bytes, until: bytes, limit: float = 10) -> bytes:
    if data:
        sock.sendall(data)
    out = b""
    deadline = time.monotonic() + limit
    while until not in out and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


# --- login ------------------------------------------------------------------------------

def test_logindisabled_before_tls_and_login_over_starttls(server: MailyardServer) -> None:
    """RFC 9051 6.2.3: LOGINDISABLED before TLS; LOGIN is refused, then works after
    STARTTLS (6.2.1)."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    assert "LOGINDISABLED" in client.capabilities
    assert "STARTTLS" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        client.login("alice@example.test", PASSWORD)
    client.starttls(ssl_context=unverified_tls())
    typ, _ = client.login("alice@example.test", PASSWORD)
    assert typ == "OK"
    typ, data = client.capability()
    assert b"IDLE" in data[0] and b"LOGINDISABLED" not in data[0]
    client.logout()


def test_login_over_imaps_and_bad_password(server: MailyardServer) -> None:
    client = login(server, "alice", implicit=True)
    assert client.select("INBOX")[0] == "OK"
    client.logout()
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                               timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login("alice@example.test", "wrong")
    client.shutdown()


def test_authenticate_plain_with_sasl_ir(server: MailyardServer) -> None:
    """RFC 4959 SASL-IR: the credentials on the AUTHENTICATE line."""
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                               timeout=30)
    creds = base64.b64encode(b"\0bob@example.test\0" + PASSWORD.encode()).decode()
    typ, data = client._simple_command("AUTHENTICATE", "PLAIN", creds)
    assert typ == "OK", data
    client.state = "AUTH"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_authenticate_scram_sha_256(server: MailyardServer) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                               timeout=30)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=carol@example.test,r={nonce}"
    state: dict[str, str] = {}

    def respond(challenge: bytes) -> bytes:
        if "server_first" not in state:
            state["server_first"] = challenge.decode()
            final, _signature = scram_client_final(PASSWORD, first_bare, challenge.decode())
            return final.encode()
        return b""

    pending = iter([("n,," + first_bare).encode()])

    def auth(challenge: bytes) -> bytes:
        first = next(pending, None)
        return first if first is not None else respond(challenge)

    typ, _ = client.authenticate("SCRAM-SHA-256", auth)
    assert typ == "OK"
    client.logout()


def test_failed_logins_delayed_then_disconnected(server: MailyardServer) -> None:
    """Failures are counted per user by the AUTH guard; the connection is closed
    with BYE after smtpd.max_auth_failures."""
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                               timeout=30)
    outcomes = []
    for _ in range(6):
        try:
            client.login("mallory@example.test", "nope")
        except imaplib.IMAP4.abort:
            outcomes.append("bye")
            break
        except imaplib.IMAP4.error as exc:
            outcomes.append(str(exc))
    assert outcomes[-1] == "bye", outcomes


# --- mailbox basics ---------------------------------------------------------------------

def test_select_fetch_store_search_expunge(server: MailyardServer) -> None:
    deliver(server, "dave", 3)
    client = login(server, "dave")
    typ, data = client.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    assert client.untagged_responses.get("UIDVALIDITY")
    typ, data = client.fetch("1:*", "(UID FLAGS)")
    assert typ == "OK" and len(data) == 3
    uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]  # type: ignore[union-attr]
    assert uids == sorted(uids)
    typ, data = client.store("2", "+FLAGS", "(\\Flagged \\Deleted)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"\\Deleted" in data[0]
    typ, data = client.uid("STORE", str(uids[0]), "+FLAGS.SILENT", "(custom)")
    assert typ == "OK"
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"custom" in data[0]
    typ, data = client.expunge()
    assert typ == "OK" and data == [b"2"]
    typ, data = client.fetch("1:*", "(UID)")
    assert len(data) == 2
    typ, data = client.status("INBOX", "(MESSAGES UIDNEXT UNSEEN DELETED SIZE HIGHESTMODSEQ)")
    assert typ == "OK" and b"MESSAGES 2" in data[0] and b"DELETED 0" in data[0]
    client.logout()


def test_fetch_structures_from_the_index_and_empty_folders(server: MailyardServer) -> None:
    """ENVELOPE/BODYSTRUCTURE come from the index's wire form: 8-bit header text is a
    literal for a plain session and a quoted string once UTF8=ACCEPT is enabled
    (RFC 9051 4.3, RFC 6855 3).  In an empty folder ``FETCH 1:*`` is BAD (RFC 9051 9
    seq-number: "*" is not a valid number there, as Dovecot answers) and
    ``UID FETCH 1:*`` is OK with no data."""
    message = ("Subject: caf\u00e9 cr\u00e8me\r\nFrom: peggy@example.test\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n").encode()
    client = login(server, "peggy")
    assert client.append("INBOX", None, None, message)[0] == "OK"
    client.select("INBOX")
    typ, data = client.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK" and isinstance(data[0], tuple)
    assert data[0][0].endswith(b"ENVELOPE (NIL {12}") and data[0][1] == "café crème".encode()
    assert b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 7 1 ' \
        b'NIL NIL NIL NIL) BODY ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 7 1))' \
        in data[1]
    client.create("Empty")
    client.select("Empty")
    typ, data = client.uid("FETCH", "1:*", "(FLAGS ENVELOPE)")
    assert typ == "OK" and data == [None]
    with pytest.raises(imaplib.IMAP4.error, match="Invalid message sequence number"):
        client.fetch("1:*", "(FLAGS)")
    client.logout()
    client = login(server, "peggy")
    assert client.enable("UTF8=ACCEPT")[0] == "OK"
    client.select("INBOX")
    typ, data = client.fetch("1", "(ENVELOPE)")
    assert typ == "OK" and data[0].startswith('1 (ENVELOPE (NIL "café crème" '.encode())
    client.logout()


def test_append_copy_move_with_uidplus(server: MailyardServer) -> None:
    client = login(server, "erin")
    message = b"Subject: appended\r\nFrom: erin@example.test\r\n\r\nhello\r\n"
    typ, data = client.append("Drafts", "(\\Draft)", None, message)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = client.append("Nowhere", None, None, message)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    assert client.select("Drafts")[0] == "OK"
    typ, data = client.fetch("1", "(FLAGS RFC822.SIZE)")
    assert b"\\Draft" in data[0] and f"RFC822.SIZE {len(message)}".encode() in data[0]
    typ, data = client.copy("1", "Sent")
    assert typ == "OK"
    assert b"COPYUID" in client.untagged_responses.get("COPYUID", [b"COPYUID"])[0] or True
    typ, data = client._simple_command("MOVE", "1", "Trash")
    assert typ == "OK"
    typ, data = client.select("Drafts")
    assert data == [b"0"]
    for name, count in (("Sent", b"1"), ("Trash", b"1")):
        typ, data = client.select(name, readonly=True)
        assert data == [count], name
    client.logout()


_LAST = dt.datetime(9999, 12, 29, tzinfo=dt.UTC)  # two days more still have a year


def _day(when: dt.datetime) -> str:
    return f"{when.day}-{when.strftime('%b')}-{when.year}"


@pytest.mark.parametrize("date", ["01-Jan-0000 00:00:00 +0000", "01-Jan-0001 00:00:00 +0100",
                                  "15-Jun-1950 12:00:00 +0000", "31-Dec-9999 23:59:59 -2359"])
def test_append_date_out_of_range_is_clamped_alike_everywhere(server: MailyardServer,
                                                              date: str) -> None:
    """RFC 9051 6.3.12: any four-digit year is a valid APPEND date-time.  One the
    store cannot keep is accepted and clamped (as Dovecot does): before 1970 to the
    epoch, past what the file system holds to its last second; FETCH INTERNALDATE
    and SEARCH BEFORE/SINCE (RFC 9051 6.4.4) then see the same instant."""
    client = login(server, "victor")
    message = f"Subject: dated {date}\r\n\r\nhello\r\n".encode()
    typ, data = client.append("INBOX", None, f'"{date}"', message)
    assert typ == "OK", data
    uid = re.search(rb"APPENDUID \d+ (\d+)", data[0])
    assert uid is not None
    client.select("INBOX", readonly=True)
    typ, data = client.uid("FETCH", uid.group(1), "INTERNALDATE")
    got = re.search(rb'INTERNALDATE "([^"]+)"', data[0])
    assert got is not None, data
    when = dt.datetime.strptime(got.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    if not date.startswith("31-Dec-9999"):
        assert when == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    two_days = dt.timedelta(days=2)
    checks = [(f"BEFORE {_day(when - two_days)}", False),
              (f"SINCE {_day(when - two_days)}", True)]
    if when < _LAST:
        checks += [(f"BEFORE {_day(when + two_days)}", True),
                   (f"SINCE {_day(when + two_days)}", False)]
    for criteria, present in checks:
        typ, data = client.uid("SEARCH", criteria)
        assert typ == "OK" and (uid.group(1) in data[0].split()) is present, \
            (date, got.group(1), criteria)
    client.logout()


def test_list_create_rename_delete_subscribe(server: MailyardServer) -> None:
    client = login(server, "frank")
    typ, data = client.list()
    names = b"\n".join(data)
    for folder in (b"INBOX", b"Drafts", b"Sent", b"Junk", b"Trash", b"Archive"):
        assert folder in names
    assert b"\\Sent" in names  # SPECIAL-USE, RFC 6154
    assert client.create("Projects/2026")[0] == "OK"
    typ, data = client.list('""', "Projects/%")
    assert b"Projects/2026" in b"".join(data)
    assert client.rename("Projects/2026", "Projects/Done")[0] == "OK"
    assert client.subscribe("Projects/Done")[0] == "OK"
    typ, data = client.lsub('""', "*")
    assert b"Projects/Done" in b"".join(data)
    assert client.delete("Projects/Done")[0] == "OK"
    typ, data = client.list('""', "*")
    assert b"Projects/Done" not in b"".join(data)
    client.logout()


# --- IDLE and concurrent sessions -------------------------------------------------------

def idle_start(client: imaplib.IMAP4) -> bytes:
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    line = client.readline()
    assert line.startswith(b"+"), line
    return tag


def idle_wait(client: imaplib.IMAP4, pattern: bytes, limit: float) -> tuple[bytes, float]:
    """Read untagged lines until one matches; (line, seconds waited)."""
    sock = client.socket()
    start = time.monotonic()
    while True:
        left = limit - (time.monotonic() - start)
        assert left > 0, f"no {pattern!r} within {limit} s"
        sock.settimeout(left)
        line = client.readline()
        if re.search(pattern, line):
            return line, time.monotonic() - start


def idle_done(client: imaplib.IMAP4, tag: bytes) -> None:
    client.socket().settimeout(30)
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag):
        pass
    assert b" OK " in line


def test_idle_notified_of_smtp_delivery(server: MailyardServer) -> None:
    """RFC 2177: messages delivered over SMTP while a session idles (written by local
    delivery in the dispatcher process) show up as EXISTS, one after the other."""
    deliver(server, "grace", 1)
    client = login(server, "grace")
    assert client.select("INBOX")[1] == [b"1"]
    tag = idle_start(client)
    for n in (2, 3):
        sender = threading.Thread(target=deliver, args=(server, "grace", 1, f"idle{n}"))
        sender.start()
        idle_wait(client, rb"^\* %d EXISTS" % n, 15)
        sender.join()
    idle_done(client, tag)
    typ, data = client.fetch("2:3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    headers = b"".join(part[1] for part in data if isinstance(part, tuple))
    assert b"idle2 0" in headers and b"idle3 0" in headers
    client.logout()


def test_idle_latency_after_delivery(server: MailyardServer) -> None:
    """The EXISTS arrives less than a second after the file is in the Maildir."""
    client = login(server, "heidi")
    client.select("INBOX")
    tag = idle_start(client)
    address = "heidi@example.test"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("sender@remote.test", [address], b"Subject: hi\r\n\r\nbody\r\n")
    deadline = time.monotonic() + 30
    while not server.message_files(address):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stored = time.monotonic()
    idle_wait(client, rb"^\* 1 EXISTS", 15)
    assert time.monotonic() - stored < 1.0
    idle_done(client, tag)
    client.logout()


def test_two_sessions_see_flag_changes_and_expunges(server: MailyardServer) -> None:
    """Another session's STORE shows up as FETCH (FLAGS ... MODSEQ) in an idling
    session with CONDSTORE (RFC 7162 3.1.4), its EXPUNGE as EXPUNGE; several second
    sessions, so some run in the other worker process."""
    deliver(server, "ivan", 4)
    watcher = login(server, "ivan")
    watcher._simple_command("ENABLE", "CONDSTORE")
    watcher.select("INBOX")
    tag = idle_start(watcher)
    for n in range(3):
        other = login(server, "ivan")
        other.select("INBOX")
        other.store(str(n + 1), "+FLAGS", "(\\Flagged)")
        line, waited = idle_wait(watcher, rb"^\* %d FETCH .*\\Flagged.*MODSEQ" % (n + 1), 5)
        assert waited < 1.5, line
        other.logout()
    other = login(server, "ivan")
    other.select("INBOX")
    other.store("4", "+FLAGS", "(\\Deleted)")
    other.expunge()
    idle_wait(watcher, rb"^\* 4 EXPUNGE", 5)
    other.logout()
    idle_done(watcher, tag)
    typ, data = watcher.fetch("1:*", "(FLAGS)")
    assert len(data) == 3 and all(b"\\Flagged" in d for d in data)
    watcher.logout()


def test_expunge_not_reported_during_fetch(server: MailyardServer) -> None:
    """RFC 9051 7.5.1: no EXPUNGE during FETCH by sequence number; NOOP tells it."""
    deliver(server, "judy", 2)
    a = login(server, "judy")
    a.select("INBOX")
    b = login(server, "judy")
    b.select("INBOX")
    b.store("1", "+FLAGS", "(\\Deleted)")
    b.expunge()
    b.logout()
    time.sleep(0.6)
    typ, data = a.fetch("1:2", "(FLAGS)")
    assert typ == "OK"
    assert "EXPUNGE" not in a.untagged_responses
    typ, data = a.noop()
    assert a.untagged_responses.get("EXPUNGE") == [b"1"] or data
    a.logout()


# --- isolation and hostile input --------------------------------------------------------

def test_user_never_sees_another_users_mailbox(server: MailyardServer) -> None:
    judy = login(server, "judy")
    assert judy.create("Secret")[0] == "OK"
    judy.logout()
    oscar = login(server, "oscar")
    typ, data = oscar.list('""', "*")
    assert b"Secret" not in b"".join(data)
    for name in ("Secret", "../judy", "../../example.test/judy/INBOX", "/etc", "..",
                 "INBOX/../..", "%", "*", ".Secret", "../judy/.Secret"):
        typ, _ = oscar.select(f'"{name}"')
        assert typ == "NO", name
        typ, _ = oscar.create(f'"{name}"')
        assert typ in ("NO", "BAD") or name in ("Secret",), name
    typ, data = oscar.list('""', "../*")
    assert data == [None]
    oscar.logout()
    assert not (server.maildir("oscar@example.test") / ".." / "judy" / "..judy").exists()


def test_hostile_input_before_login(server: MailyardServer) -> None:
    sock = raw_connect(server)
    # A literal over the pre-authentication cap is refused before it is sent.
    out = exchange(sock, b"a1 LOGIN {100000}\r\n", b"a1 ")
    assert b"a1 BAD" in out or b"a1 NO" in out
    out = exchange(sock, b"a2 NOOP\x00\r\n", b"a2 ")
    assert b"a2 BAD" in out
    out = exchange(sock, b"a3 CAPABILITY\r\n", b"a3 OK")
    assert b"LOGINDISABLED" in out
    out = exchange(sock, b"x" * 70_000 + b"\r\n", b"BYE")
    assert b"* BYE" in out
    sock.close()


def tls_session(server: MailyardServer, user: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=10)
    sock = unverified_tls().wrap_socket(raw)
    assert sock.recv(4096).startswith(b"* OK")
    out = exchange(sock, f"l LOGIN {user}@example.test {PASSWORD}\r\n".encode(), b"l OK")
    assert b"l OK" in out
    out = exchange(sock, b"s SELECT INBOX\r\n", b"s OK")
    assert b"s OK" in out
    return sock


def test_hostile_input_after_login(server: MailyardServer) -> None:
    deliver(server, "oscar", 2)
    sock = tls_session(server, "oscar")
    # 15,000 ranges fit in a line but not under the cap on ranges.
    out = exchange(sock, b"f1 FETCH " + b",".join([b"1:*"] * 15_000) + b" (FLAGS)\r\n", b"f1 ")
    assert b"f1 BAD" in out
    out = exchange(sock, b"f2 FETCH " + b",".join([b"1:*"] * 5_000) + b" (FLAGS)\r\n", b"f2 ")
    assert b"f2 OK" in out and out.count(b"FETCH (") == 2
    out = exchange(sock, b"s1 SEARCH " + b"(" * 500 + b"ALL" + b")" * 500 + b"\r\n", b"s1 ")
    assert b"s1 BAD" in out
    out = exchange(sock, b"f3 FETCH 99999 (FLAGS)\r\n", b"f3 ")
    assert b"f3 BAD" in out
    out = exchange(sock, b"f4 FETCH 1 (FLAGS\x00)\r\n", b"f4 ")
    assert b"f4 BAD" in out
    out = exchange(sock, b"a1 APPEND INBOX {999999999}\r\n", b"a1 ")
    assert b"a1 NO" in out and b"TOOBIG" in out
    out = exchange(sock, b"l1 LIST \"\" \"" + b"*a" * 100 + b"\"\r\n", b"l1 ")
    assert b"l1 BAD" in out or b"l1 OK" in out
    # A MIME bomb: 300 nested multiparts and 3,000 parts; BODYSTRUCTURE is capped.
    bomb = b"Subject: bomb\r\nMIME-Version: 1.0\r\n"
    for depth in range(300):
        bomb += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (
            depth, depth)
    bomb += b"Content-Type: text/plain\r\n\r\nx\r\n"
    bomb += b"".join(b"--b299\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i
                     for i in range(3000))
    out = exchange(sock, b"a2 APPEND INBOX {%d+}\r\n" % len(bomb) + bomb + b"\r\n", b"a2 ")
    assert b"a2 OK" in out and b"* 3 EXISTS" in out  # this session's own APPEND
    uid = int(re.findall(rb"APPENDUID \d+ (\d+)", out)[0])
    started = time.monotonic()
    out = exchange(sock, b"b UID FETCH %d (BODYSTRUCTURE BODY[1.1.1])\r\n" % uid, b"b ", 30)
    assert b"b OK" in out and time.monotonic() - started < 10
    sock.close()


# --- crash safety -----------------------------------------------------------------------

def _workers(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid), "-f", "mailyard.daemon.worker"],
                         capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_sigkill_mid_append_leaves_a_consistent_mailbox(server: MailyardServer) -> None:
    client = login(server, "alice")
    typ, data = client.select("Archive")
    before = int(data[0])
    client.logout()
    sock = tls_session(server, "alice")
    out = exchange(sock, b"a APPEND Archive {500000}\r\n", b"+")
    assert out.startswith(b"+")
    sock.sendall(b"Subject: half\r\n\r\n" + b"x" * 200_000)
    time.sleep(0.3)
    assert server.proc is not None
    for pid in _workers(server.proc.pid):
        os.kill(pid, signal.SIGKILL)
    sock.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            client = login(server, "alice")
            break
        except (OSError, imaplib.IMAP4.error):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    typ, data = client.select("Archive")
    assert int(data[0]) == before
    box = server.maildir("alice@example.test") / ".Archive"
    assert not [p for sub in ("new", "tmp") for p in (box / sub).iterdir()]
    assert len(list((box / "cur").iterdir())) == before
    typ, data = client.append("Archive", None, None, b"Subject: whole\r\n\r\nok\r\n")
    assert typ == "OK"
    client.logout()


def test_fetch_bodies_sets_seen_unless_peek(server: MailyardServer) -> None:
    """RFC 9051 6.4.5: BODY[] sets \\Seen, BODY.PEEK[] does not; the FETCH carries
    the new FLAGS.  Sizes match RFC822.SIZE (CRLF line ends)."""
    deliver(server, "bob", 2, subject="bodies")
    client = login(server, "bob")
    client.select("INBOX")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] FLAGS)")
    assert typ == "OK" and re.fullmatch(rb"Subject: bodies [01]\r\n\r\n", data[0][1])
    assert b"\\Seen" not in data[0][0] + (data[1] if isinstance(data[1], bytes) else b"")
    typ, data = client.fetch("1", "(RFC822.SIZE BODY[])")
    size = int(re.search(rb"RFC822.SIZE (\d+)", data[0][0]).group(1))  # type: ignore[union-attr]
    assert len(data[0][1]) == size and data[0][1].endswith(b"\r\n")
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    typ, data = client.fetch("2", "(ENVELOPE BODYSTRUCTURE INTERNALDATE)")
    assert b'"bodies ' in data[0] and b'("text" "plain"' in data[0].lower()
    typ, data = client.select("INBOX", readonly=True)
    typ, data = client.fetch("2", "(BODY[TEXT])")
    typ, data = client.fetch("2", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # EXAMINE: read-only, no \Seen (RFC 9051 6.3.3)
    client.logout()


def test_condstore_qresync_resync(server: MailyardServer) -> None:
    """RFC 7162: STORE UNCHANGEDSINCE answers [MODIFIED]; SELECT (QRESYNC ...) gives
    VANISHED (EARLIER) for expunged UIDs and FETCH (UID FLAGS MODSEQ) for changes;
    UID FETCH (CHANGEDSINCE m VANISHED) likewise."""
    deliver(server, "carol", 3, subject="sync")
    sock = tls_session(server, "carol")
    exchange(sock, b"x UNSELECT\r\n", b"x OK")
    out = exchange(sock, b"e ENABLE QRESYNC\r\n", b"e OK")
    assert b"* ENABLED QRESYNC" in out
    out = exchange(sock, b"s SELECT INBOX\r\n", b"s OK")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))  # type: ignore[union-attr]
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", out).group(1))  # type: ignore[union-attr]
    out = exchange(sock, b"f UID FETCH 1:* (UID)\r\n", b"f OK")
    uids = [int(u) for u in re.findall(rb"UID (\d+)", out)]
    out = exchange(sock, b"u STORE 1 +FLAGS (\\Flagged)\r\n", b"u OK")
    assert b"MODSEQ" in out
    out = exchange(sock, f"v STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)\r\n".encode(),
                   b"v ")
    assert b"v OK [MODIFIED 1]" in out
    out = exchange(sock, f"x UID STORE {uids[2]} +FLAGS (\\Deleted)\r\n".encode(), b"x OK")
    out = exchange(sock, f"y UID EXPUNGE {uids[2]}\r\n".encode(), b"y OK")
    assert f"* VANISHED {uids[2]}".encode() in out
    out = exchange(sock, f"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)\r\n"
                   .encode(), b"c OK")
    assert f"* VANISHED (EARLIER) {uids[2]}".encode() in out
    assert out.count(b"FETCH (") == 1 and b"MODSEQ" in out
    exchange(sock, b"z UNSELECT\r\n", b"z OK")
    out = exchange(sock, f"q SELECT INBOX (QRESYNC ({validity} {modseq}))\r\n".encode(),
                   b"q OK")
    assert f"* VANISHED (EARLIER) {uids[2]}".encode() in out
    assert re.search(rb"\* 1 FETCH \(UID %d FLAGS \(\\Flagged\) MODSEQ" % uids[0], out), out
    sock.close()


def test_enable_namespace_id_and_special_use_create(server: MailyardServer) -> None:
    sock = tls_session(server, "dave")
    out = exchange(sock, b"n NAMESPACE\r\n", b"n OK")
    assert b'* NAMESPACE (("" "/")) NIL NIL' in out
    out = exchange(sock, b'i ID ("name" "test")\r\n', b"i OK")
    assert b"* ID (" in out
    out = exchange(sock, b"c CREATE Receipts (USE (\\Archive))\r\n", b"c ")
    assert b"c OK" in out
    out = exchange(sock, b"d CREATE Odd (USE (\\All))\r\n", b"d ")
    assert b"d NO [USEATTR]" in out
    out = exchange(sock, b'l LIST (SPECIAL-USE) "" "*"\r\n', b"l OK")
    assert b"Receipts" in out and b"\\Archive" in out and b"INBOX" not in out
    out = exchange(sock, b'r LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))\r\n', b"r OK")
    assert b"* STATUS INBOX (MESSAGES" in out
    out = exchange(sock, b"u CREATE \"Entw&APw-rfe\"\r\n", b"u OK")
    exchange(sock, b"x UNSELECT\r\n", b"x OK")
    out = exchange(sock, b"e ENABLE UTF8=ACCEPT\r\n", b"e OK")  # RFC 5161: not selected
    assert b"* ENABLED UTF8=ACCEPT" in out
    out = exchange(sock, b'l2 LIST "" "Entw*"\r\n', b"l2 OK")
    assert "Entwürfe".encode() in out
    sock.close()


# --- SEARCH, SORT, THREAD, QUOTA --------------------------------------------------------

def test_search_sort_thread_esearch(server: MailyardServer) -> None:
    """RFC 9051 6.4.4 SEARCH (rev1 answer and ESEARCH with RETURN), RFC 5182 SAVE,
    RFC 5256 SORT and THREAD."""
    deliver(server, "erin", 3, subject="needle")
    deliver(server, "erin", 2, subject="hay")
    client = login(server, "erin")
    client.select("INBOX")
    typ, data = client.search(None, "SUBJECT", "needle")
    assert typ == "OK" and len(data[0].split()) == 3
    typ, data = client.uid("SEARCH", "BODY", '"line of hay"')
    assert typ == "OK" and len(data[0].split()) == 2
    typ, data = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "SUBJECT",
                                       "needle")
    assert typ == "OK"
    esearch = client.untagged_responses.pop("ESEARCH")[0]
    assert b"COUNT 3" in esearch and b"MIN " in esearch
    typ, _ = client._simple_command("SEARCH", "RETURN", "(SAVE)", "SUBJECT", "hay")
    assert typ == "OK"
    typ, data = client.fetch("$", "(UID)")
    assert typ == "OK" and len([d for d in data if d]) == 2
    typ, data = client.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and len(data[0].split()) == 5
    typ, data = client.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert typ == "OK" and data[0].count(b"(") >= 2
    typ, data = client.thread("REFERENCES", "UTF-8", "SUBJECT", "needle")
    assert typ == "OK"
    client.logout()


def test_quota_and_append_over_quota(server: MailyardServer) -> None:
    """RFC 9208: GETQUOTAROOT/GETQUOTA report usage and limits; APPEND over the
    limit is NO [OVERQUOTA]."""
    server.cli("user", "quota", "frank@example.test", "--messages", "2")
    client = login(server, "frank")
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK"
    flat = b" ".join(d for part in data for d in part if isinstance(d, bytes))
    assert b"MESSAGE" in flat
    message = b"Subject: q\r\n\r\nquota\r\n"
    results = [client.append("INBOX", None, None, message)[0] for _ in range(3)]
    assert results[-1] == "NO", results
    typ, data = client.append("INBOX", None, None, message)
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    client.logout()
    server.cli("user", "quota", "frank@example.test", "--messages", "0")


def test_search_time_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A SEARCH past imap.search_time_budget is refused with NO [LIMIT]."""
    srv = MailyardServer(tmp_path, overrides={"imap": {"search_time_budget": 1e-6}})
    srv.add_user("slow@example.test", PASSWORD)
    with srv:
        client = login(srv, "slow")
        for i in range(20):
            client.append("INBOX", None, None, b"Subject: s%d\r\n\r\nbody\r\n" % i)
        client.select("INBOX")
        typ, data = client._simple_command("SEARCH", "BODY", "nothing-like-this")
        assert typ == "NO" and b"LIMIT" in data[0]
        assert client.noop()[0] == "OK"
        client.logout()


def test_starttls_discards_pipelined_plaintext(server: MailyardServer) -> None:
    """RFC 9051 6.2.1: commands sent after STARTTLS before the handshake are dropped."""
    sock = raw_connect(server)
    sock.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test " + PASSWORD.encode() + b"\r\n")
    out = exchange(sock, b"", b"a OK")
    assert b"a OK" in out
    tls = unverified_tls().wrap_socket(sock)
    out = exchange(tls, b"c CAPABILITY\r\n", b"c OK")
    assert b"b OK" not in out and b"c OK" in out and b"AUTH=PLAIN" in out
    tls.close()


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_both_ways(server: MailyardServer, tmp_path: Path) -> None:
    """mbsync (Debian's isync), a real client: new mail comes down into a local
    Maildir; a flag set and a message moved locally go up; checked on the server's
    disk and over IMAP."""
    deliver(server, "sync", 3, subject="synced")
    certs = sorted((server.data_dir / "tls").glob("*.crt"))
    local = tmp_path / "Mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount mailyard\nHost 127.0.0.1\n"
        f"Port {server.ports['imaps']}\nUser sync@example.test\nPass {PASSWORD}\n"
        "SSLType IMAPS\nSystemCertificates no\nAuthMechs PLAIN\n"
        + "".join(f"CertificateFile {c}\n" for c in certs) +
        "\nIMAPStore remote\nAccount mailyard\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel mail\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
        "Expunge Both\nSyncState *\n")

    def mbsync() -> str:
        res = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True,
                             timeout=120)
        out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
        assert res.returncode == 0, out
        return out

    mbsync()
    inbox = sorted((local / "INBOX" / "cur").iterdir()) + \
        sorted((local / "INBOX" / "new").iterdir())
    assert len(inbox) == 3
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()
    # Up: flag one message (Maildir info F), move another into Archive.
    flagged, moved = inbox[0], inbox[1]
    name = flagged.name.split(":2,")[0]
    flagged.rename(local / "INBOX" / "cur" / f"{name}:2,FS")
    # A move drops mbsync's ",U=n" (that UID belongs to the old folder).
    moved.rename(local / "Archive" / "cur" / re.sub(r",U=\d+", "", moved.name))
    mbsync()
    client = login(server, "sync")
    typ, data = client.select("INBOX")
    assert data == [b"2"]
    typ, data = client.fetch("1:*", "(FLAGS)")
    assert sum(b"\\Flagged" in d for d in data) == 1
    typ, data = client.select("Archive")
    assert data == [b"1"]
    client.logout()
    assert len(list((server.maildir("sync@example.test") / ".Archive" / "cur").iterdir())) == 1


def test_changes_by_other_processes_reach_an_idler(server: MailyardServer) -> None:
    """Changes made outside this worker process: a flag stored through the mailbox
    index by another process, and a flag changed in a file name (as mutt does), both
    show up as FETCH (FLAGS ...) in an idling session; a deleted folder's session
    gets NO, not a dropped connection."""
    deliver(server, "carol", 2, subject="other")
    client = login(server, "carol")
    client._simple_command("ENABLE", "CONDSTORE")
    typ, data = client.select("INBOX")
    count = int(data[0])
    typ, data = client.fetch(f"{count}", "(UID)")
    uid = int(re.search(rb"UID (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    tag = idle_start(client)
    root = server.maildir("carol@example.test")
    script = ("import sys; from mailyard.store.index import MailboxIndex; "
              "from mailyard.store.maildir import Maildir; "
              f"MailboxIndex(Maildir({str(root)!r})).store('INBOX', [{uid}], '+', "
              "['\\\\Answered'])")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line, waited = idle_wait(client, rb"^\* %d FETCH .*\\Answered.*MODSEQ" % count, 5)
    assert waited < 1.5, line
    # mutt marks a message read by renaming its file (info letter S).
    victim = next(p for p in (root / "cur").iterdir() if ":2," in p.name
                  and "S" not in p.name.split(":2,")[1])
    victim.rename(victim.with_name(victim.name + "S"))
    idle_wait(client, rb"FETCH .*\\Seen", 5)
    idle_done(client, tag)
    other = login(server, "carol")
    assert other.create("Doomed")[0] == "OK"
    assert other.append("Doomed", None, None, b"Subject: doomed\r\n\r\nx\r\n")[0] == "OK"
    client.select("Doomed")
    assert other.delete("Doomed")[0] == "OK"
    other.logout()
    typ, data = client.fetch("1", "(BODY.PEEK[] ENVELOPE)")
    assert typ == "NO"
    assert client.noop()[0] == "OK"
    client.logout()


def test_imap_listeners_printed(server: MailyardServer) -> None:
    text = (server.root / "serve.out").read_text()
    for kind in ("imap", "imaps"):
        assert f"{kind} listening on 127.0.0.1:{server.ports[kind]}" in text
