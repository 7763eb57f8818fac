"""A full disk under every writer a client can reach, against the real ``mailyard
serve`` with its data directory on a small tmpfs (root only): the disk is filled
after the server has started, the operation is refused with the protocol's own
reply, the session stays usable, nothing half-written is left visible, and the same
operation works once the filler is deleted, without loss or duplicates.

IMAP answers ``NO [OVERQUOTA] Not enough disk space`` (as Dovecot does for ENOSPC
and EDQUOT); the HTTP service ``507 insufficient_storage`` with ``Retry-After``; the
CLI one line and exit status 1."""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailyard.bulk.tracking import TokenKind, TokenSigner, TrackingToken, tracking_key
from mailyard.config import load_config
from mailyard.daemon.secret import load_server_secret
from mailyard.services.setup import open_contacts
from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                       reason="mounting a small tmpfs needs root"),
]

USER, PASSWORD = "alice@example.test", "alice-secret"
POP_USER = "bob@example.test"
DISK_FULL = b"[OVERQUOTA] Not enough disk space"


class Disk:
    """The tmpfs the server's data directory is on, and a file that fills it."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount

    def fill(self) -> None:
        """Fill what is free now (a failed write may have freed some meanwhile)."""
        for name, chunk in (("filler", 1 << 16), ("filler-tail", 512)):
            with contextlib.suppress(OSError), open(self.mount / name, "ab") as f:
                while True:
                    f.write(b"\0" * chunk)
                    f.flush()

    def free(self) -> None:
        for name in ("filler", "filler-tail"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.mount / name)

    @contextlib.contextmanager
    def full(self) -> Iterator[None]:
        """Full, and kept full: space the server frees meanwhile (a queue file
        delivered, a checkpointed WAL) is taken again within milliseconds."""
        self.fill()
        stop = threading.Event()

        def keep_full() -> None:
            while not stop.wait(0.005):
                self.fill()

        filler = threading.Thread(target=keep_full, daemon=True)
        filler.start()
        try:
            yield
        finally:
            stop.set()
            filler.join()
            self.free()


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Disk]:
    small = tmp_path_factory.mktemp("fulldisk") / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("tmpfs mount not permitted here")
    try:
        yield Disk(small)
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


@pytest.fixture(scope="module")
def server(disk: Disk) -> Iterator[MailyardServer]:
    logs = disk.mount.parent
    srv = MailyardServer(disk.mount / "srv", http=True,
                         overrides={"smtpd": {"min_free_disk": 0},
                                    "log": {"file": str(logs / "mailyard.log")}})
    srv.add_user(USER, PASSWORD)
    srv.add_user(POP_USER, PASSWORD)
    with srv:
        yield srv


def imap(server: MailyardServer) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                               timeout=30)
    client.login(USER, PASSWORD)
    return client


def subjects(client: imaplib.IMAP4_SSL, folder: str) -> list[bytes]:
    typ, count = client.select(folder)
    assert typ == "OK"
    if count == [b"0"]:
        return []
    typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return sorted(item[1].strip() for item in data if isinstance(item, tuple))


def test_imap_writes_refused_with_overquota_then_work(disk: Disk,
                                                      server: MailyardServer) -> None:
    client = imap(server)
    try:
        assert client.append("INBOX", None, None, b"Subject: one\r\n\r\nbody\r\n")[0] == "OK"
        client.select("INBOX")
        with disk.full():
            big = b"Subject: big\r\n\r\n" + b"y" * 200_000 + b"\r\n"
            for label, command in [
                ("APPEND big", lambda: client.append("INBOX", None, None, big)),
                ("APPEND", lambda: client.append("INBOX", None, None,
                                                 b"Subject: two\r\n\r\nbody\r\n")),
                ("CREATE", lambda: client.create("Projects")),
                ("STORE", lambda: client.store("1", "+FLAGS", "\\Flagged")),
                ("COPY", lambda: client.copy("1", "Trash")),
                ("MOVE", lambda: client._simple_command("MOVE", "1", "Archive")),
            ]:
                disk.fill()
                typ, data = command()
                assert (typ, data[-1]) == ("NO", DISK_FULL), label
                assert b"SERVERBUG" not in data[-1] and b"/" not in data[-1]
            assert client.noop()[0] == "OK"  # the session is still usable
        # Nothing of the refused commands is visible, in this session or a new one.
        other = imap(server)
        try:
            assert subjects(other, "INBOX") == [b"Subject: one"]
            assert subjects(other, "Trash") == [] and subjects(other, "Archive") == []
            assert b"Projects" not in b"".join(other.list()[1])
            other.select("INBOX")
            assert b"\\Flagged" not in other.fetch("1", "FLAGS")[1][0]
        finally:
            other.logout()
        # The same commands work once the space is back, each once.
        client.select("INBOX")
        assert client.append("INBOX", None, None, b"Subject: two\r\n\r\nbody\r\n")[0] == "OK"
        assert client.create("Projects")[0] == "OK"
        assert client.store("1", "+FLAGS", "\\Flagged")[0] == "OK"
        assert client.copy("1", "Trash")[0] == "OK"
        assert client._simple_command("MOVE", "2", "Archive")[0] == "OK"
        assert subjects(client, "INBOX") == [b"Subject: one"]
        assert subjects(client, "Trash") == [b"Subject: one"]
        assert subjects(client, "Archive") == [b"Subject: two"]
    finally:
        client.logout()


def pop3(server: MailyardServer) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=unverified_tls(),
                             timeout=30)
    client.user(POP_USER)
    client.pass_(PASSWORD)
    return client


def test_pop3_dele_and_quit_on_a_full_disk_lose_nothing(disk: Disk,
                                                        server: MailyardServer) -> None:
    """RFC 1939 6: the UPDATE state removes files, which needs no space; the other
    messages stay, and a login on the full disk works."""
    box = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=unverified_tls(),
                            timeout=30)
    box.login(POP_USER, PASSWORD)
    for n in (1, 2, 3):
        assert box.append("INBOX", None, None, f"Subject: p{n}\r\n\r\nx\r\n".encode()
                          )[0] == "OK"
    box.logout()
    with disk.full():
        client_pop = pop3(server)
        assert client_pop.stat()[0] == 3
        assert client_pop.dele(1).startswith(b"+OK")
        reply = client_pop.quit()
        assert reply.startswith(b"+OK"), reply
        again = pop3(server)  # a login with the disk still full
        assert again.stat()[0] == 2
        again.quit()
    again = pop3(server)
    try:
        bodies = [b"\n".join(again.retr(i)[1]) for i in (1, 2)]
    finally:
        again.quit()
    assert [b"Subject: p2" in bodies[0], b"Subject: p3" in bodies[1]] == [True, True]


def problem(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["type"] == "urn:mailyard:problem:insufficient_storage"
    assert body["status"] == 507
    return dict(body)


def test_http_writes_answer_507_then_work_once(disk: Disk, server: MailyardServer) -> None:
    with server.api_client("admin") as api:
        assert api.post("/api/v1/lists", json={"name": "news", "title": "News",
                                               "opt_in": "single"}).status_code == 201
        assert api.post("/api/v1/lists/news/import?status=confirmed",
                        content=b"address\nreader@example.net\n",
                        headers={"content-type": "text/csv"}).status_code == 200
        campaign = api.post("/api/v1/campaigns", json={"name": "c1", "lists": ["news"]}).json()
        contact = open_contacts(load_config(server.config_path)).store.get_contact(
            "reader@example.net")
        assert contact is not None
        signer = TokenSigner(tracking_key(load_server_secret(server.data_dir)))
        token = signer.encode(TrackingToken(TokenKind.UNSUBSCRIBE, campaign["id"],
                                            contact.id))
        message = {"from": USER, "to": ["someone@example.net"], "subject": "hi",
                   "text": "hello"}
        once = {"Idempotency-Key": "order-1"}
        public = httpx.Client(base_url=server.http_url, timeout=60)
        requests = [
            lambda: api.post("/api/v1/contacts", json={"address": "new@example.net"}),
            lambda: api.post("/api/v1/lists/news/import", content=b"address\nin@example.net\n",
                             headers={"content-type": "text/csv"}),
            lambda: public.post("/subscribe/news", json={"email": "sub@example.net"}),
            lambda: public.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}),
            lambda: api.post("/api/v1/messages", json=message, headers=once),
        ]
        with public:
            with disk.full():
                for send in requests:
                    disk.fill()
                    problem(send())
            members = api.get("/api/v1/lists/news").json()["members"]
            assert members["confirmed"] == 1 and members["unsubscribed"] == 0
            assert api.get("/api/v1/contacts/new@example.net").status_code == 404
            answers = [send() for send in requests]
        assert [a.status_code for a in answers] == [201, 200, 202, 200, 202], [
            a.text for a in answers]
        assert answers[3].json()["lists"] == ["news"]
        replay = api.post("/api/v1/messages", json=message, headers=once)
        assert replay.status_code == 202
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json()["id"] == answers[4].json()["id"]


def test_cli_writes_fail_in_one_line_then_work(disk: Disk, server: MailyardServer,
                                               tmp_path: Path) -> None:
    rows = tmp_path / "contacts.csv"
    rows.write_bytes(b"address\ncli@example.net\n")
    commands = [
        (("user", "add", "carol@example.test", "--password-stdin"), b"carol-secret\n"),
        (("contact", "import", "--list", "cli", str(rows)), None),
        (("send", "--from", USER, "--to", "someone@example.net", "--subject", "hi"),
         b"hello\n"),
    ]
    server.cli("list", "create", "cli")
    with disk.full():
        for args, stdin in commands:
            disk.fill()
            res = server.cli(*args, input=stdin, check=False)
            err = res.stderr.decode()
            assert res.returncode == 1, (args, err)
            assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
            assert re.search(r"disk full|not enough disk space", err.splitlines()[-1]), err
    for args, stdin in commands:
        res = server.cli(*args, input=stdin, check=False)
        assert res.returncode == 0, (args, res.stderr.decode())
