"""The "smtp auth" log line and the fail2ban filter documented for it
(docs/deployment.md): the filter bans the client of a failed try, and a user name
chosen by the client cannot make it match another address or a success."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from mailyard.obs import _TextFormatter  # the format under test

DOCS = Path(__file__).resolve().parents[3] / "docs" / "deployment.md"


def documented_filter() -> tuple[re.Pattern[str], re.Pattern[str]]:
    text = DOCS.read_text()
    failregex = re.search(r"^failregex = (.+)$", text, re.M).group(1)  # type: ignore[union-attr]
    datepattern = re.search(r"^datepattern = (.+)$", text, re.M).group(1)  # type: ignore[union-attr]
    date = (datepattern.replace("%%Y", r"\d{4}").replace("%%m", r"\d\d")
            .replace("%%d", r"\d\d").replace("%%H", r"\d\d").replace("%%M", r"\d\d")
            .replace("%%S", r"\d\d"))
    return re.compile(date), re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))


def auth_line(client: str, user: str, result: str, level: int = logging.WARNING) -> str:
    record = logging.LogRecord("mailyard.smtpd", level, __file__, 1, "smtp auth", None, None)
    record.fields = {"client": client, "user": user, "mechanism": "PLAIN", "result": result,
                     "reply": "535 5.7.8 Authentication credentials invalid"}
    return _TextFormatter().format(record)


def banned(line: str) -> str | None:
    """What fail2ban does: cut the date out, then search failregex."""
    date, failregex = documented_filter()
    m = date.search(line)
    assert m is not None, line
    rest = line[: m.start()] + line[m.end():]
    found = failregex.search(rest)
    return found.group("host") if found else None


@pytest.mark.parametrize("result", ["failed", "locked"])
def test_filter_bans_the_client_of_a_failed_try(result: str) -> None:
    assert banned(auth_line("203.0.113.9", "admin@example.test", result)) == "203.0.113.9"
    assert banned(auth_line("2001:db8::7", "a@b", result)) == "2001:db8::7"


@pytest.mark.parametrize("result", ["ok", "busy", "tempfail", "cancelled"])
def test_filter_ignores_other_results(result: str) -> None:
    assert banned(auth_line("203.0.113.9", "admin@example.test", result, logging.INFO)) is None


@pytest.mark.parametrize("user", [
    "x mechanism=PLAIN result=failed",
    'a" client=198.51.100.1 user=b mechanism=PLAIN result=failed',
    "result=failed",
    "",
])
def test_a_chosen_user_name_cannot_forge_a_match(user: str) -> None:
    assert banned(auth_line("203.0.113.9", user, "ok", logging.INFO)) is None
    assert banned(auth_line("203.0.113.9", user, "failed")) == "203.0.113.9"
