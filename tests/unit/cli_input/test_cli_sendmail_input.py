"""``mailyard send`` / ``mailyard sendmail``: caller-supplied text cannot inject header
fields, the submitter's name comes from the password database, ``-t`` refuses
ambiguous address lists, and bad input gives a one-line error, never a traceback."""

from __future__ import annotations

import io
import os
import pwd
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.cli.send import local_user
from mailyard.queue.spool import FileSpool


class Cli:
    def __init__(self, tmp_path: Path, capsys, monkeypatch) -> None:
        self.data = tmp_path / "data"
        self.config = tmp_path / "mailyard.toml"
        self.config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{self.data}"\n'
                               'local_domains = ["example.test"]\n')
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str]:
        stream = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        self.monkeypatch.setattr("sys.stdin", stream)
        code = main(["--config", str(self.config), *args])
        return code, self.capsys.readouterr().err

    def queued(self) -> list[tuple[object, bytes]]:
        spool = FileSpool(self.data / "queue", "mx.example.test")
        try:
            out = []
            for entry in spool.list():
                with spool.open_content(entry.qid) as f:
                    out.append((entry, f.read()))
            return out
        finally:
            spool.close()


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


def one_line(err: str) -> None:
    assert err.startswith("mailyard: ") and err.count("\n") == 1 and "Traceback" not in err


def test_full_name_with_crlf_is_refused(cli: Cli) -> None:
    code, err = cli("sendmail", "-F", "Eve\r\nBcc: bob@example.test\r\nX-Injected: yes",
                    "alice@example.test", stdin=b"Subject: t\n\nbody\n")
    assert code == 2
    one_line(err)
    assert cli.queued() == []


def test_non_ascii_full_name_is_rfc2047_encoded(cli: Cli) -> None:
    code, err = cli("sendmail", "-F", "Ève \"the\" Q.", "-f", "eve@example.test",
                    "alice@example.test", stdin=b"Subject: t\n\nbody\n")
    assert code == 0, err
    [(_, content)] = cli.queued()
    assert b"From: =?utf-8?b?w4h2ZSAidGhlIiBRLg==?= <eve@example.test>\r\n" in content


def test_non_ascii_sender_and_name_are_queued_as_smtputf8(cli: Cli) -> None:
    code, err = cli("sendmail", "-F", "Ëve", "-f", "ë@example.test", "alice@example.test",
                    stdin=b"Subject: t\n\nbody\n")
    assert code == 0, err
    [(entry, content)] = cli.queued()
    assert entry.envelope.sender == "ë@example.test" and entry.envelope.smtputf8
    assert 'From: "Ëve" <ë@example.test>\r\n'.encode() in content


def test_subject_with_crlf_is_a_usage_error(cli: Cli) -> None:
    code, err = cli("send", "--subject", "a\r\nBcc: x@remote.test", "--to",
                    "alice@example.test", stdin=b"body\n")
    assert code == 2
    one_line(err)
    assert cli.queued() == []


def test_send_with_crlf_in_an_address_is_a_usage_error(cli: Cli) -> None:
    code, err = cli("send", "--from", "a@example.test\r\nX: y", "--to", "alice@example.test",
                    stdin=b"body\n")
    assert code == 2
    one_line(err)
    assert "\\x0d\\x0a" in err


def test_submitter_name_ignores_logname_and_user(cli: Cli, monkeypatch) -> None:
    monkeypatch.setenv("LOGNAME", "mallory\r\nX-Injected-By-LOGNAME: yes")
    monkeypatch.setenv("USER", "mallory")
    code, err = cli("sendmail", "alice@example.test", stdin=b"Subject: t\n\nbody\n")
    assert code == 0, err
    [(entry, content)] = cli.queued()
    me = pwd.getpwuid(os.getuid()).pw_name
    assert entry.envelope.auth_user == me
    assert entry.envelope.sender in (f"{me}@example.test", "postmaster@example.test")
    assert f"(Mailyard, from user {me});\r\n".encode() in content
    assert b"mallory" not in content


def test_local_user_falls_back_to_the_uid() -> None:
    unused = next(uid for uid in range(54321, 64000) if not _has_pw(uid))
    assert local_user(unused) == str(unused)
    assert local_user(0) == "root"


def _has_pw(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_sendmail_t_refuses_cve_2023_27043_address(cli: Cli) -> None:
    """email.utils.getaddresses reads 'x@remote.org)<alice@example.test>' as
    x@remote.org; the strict RFC 5322 parser finds it invalid, so nothing is queued."""
    code, err = cli("sendmail", "-t", stdin=b"Subject: t\nTo: bob@example.test\n"
                                           b"Cc: x@remote.org)<alice@example.test>\n\nbody\n")
    assert code == 1
    one_line(err)
    assert "x@remote.org)<alice@example.test>" in err
    assert cli.queued() == []


def test_sendmail_t_takes_well_formed_lists(cli: Cli) -> None:
    head = (b'To: "Doe, Ann" <ann@example.test>,\n bob@example.test\n'
            b"Cc: Team: carol@example.test;\nBcc: undisclosed-recipients:;\n"
            b"Resent-To: dave@example.test (Dave)\nSubject: t\n\nbody\n")
    code, err = cli("sendmail", "-t", stdin=head)
    assert code == 0, err
    [(entry, _)] = cli.queued()
    assert [r.address for r in entry.recipients] == [
        "ann@example.test", "bob@example.test", "carol@example.test", "dave@example.test"]


@pytest.mark.parametrize("field", [b"To: alice", b"To: a@example.test (unclosed",
                                   b"To: <a@example.test> junk"])
def test_sendmail_t_refuses_invalid_lists(cli: Cli, field: bytes) -> None:
    code, err = cli("sendmail", "-t", stdin=field + b"\nSubject: t\n\nbody\n")
    assert code == 1
    one_line(err)
    assert cli.queued() == []
