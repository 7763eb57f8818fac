"""Text and JSON log lines stay one line whatever a logged value holds (log injection)."""

from __future__ import annotations

import json
import logging

import pytest

from mailyard.obs import _JsonFormatter, _TextFormatter

FORGED = "x\r\n2026-12-01T03:30:00\terror\tmailyard.supervisor:\tforged\x1b]0;PWNED\x07"
CONTROLS = [chr(c) for c in [*range(0x20), 0x7f, *range(0x80, 0xa0), 0x2028, 0x2029]]


def record(message: str = "smtp auth", **fields: object) -> logging.LogRecord:
    r = logging.LogRecord("mailyard.smtpd", logging.INFO, __file__, 1, message, None, None)
    r.fields = fields  # type: ignore[attr-defined]
    return r


def test_text_value_with_crlf_and_escape_is_one_quoted_line() -> None:
    line = _TextFormatter().format(record(client="127.0.0.1", user=FORGED, result="failed"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\t" not in line
    assert line.endswith(' user="x\\r\\n2026-12-01T03:30:00\\terror\\tmailyard.supervisor:'
                         '\\tforged\\u001b]0;PWNED\\u0007" result=failed')
    assert " client=127.0.0.1 " in line


@pytest.mark.parametrize("char", CONTROLS)
def test_every_control_character_is_escaped(char: str) -> None:
    text = _TextFormatter().format(record(f"event{char}", helo=f"a{char}b"))
    js = _JsonFormatter().format(record(f"event{char}", helo=f"a{char}b"))
    for line in (text, js):
        assert char not in line
        assert len(line.splitlines()) == 1
    assert json.loads(js)["helo"] == f"a{char}b"  # JSON escapes decode to the value


def test_plain_values_are_not_quoted() -> None:
    line = _TextFormatter().format(record(helo="mail.example.org", size=12, u="é"))
    assert line.endswith("smtp auth helo=mail.example.org size=12 u=é")
