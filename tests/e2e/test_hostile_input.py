"""Hostile and malformed input against the real ``mailyard serve``, over real
sockets: each case is one a fuzzing run found answered wrongly (a traceback in the
log, a 500, a dropped connection).  The server must give the protocol's own error
reply, keep the connection usable where the protocol says so, and log no traceback."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("hostile"), http=True)
    for user in ("alice", "bob"):
        srv.add_user(f"{user}@example.test", "pw")
    with srv:
        yield srv


def no_traceback(server: MailyardServer) -> None:
    out = server.output()
    assert "Traceback" not in out and "Exception in" not in out, out


def imap_login(server: MailyardServer, user: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=30)
    sock = unverified_tls().wrap_socket(raw)
    assert sock.recv(4096).startswith(b"* OK")
    assert b"l OK" in imap(sock, f"l LOGIN {user}@example.test pw")
    return sock


def imap(sock: socket.socket, line: str | bytes) -> bytes:
    """Send one command line; the response up to and including its tagged status."""
    data = line.encode() if isinstance(line, str) else line
    tag = data.split(b" ", 1)[0] + b" "
    sock.sendall(data + b"\r\n")
    out = b""
    while not (out.startswith(tag) or b"\r\n" + tag in out) or not out.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        assert chunk, out
        out += chunk
    return out


def test_imap_mailbox_name_too_long_for_the_disk(server: MailyardServer) -> None:
    """A folder is one directory entry (at most 255 bytes): a longer CREATE is a NO
    [CANNOT] before anything is made, not a SERVERBUG reply that names the server's
    paths after 127 parent folders were created; a RENAME that would make a
    sub-folder's name too long renames nothing."""
    sock = imap_login(server, "alice")
    before = imap(sock, 'l1 LIST "" *')
    out = imap(sock, "c1 CREATE " + "a/" * 500 + "a")
    assert out.startswith(b"c1 NO [CANNOT]") and b"too long" in out, out
    assert b"SERVERBUG" not in out and str(server.data_dir).encode() not in out
    assert imap(sock, 'l2 LIST "" *').replace(b"l2 ", b"l1 ") == before
    assert b"c2 OK" in imap(sock, "c2 CREATE p/" + "c" * 252)
    out = imap(sock, "r1 RENAME p pq")
    assert out.startswith(b"r1 NO [CANNOT]") and b"too long" in out, out
    listing = imap(sock, 'l3 LIST "" p*')
    assert b'"/" p\r\n' in listing and b"pq" not in listing
    assert b"n OK" in imap(sock, "n NOOP")
    sock.close()
    no_traceback(server)


