"""End to end: untrusted input from clients, local users and the spool itself.

* an AUTH user name with CR/LF and ESC is logged as one escaped line;
* crafted files in ``queue/msg`` (wrong field types, a FIFO, a symbolic link) are
  quarantined at start-up and the valid messages are delivered;
* ``mailyard sendmail`` run by an unprivileged user (nobody) reaches a local mailbox
  through the maildrop, named "from user nobody", without any access to the queue.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import pkgutil
import shutil
import smtplib
import stat
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.1)


def test_auth_user_name_with_crlf_and_escape_is_logged_as_one_line(tmp_path):
    with MailyardServer(tmp_path / "srv") as server:
        forged = "x\r\n2026-12-01T03:30:00\terror\tmailyard.supervisor:\tforged\x1b]0;PWNED\x07"
        with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=15,
                              context=unverified_tls()) as client:
            client.ehlo("client.test")
            token = base64.b64encode(f"\0{forged}\0wrong-password".encode()).decode()
            code, _ = client.docmd("AUTH", f"PLAIN {token}")
            assert code == 535
        log = wait_for_text(tmp_path / "srv" / "mailyard.log", "mechanism=PLAIN")
    lines = [line for line in log.split("\n") if "smtp auth" in line]
    assert len(lines) == 1, log
    assert ('user="x\\r\\n2026-12-01T03:30:00\\terror\\tmailyard.supervisor:\\tforged'
            '\\u001b]0;PWNED\\u0007"') in lines[0]
    assert "\r" not in log and "\x1b" not in log and "\x07" not in log
    assert not any(line.startswith("2026-12-01T03:30:00") for line in log.split("\n"))


def _crafted_record(path: Path, envelope: object) -> None:
    from mailyard.queue.record import HEADER, MAGIC, VERSION, encode_trailer

    content = b"Subject: crafted\r\n\r\nx\r\n"
    meta = json.dumps({"qid": path.name, "created": 1.0, "envelope": envelope}).encode()
    path.write_bytes(HEADER.pack(MAGIC, VERSION, 0, 0, len(meta), zlib.crc32(meta)) + meta
                     + content + encode_trailer(len(content), zlib.crc32(content)))


def test_serve_starts_and_delivers_with_crafted_files_in_the_queue(tmp_path):
    from mailyard.queue.identity import QueueIdGenerator

    server = MailyardServer(tmp_path / "srv")
    server.add_user("alice@example.test", "alice-secret-1")
    for n in range(2):  # valid mail, queued while the server is down
        server.cli("sendmail", "-i", "-f", "root@example.test", "alice@example.test",
                   input=f"Subject: valid {n}\n\nbody\n".encode())
    msg = server.data_dir / "queue" / "msg"
    ids = QueueIdGenerator()
    wrong = ids.next()
    _crafted_record(msg / wrong, {"sender": "a@example.test", "recipients": [
        {"address": "alice@example.test", "dsn": "x"}]})
    fifo = ids.next()
    os.mkfifo(msg / fifo)
    link = ids.next()
    os.symlink("/etc/passwd", msg / link)
    with server:
        delivered = server.wait_for_messages("alice@example.test", 2)
        assert sorted(m.split(b"Subject: ")[1][:7] for m in delivered) == [b"valid 0",
                                                                            b"valid 1"]
        log = wait_for_text(server.root / "mailyard.log", "queue swept")
    assert sorted(os.listdir(server.data_dir / "queue" / "corrupt")) == sorted(
        [wrong, fifo, link])
    assert log.count("queue file quarantined") == 3


def _run_as_nobody(config: Path, args: list[str], stdin: bytes) -> tuple[int, bytes]:
    """Run the CLI in a forked child that has dropped to uid/gid 65534 (nobody).  The
    interpreter here may live where nobody cannot read (under /root), so everything the
    command could import lazily is imported before the fork: every Mailyard module, and
    with them the standard and third-party modules they import (grp and pwd for the
    identity checks, argon2 for the directory...)."""
    import mailyard
    import mailyard.cli.main

    for module in pkgutil.walk_packages(mailyard.__path__, "mailyard."):
        importlib.import_module(module.name)

    in_r, in_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.close(in_w)  # or stdin never ends
            os.close(err_r)
            os.dup2(in_r, 0)
            os.dup2(err_w, 2)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 - pytest replaced them
            sys.stdout = sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.environ["LOGNAME"] = os.environ["USER"] = "root"  # must be ignored
            code = mailyard.cli.main.main(["--config", str(config), *args])
        except BaseException:  # noqa: BLE001 - the child reports everything, then exits
            os.write(2, traceback.format_exc().encode())
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(in_r)
    os.close(err_w)
    os.write(in_w, stdin)
    os.close(in_w)
    _, status = os.waitpid(pid, 0)
    err = b""
    while chunk := os.read(err_r, 65536):
        err += chunk
    os.close(err_r)
    return os.waitstatus_to_exitcode(status), err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as nobody")
def test_sendmail_as_an_unprivileged_user_goes_through_the_maildrop():
    root = Path(tempfile.mkdtemp(prefix="mailyard-maildrop-", dir="/tmp"))
    try:
        _maildrop_scenario(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _maildrop_scenario(root: Path) -> None:
    os.chmod(root, 0o755)  # nobody must reach the config file and the data directory
    server = MailyardServer(root / "srv")
    os.chmod(server.root, 0o755)
    os.chmod(server.config_path, 0o644)
    server.add_user("alice@example.test", "alice-secret-1")
    os.chmod(server.data_dir, 0o700)
    with server:
        data_mode = stat.S_IMODE(os.stat(server.data_dir).st_mode)
        assert data_mode & 0o077 == 0o011, oct(data_mode)  # passable, never listable
        drop = server.data_dir / "maildrop"
        assert stat.S_IMODE(os.stat(drop).st_mode) == 0o1733
        assert stat.S_IMODE(os.stat(server.data_dir / "pickup").st_mode) == 0o700
        code, err = _run_as_nobody(server.config_path, ["sendmail", "-t"],
                                   b"To: alice@example.test\nSubject: from nobody\n\nhi\n")
        assert code == 0, err
        assert b"queued for pickup" in err
        msgs = server.wait_for_messages("alice@example.test", 1)
        assert len(msgs) == 1, server.output()
        assert b"Subject: from nobody" in msgs[0]
        assert b"(Mailyard, from user nobody);" in msgs[0]
        # The default sender is USER@domain only when that address has a mailbox (so
        # that bounces reach it), else postmaster@ (cli/send.py default_sender).
        assert b"From: postmaster@example.test" in msgs[0]
        assert b"root@example.test" not in msgs[0]
        assert b"from user root" not in msgs[0]
        # A drop file that is not a message is refused and kept, not delivered.
        code, err = _run_as_nobody(server.config_path, ["sendmail", "-t"],
                                   b"To: x@remote.org)<alice@example.test>\n\nhi\n")
        assert code == 1 and b"ambiguous" in err
        (drop / "junk").write_bytes(b"not a drop file")
        log = wait_for_text(server.root / "mailyard.log", "maildrop file refused")
        assert "maildrop file refused" in log
        assert os.listdir(drop) == []
        assert os.listdir(server.data_dir / "pickup" / "bad") == ["junk"]
        # The queue itself stayed closed to other users.
        for sub in ("msg", "tmp"):
            st = os.stat(server.data_dir / "queue" / sub)
            assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
