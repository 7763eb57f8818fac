"""End to end: sending limits of regular users over real SMTP submission, the CLI
and ``mailyard send``.

A user at its hourly message limit gets ``451 4.7.0`` at MAIL; one at its recipient
limit at the RCPT that would go over it; refused transactions do not count; the
counts are in ``sending.db`` and survive a restart of the server; ``mailyard user
limits`` shows and sets them while the server runs."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MailyardServer(tmp_path_factory.mktemp("limits"),
                         overrides={"sending": {"user_messages_per_hour": 2,
                                                "user_recipients_per_hour": 4}})
    for user in ("alice", "bob", "carol"):
        srv.add_user(f"{user}@example.test", "secret")
    with srv:
        yield srv


def _login(server: MailyardServer, user: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=15)
    s.ehlo("laptop.test")
    s.starttls(context=unverified_tls())
    s.ehlo("laptop.test")
    s.login(user, "secret")
    return s


def _send(s: smtplib.SMTP, sender: str, rcpts: list[str],
          data: bool = True) -> list[tuple[int, bytes]]:
    """MAIL, the RCPTs, and DATA when one was taken: every reply in order."""
    out = [s.mail(sender)]
    if out[0][0] != 250:
        return out
    out += [s.rcpt(r) for r in rcpts]
    if data and any(code == 250 for code, _ in out[1:]):
        out.append(s.data(b"Subject: hi\r\n\r\nhello\r\n"))
    else:
        s.rset()
    return out


def _limits(server: MailyardServer, user: str, *args: str) -> dict:
    return json.loads(server.cli("user", "limits", user, *args, "--json").stdout)


def test_hourly_message_limit_refused_at_mail_and_kept_across_restart(server):
    with _login(server, "alice@example.test") as s:
        for _ in range(2):
            assert _send(s, "alice@example.test", ["bob@example.test"])[-1][0] == 250
        code, text = s.mail("alice@example.test")
        assert code == 451 and text.startswith(b"4.7.0 Sending limit reached")
        assert b"2 messages per hour for user alice@example.test" in text
        assert b"try again in" in text
    got = _limits(server, "alice@example.test")
    assert got["messages_per_hour"] == {"usage": 2, "limit": 2, "source": "default"}
    assert got["recipients_per_hour"]["usage"] == 2
    # Another user of the same domain is not limited by alice's use.
    with _login(server, "carol@example.test") as s:
        assert _send(s, "carol@example.test", ["bob@example.test"])[-1][0] == 250

    server.stop()
    server.start()
    with _login(server, "alice@example.test") as s:
        code, text = s.mail("alice@example.test")
        assert (code, text[:5]) == (451, b"4.7.0")
    # Raised for alice alone, while the server runs: taken at the next MAIL.
    got = _limits(server, "alice@example.test", "--messages-per-hour", "3")
    assert got["messages_per_hour"] == {"usage": 2, "limit": 3, "source": "user"}
    with _login(server, "alice@example.test") as s:
        assert _send(s, "alice@example.test", ["bob@example.test"])[-1][0] == 250
        assert s.mail("alice@example.test")[0] == 451


def test_recipient_limit_refused_at_rcpt_and_refusals_do_not_count(server):
    with _login(server, "bob@example.test") as s:
        # A transaction abandoned after its RCPTs is not counted.
        replies = _send(s, "bob@example.test", [f"r{i}@remote.test" for i in range(5)],
                        data=False)
        assert [c for c, _ in replies] == [250, 250, 250, 250, 250, 451]
        assert replies[5][1].startswith(b"4.7.0 Sending limit reached (4 recipients per hour")
    got = _limits(server, "bob@example.test")
    assert got["messages_per_hour"]["usage"] == 0
    assert got["recipients_per_hour"]["usage"] == 0
    with _login(server, "bob@example.test") as s:
        replies = _send(s, "bob@example.test",
                        ["alice@example.test", "carol@example.test", "bob@example.test",
                         "alice@example.test", "carol@example.test"])
        assert [c for c, _ in replies] == [250, 250, 250, 250, 250, 451, 250]
    got = _limits(server, "bob@example.test")
    assert got["messages_per_hour"]["usage"] == 1
    assert got["recipients_per_hour"]["usage"] == 4


def test_local_send_refused_with_one_line(server):
    server.cli("user", "limits", "carol@example.test", "--messages-per-day", "1")
    res = server.cli("send", "--from", "carol@example.test", "--to", "bob@example.test",
                     "--subject", "local", input=b"body\n", check=False)
    assert res.returncode != 0
    err = res.stderr.decode().strip()
    assert err.count("\n") == 0 and "Sending limit reached (1 messages per 24 hours" in err
    shown = server.cli("user", "limits", "carol@example.test").stdout.decode()
    assert "messages per day" in shown and "user" in shown
    bad = server.cli("user", "limits", "nobody@example.test", check=False)
    assert bad.returncode == 1 and b"nobody@example.test" in bad.stderr
