"""End to end: user changes made with the CLI while the server runs take effect at
once in every worker and in the dispatcher, without a restart.

The workers open a directory connection per thread (event loop, password checks) and
the dispatcher one per delivery thread; a CLI command that writes and exits must not
take the WAL away from them (the command would do so if the server's processes had
dropped their own locks on the database)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


def _login(server: MailyardServer, user: str, password: str, implicit_tls: bool) -> int:
    """AUTH PLAIN over 465 or 587+STARTTLS; the reply code (235, 535, ...).  On success
    the user also sends MAIL FROM its own address, which must be accepted."""
    if implicit_tls:
        s: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"],
                                           timeout=10, context=unverified_tls())
    else:
        s = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    with s:
        s.ehlo("laptop.test")
        if not implicit_tls:
            s.starttls(context=unverified_tls())
            s.ehlo("laptop.test")
        try:
            s.user, s.password = user, password
            s.auth("PLAIN", s.auth_plain)  # one try (login() would retry with LOGIN)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        code, _ = s.mail(user)
        assert code == 250
        return 235


def _rcpt(server: MailyardServer, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("someone@remote.test")
        code, _ = s.rcpt(address)
        return code


def _send(server: MailyardServer, to: str, subject: str) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "someone@remote.test", to, subject
    m.set_content("hello\n")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(m)


def test_cli_password_change_and_deletion_apply_to_the_running_server(tmp_path):
    # Every login here comes from 127.0.0.1 and fails on purpose 12 times: the AUTH
    # guard's per-address counter (never cleared by a success) would delay each later
    # try by up to auth_failure_delay_max and lock 127.0.0.1 out at the 10th failure.
    # That guard has its own tests; here it only counts per user name, with its
    # default limit of 5: alice's correct password clears her counter after each
    # refused old one, and the deleted bob fails 4 times, so every refusal below is
    # the directory's answer, 535, never the guard's 421.
    guard = {"auth_max_failures_per_ip": 0, "auth_failure_delay": 0.0,
             "auth_failure_delay_max": 0.0}
    server = MailyardServer(tmp_path, workers=2, overrides={"smtpd": guard})
    server.add_user("alice@example.test", "alice-old-pw")
    server.add_user("bob@example.test", "bob-pw")
    with server:
        # Use the accounts: both workers open connections in their event loop and
        # in their password-check threads, the dispatcher in its delivery threads.
        for i in range(6):
            assert _login(server, "alice@example.test", "alice-old-pw", i % 2 == 0) == 235
            assert _login(server, "bob@example.test", "bob-pw", i % 2 == 1) == 235
            assert _rcpt(server, "bob@example.test") == 250
        for i in range(3):
            _send(server, "alice@example.test", f"before {i}")
            _send(server, "bob@example.test", f"before {i}")
        assert len(server.wait_for_messages("bob@example.test", 3)) == 3

        wal = server.data_dir / "directory.db-wal"
        shm = server.data_dir / "directory.db-shm"

        # Each change is checked on both workers (several tries, two ports), then the
        # accounts are used again before the next change.
        server.cli("user", "passwd", "alice@example.test", "--password-stdin",
                   input=b"alice-new-pw\n")
        for i in range(4):
            tls = i % 2 == 0
            assert _login(server, "alice@example.test", "alice-old-pw", tls) == 535
            assert _login(server, "alice@example.test", "alice-new-pw", tls) == 235
            assert _login(server, "bob@example.test", "bob-pw", tls) == 235

        server.add_user("carol@example.test", "carol-pw")
        for i in range(4):
            tls = i % 2 == 0
            assert _login(server, "carol@example.test", "carol-pw", tls) == 235
            assert _rcpt(server, "carol@example.test") == 250
            assert _rcpt(server, "bob@example.test") == 250

        server.cli("user", "delete", "bob@example.test")
        for i in range(4):
            tls = i % 2 == 0
            assert _login(server, "bob@example.test", "bob-pw", tls) == 535
            assert _rcpt(server, "bob@example.test") == 550
            assert _login(server, "alice@example.test", "alice-old-pw", tls) == 535
            assert _login(server, "alice@example.test", "alice-new-pw", tls) == 235
            assert _rcpt(server, "carol@example.test") == 250

        # The dispatcher sees the new user too (it would bounce the mail otherwise).
        for i in range(3):
            _send(server, "carol@example.test", f"after {i}")
        assert len(server.wait_for_messages("carol@example.test", 3)) == 3
        assert wal.exists() and shm.exists()
    log = (tmp_path / "mailyard.log").read_text(errors="replace")
    assert "malformed" not in log
    assert "password check failed" not in log
