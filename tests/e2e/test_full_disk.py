"""A full disk under every writer a client can reach, against the real ``mailyard
serve`` with its data directory on a small tmpfs (root only): the disk is filled
after the server has started, the operation is refused with the protocol's own
reply, the session stays usable, nothing half-written is left visible, and the same
operation works once the filler is deleted, without loss or duplicates.

IMAP answers ``NO [OVERQUOTA] Not enough disk space`` (as Dovecot does for ENOSPC
and EDQUOT)."""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                       reason="mounting a small tmpfs needs root"),
]

USER, PASSWORD = "alice@example.test", "alice-secret"
DISK_FULL = b"[OVERQUOTA] Not enough disk space"


class Disk:
    """The tmpfs the server's data directory is on, and a file that fills it."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount

    def fill(self) -> None:
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
        self.fill()
        try:
            yield
        finally:
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
