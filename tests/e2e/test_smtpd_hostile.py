"""smtpd end to end against hostile or broken clients, with raw sockets.

Each case sends exact bytes and checks the exact reply: SMTP smuggling, STARTTLS
command injection, CR/LF/NUL in commands, over-long lines, SIZE, recipient limits,
SMTPUTF8, BDAT synchronisation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.smtpd_fakes import RawClient, RunningSmtpd  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
def smtpd(tmp_path: Path) -> Iterator[RunningSmtpd]:
    with RunningSmtpd(tmp_path, max_message_size=100_000, max_recipients=100) as server:
        yield server


def open_transaction(raw: RawClient) -> None:
    assert raw.code() == "220"
    raw.send(b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<user@mx.test>\r\n")
    assert [raw.code() for _ in range(3)] == ["250", "250 2.1.0", "250 2.1.5"]


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n"])
def test_smuggling_refused(smtpd: RunningSmtpd, fake_end: bytes) -> None:
    """CVE-2023-51764 / RFC 5321 2.3.8, 4.1.1.4: a fake end of data followed by a
    second transaction is one message, refused with 554 5.6.11 after the real end;
    the smuggled MAIL/RCPT/DATA never run and nothing is queued."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        open_transaction(raw)
        assert raw.command(b"DATA") == "354"
        raw.send(b"Subject: one\r\n\r\nfirst" + fake_end +
                 b"MAIL FROM:<spoof@mx.test>\r\nRCPT TO:<user@mx.test>\r\nDATA\r\n"
                 b"Subject: smuggled\r\n\r\nsecond\r\n.\r\n")
        assert raw.code() == "554 5.6.11"
        assert raw.command(b"NOOP") == "250 2.0.0"
    assert smtpd.spool.messages == {}
    assert all(w.aborted for w in smtpd.spool.writers)


def test_bare_lf_normalized(tmp_path: Path) -> None:
    """smtpd.bare_line_endings = "normalize": accepted with CRLF line ends."""
    with RunningSmtpd(tmp_path, bare_line_endings="normalize") as smtpd:
        with RawClient(smtpd.ports["smtp"]) as raw:
            open_transaction(raw)
            assert raw.command(b"DATA") == "354"
            raw.send(b"Subject: x\n\nline\n.\nmore\r\n.\r\n")
            assert raw.code() == "250 2.0.0"
        content = next(iter(smtpd.spool.messages.values()))[1]
        assert content.endswith(b"Subject: x\r\n\r\nline\r\n.\r\nmore\r\n")


def test_starttls_injection_discarded(smtpd: RunningSmtpd) -> None:
    """CVE-2011-0411 / RFC 3207 4.2: 'STARTTLS\\r\\nRSET\\r\\n' in one packet: the RSET
    is dropped (its reply never appears) and TLS starts from a clean session."""
    with RawClient(smtpd.ports["submission"]) as raw:
        assert raw.code() == "220"
        assert raw.command(b"EHLO c") == "250"
        raw.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<user@mx.test>\r\n")
        assert raw.code() == "220 2.0.0"
        assert raw.buffer == b""
        raw.starttls()
        # The first reply after the handshake answers our next command, not RSET.
        assert raw.command(b"NOOP") == "250 2.0.0"
        assert raw.command(b"MAIL FROM:<user@mx.test>") == "503 5.5.1"  # EHLO again first


@pytest.mark.parametrize("bad", [b"\x00", b"\r", b"\n"])
def test_cr_lf_nul_in_argument(smtpd: RunningSmtpd, bad: bytes) -> None:
    """RFC 5321 2.3.8: CR, LF or NUL inside a command line: 501 5.5.2."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        assert raw.command(b"EHLO c") == "250"
        assert raw.command(b"MAIL FROM:<a" + bad + b"b@c.test>") == "501 5.5.2"
        assert raw.command(b"NOOP") == "250 2.0.0"


def test_long_command_line(smtpd: RunningSmtpd) -> None:
    """RFC 5321 4.5.3.1.4: a command line over 512 octets: 500 5.5.6."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        assert raw.command(b"EHLO " + b"h" * 600) == "500 5.5.6"
        assert raw.command(b"NOOP " + b"n" * 100_000) == "500 5.5.6"
        assert raw.command(b"EHLO c") == "250"


def test_long_data_line(smtpd: RunningSmtpd) -> None:
    """RFC 5321 4.5.3.1.6: a text line over 1000 octets: message discarded, 500 5.5.6
    after the terminator; the session goes on."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        open_transaction(raw)
        assert raw.command(b"DATA") == "354"
        raw.send(b"Subject: x\r\n\r\n" + b"y" * 1500 + b"\r\n.\r\n")
        assert raw.code() == "500 5.5.6"
        assert raw.command(b"RCPT TO:<user@mx.test>") == "503 5.5.1"
    assert smtpd.spool.messages == {}


def test_declared_size_too_big(smtpd: RunningSmtpd) -> None:
    """RFC 1870 6.1: SIZE= above the limit: 552 5.3.4 at MAIL."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.command(b"EHLO c")
        assert raw.command(b"MAIL FROM:<a@c.test> SIZE=100001") == "552 5.3.4"
        assert raw.command(b"MAIL FROM:<a@c.test> SIZE=100000") == "250 2.1.0"


