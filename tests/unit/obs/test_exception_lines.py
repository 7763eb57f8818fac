"""``log.exception`` keeps its traceback, on the one line of its event."""

from __future__ import annotations

import json
import logging

from mailyard.obs import _JsonFormatter, _TextFormatter


def _record() -> logging.LogRecord:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        return logging.LogRecord("mailyard.test", logging.ERROR, __file__, 1,
                                 "smtp session failed", None, sys.exc_info())


def test_text_line_carries_the_traceback() -> None:
    line = _TextFormatter().format(_record())
    assert "\n" not in line
    assert "traceback=" in line and "ValueError: boom" in line and "_record" in line


def test_json_line_carries_the_traceback() -> None:
    line = _JsonFormatter().format(_record())
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["traceback"]
