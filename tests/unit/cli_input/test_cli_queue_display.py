"""``mailyard queue list|show`` never put a raw control character from the network on
the operator's terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.cli.terminal import printable
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.spool import FileSpool

HELO = "evil\x1b]0;PWNED\x07.example"


@pytest.fixture
def queued(tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "data"
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
                      'local_domains = ["example.test"]\n')
    env = Envelope("eve\x9b2J@remote.test", (Recipient("alice@example.test"),),
                   client_ip="192.0.2.7", client_helo=HELO, auth_user="m\r\nallory",
                   received_at=1_700_000_000.0)
    spool = FileSpool(data / "queue", "mx.example.test")
    try:
        qid = asyncio.run(spool.enqueue(env, b"X-Esc: \x1b[31mred\x1b[0m\r\nSubject: s\r\n"
                                             b"\r\nbody\r\n"))
    finally:
        spool.close()
    return config, qid


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--config", str(config), *args]) == 0
    return capsys.readouterr().out


def assert_no_controls(out: str) -> None:
    bad = [c for c in out if (ord(c) < 0x20 and c not in "\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, bad


def test_queue_show_escapes_helo_headers_and_names(queued, capsys) -> None:
    config, qid = queued
    out = run(config, capsys, "queue", "show", qid, "--headers")
    assert_no_controls(out)
    assert "Client:      helo=evil\\x1b]0;PWNED\\x07.example ip=192.0.2.7" in out
    assert "X-Esc: \\x1b[31mred\\x1b[0m" in out
    assert "Submitted by: m\\x0d\\x0aallory" in out
    assert "<eve\\x9b2J@remote.test>" in out


def test_queue_list_escapes_sender(queued, capsys) -> None:
    config, _ = queued
    out = run(config, capsys, "queue", "list")
    assert_no_controls(out)
    assert "<eve\\x9b2J@remote.test>" in out


def test_printable_keeps_text_and_tab() -> None:
    assert printable("Subject: héllo\tworld") == "Subject: héllo\tworld"
    assert printable("a\x00b\x7fc\u2028") == "a\\x00b\\x7fc\\u2028"
    assert printable("\udcff") == "\\udcff"