def test_actual_size_too_big(smtpd: RunningSmtpd) -> None:
    """RFC 1870 6.3: content over the limit is read to the end, then 552 5.3.4."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        open_transaction(raw)
        assert raw.command(b"DATA") == "354"
        line = b"z" * 78 + b"\r\n"
        for _ in range(20):
            raw.send(line * 100)  # 8 KB at a time, 160 KB in all
        raw.send(b".\r\n")
        assert raw.code() == "552 5.3.4"
        assert raw.command(b"NOOP") == "250 2.0.0"
    assert smtpd.spool.messages == {}


def test_too_many_recipients(smtpd: RunningSmtpd) -> None:
    """RFC 5321 4.5.3.1.10: past smtpd.max_recipients, 452 4.5.3."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.send(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\n" +
                 b"RCPT TO:<user@mx.test>\r\n" * 101)
        codes = [raw.code() for _ in range(103)]
        assert codes[2:].count("250 2.1.5") == 100
        assert codes[-1] == "452 4.5.3"


def test_non_ascii_without_smtputf8(smtpd: RunningSmtpd) -> None:
    """RFC 6531 3.4: non-ASCII MAIL FROM without SMTPUTF8: 553 5.6.7."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.command(b"EHLO c")
        assert raw.command("MAIL FROM:<jörg@c.test>".encode()) == "553 5.6.7"
        assert raw.command("MAIL FROM:<jörg@c.test> SMTPUTF8".encode()) == "250 2.1.0"


def test_bdat_after_failed_mail_stays_in_sync(smtpd: RunningSmtpd) -> None:
    """RFC 3030 2: a BDAT refused for sequence still consumes its chunk."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.send(b"EHLO c\r\nMAIL FROM:<a@c.test> SIZE=999999999\r\nRCPT TO:<user@mx.test>\r\n"
                 b"BDAT 12 LAST\r\nQUIT\r\nQUIT\r\nNOOP\r\n")
        assert [raw.code() for _ in range(5)] == ["250", "552 5.3.4", "503 5.5.1", "503 5.5.1",
                                                  "250 2.0.0"]


def test_bdat_non_numeric_size_closes(smtpd: RunningSmtpd) -> None:
    """RFC 3030 2: an unreadable chunk size: 501, then the connection is closed."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        open_transaction(raw)
        assert raw.command(b"BDAT 1x") == "501 5.5.4"
        assert raw.closed()


def test_data_after_bdat(smtpd: RunningSmtpd) -> None:
    """RFC 3030 2: DATA after BDAT in one transaction: 503."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        open_transaction(raw)
        raw.send(b"BDAT 3\r\nabc")
        assert raw.code() == "250 2.0.0"
        assert raw.command(b"DATA") == "503 5.5.1"
        raw.send(b"BDAT 0 LAST\r\n")
        assert raw.code() == "250 2.0.0"
    assert next(iter(smtpd.spool.messages.values()))[1].endswith(b"\r\nabc")


def test_unknown_and_out_of_sequence(smtpd: RunningSmtpd) -> None:
    """RFC 5321 4.2.4 / 4.1.4: 500 unknown, 503 out of sequence, 501 syntax."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        assert raw.command(b"MAIL FROM:<a@c.test>") == "503 5.5.1"
        assert raw.command(b"XYZZY") == "500 5.5.1"
        assert raw.command(b"EHLO") == "501 5.5.4"
        assert raw.command(b"HELO c") == "250"
        assert raw.command(b"DATA") == "503 5.5.1"


def test_too_many_errors(tmp_path: Path) -> None:
    """After smtpd.max_errors hard errors: 421 and close."""
    with RunningSmtpd(tmp_path, max_errors=3) as smtpd, RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.send(b"BAD\r\n" * 3)
        assert [raw.code() for _ in range(4)] == ["500 5.5.1"] * 3 + ["421 4.7.0"]
        assert raw.closed()


def test_mail_loop_detected(tmp_path: Path) -> None:
    """RFC 5321 6.3: more than smtpd.max_received_headers Received fields: 554 5.4.6."""
    with RunningSmtpd(tmp_path, max_received_headers=3) as smtpd:
        with RawClient(smtpd.ports["smtp"]) as raw:
            open_transaction(raw)
            assert raw.command(b"DATA") == "354"
            raw.send(b"Received: from a by b; x\r\n" * 4 + b"\r\nbody\r\n.\r\n")
            assert raw.code() == "554 5.4.6"
        assert smtpd.spool.messages == {}