def flood_without_reading(port: int, line: bytes, last: bytes, done: bytes) -> int:
    """Pipeline ``line`` without reading a reply until the server stops taking input
    (no progress for 2 s), or 16 MB went in; then read everything, send ``last``,
    and return how many bytes went in before the stall."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    batch, sent, pending = line * 4096, 0, b""
    progress = time.monotonic()
    while sent < 16 << 20 and time.monotonic() - progress < 2:
        pending = pending or batch
        try:
            n = sock.send(pending)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        sent, pending, progress = sent + n, pending[n:], time.monotonic()
    replies = bytearray()

    def read() -> None:
        while not replies.endswith(done) and (chunk := sock.recv(1 << 20)):
            replies.extend(chunk)

    reader = threading.Thread(target=read)
    sock.settimeout(60)
    reader.start()
    sock.sendall(pending + last)
    reader.join(120)
    sock.close()
    assert replies.endswith(done), bytes(replies[-200:])
    return sent


def test_client_that_never_reads_its_replies(server: MailyardServer) -> None:
    """IMAP and POP3 before login: a client that pipelines commands (up to 16 MB of
    them, each answered with hundreds of bytes) and never reads the replies.  The
    server stops reading once the replies back up, instead of holding them all in
    memory; once the client reads, the session goes on to the last command."""
    sent = flood_without_reading(server.ports["imap"], b"a CAPABILITY\r\n",
                                 b"z NOOP\r\n", b"z OK NOOP completed\r\n")
    assert sent < 8 << 20, sent
    sent = flood_without_reading(server.ports["pop3"], b"CAPA\r\n", b"QUIT\r\n",
                                 b"+OK Bye\r\n")
    assert sent < 8 << 20, sent
    no_traceback(server)


def test_deeply_nested_template_is_a_422(server: MailyardServer) -> None:
    """A template whose expression nests a thousand levels deep is a template
    problem (422), not a RecursionError answered 500 with a traceback; the
    keep-alive connection stays usable."""
    with server.api_client("send") as client:
        for subject in ("{{" * 1000, "{{" + "(" * 300 + "1" + ")" * 300 + "}}"):
            resp = client.put("/api/v1/templates/deep", json={"subject": subject,
                                                               "text": "x"})
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
            assert "nested too deeply" in resp.json()["detail"]
        resp = client.put("/api/v1/templates/deep", json={"subject": "ok", "text": "x"})
        assert resp.status_code == 200, resp.text
    no_traceback(server)


def test_campaign_id_too_big_for_the_store(server: MailyardServer) -> None:
    """A campaign id past SQLite's integer range on the report page and report-link
    paths is a 422 problem (as on the other campaign paths), not an OverflowError
    answered 500 with a traceback; the keep-alive connection stays usable."""
    with server.api_client("campaigns") as client:
        for path in ("/reports/campaigns/99999999999999999999999999",
                     "/api/v1/campaigns/99999999999999999999999999/report-link",
                     "/reports/campaigns/-1"):
            resp = client.get(path)
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
        assert client.get("/reports/campaigns/12345").status_code == 404
    no_traceback(server)


def test_subscribe_json_nested_too_deeply(server: MailyardServer) -> None:
    """The public subscribe form (no API key) with a JSON body nested 100,000 deep: a
    422 problem, not a RecursionError answered 500 and a dropped connection."""
    import httpx

    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"email": ' * 3000 + b"1" + b"}" * 3000):
            resp = client.post("/subscribe/news", content=body, headers={
                "content-type": "application/json", "accept": "application/json"})
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
            assert resp.json()["detail"] == "the body is not JSON"
    no_traceback(server)


def test_contact_attributes_nested_too_deeply(server: MailyardServer) -> None:
    """Contact attributes nesting lists 300 deep were stored, then every answer
    holding the contact (its creation, GET, the contact listing) failed with a 500:
    one call broke the listing for good.  Now a 422 problem, and nothing stored."""
    import json

    deep = json.loads("[" * 300 + "]" * 300)
    with server.api_client("contacts") as client:
        assert client.post("/api/v1/contacts", json={"address": "flat@example.org"}
                           ).status_code == 201
        for resp in (client.post("/api/v1/contacts", json={
                         "address": "deep@example.org", "attributes": {"x": deep}}),
                     client.patch("/api/v1/contacts/flat@example.org",
                                  json={"attributes": {"x": deep}})):
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
            assert "deeper than 32" in resp.json()["detail"]
        listing = client.get("/api/v1/contacts")
        assert listing.status_code == 200, listing.text
        assert [c["address"] for c in listing.json()["items"]] == ["flat@example.org"]
    no_traceback(server)


def test_message_variables_nested_too_deeply(server: MailyardServer) -> None:
    """POST /api/v1/messages with variables nesting lists 300 deep: a 422 problem,
    not a 500 (the request could not be kept as JSON) and a dropped connection."""
    import json

    deep = json.loads("[" * 300 + "]" * 300)
    with server.api_client("send", name="deep-variables") as client:
        for _ in range(2):  # the keep-alive connection stays usable
            resp = client.post("/api/v1/messages", json={
                "from": "alice@example.test", "to": ["bob@example.test"],
                "template": {"subject": "s", "text": "{{ v }}"}, "variables": {"v": deep}})
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
            assert "deeper than 32" in resp.text
    no_traceback(server)


def test_imap_keywords_are_bounded(server: MailyardServer) -> None:
    """A client may not pile keywords on its messages without end (each FETCH FLAGS
    and every SELECT carries them): past 64 characters, 64 per message or 256 per
    mailbox it gets NO [LIMIT] (RFC 9051 7.1) and nothing changes; a full mailbox
    stops offering \\* in PERMANENTFLAGS."""
    sock = imap_login(server, "bob")
    assert b"c OK" in imap(sock, "c CREATE Tags")
    message = b"Subject: k\r\n\r\nk\r\n"

    def append(tag: str, keywords: list[str]) -> bytes:
        line = f"{tag} APPEND Tags ({' '.join(keywords)}) {{{len(message)}}}"
        sock.sendall(line.encode() + b"\r\n")
        out = sock.recv(4096)
        if out.startswith(b"+"):
            sock.sendall(message + b"\r\n")
            out = b""
        while f"{tag} ".encode() not in out or not out.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            assert chunk, out
            out += chunk
        return out

    out = append("a1", [f"k{i}" for i in range(65)])
    assert out.startswith(b"a1 NO [LIMIT]"), out
    out = append("a2", ["x" * 65])
    assert out.startswith(b"a2 NO [LIMIT]"), out
    for n in range(4):
        out = append(f"b{n}", [f"m{n}k{i}" for i in range(64)])
        assert f"b{n} OK".encode() in out, out
    out = imap(sock, "s SELECT Tags")
    assert b"m3k63" in out and b"\\*" not in out.split(b"PERMANENTFLAGS", 1)[1].split(b"]")[0]
    out = imap(sock, "t1 STORE 1 +FLAGS (extra)")
    assert out.startswith(b"t1 NO [LIMIT]") and b"message" in out, out
    out = imap(sock, "t2 STORE 1 FLAGS (new1)")
    assert out.startswith(b"t2 NO [LIMIT]") and b"mailbox" in out, out
    out = imap(sock, "t3 STORE 1 FLAGS (m1k0 \\Seen)")
    assert b"t3 OK" in out, out
    out = imap(sock, "f FETCH 1:2 FLAGS")
    assert b"m0k5" not in out and b"m1k0" in out and b"extra" not in out, out
    sock.close()
    no_traceback(server)
