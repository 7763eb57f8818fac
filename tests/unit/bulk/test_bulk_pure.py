"""Addresses, CSV export escaping, link tokens, the confirmation mail."""

from __future__ import annotations

import csv
import io
from email import message_from_bytes
from email.policy import default

import pytest

from mailyard.bulk.addresses import InvalidAddress, normalise_address
from mailyard.bulk.confirmation import confirmation_message
from mailyard.bulk.export import escape_cell, write_csv
from mailyard.bulk.model import Contact
from mailyard.bulk.tokens import ExpiredToken, InvalidToken, sign, verify


@pytest.mark.parametrize(("given", "stored"), [
    ("Anna.Smith@Bücher.Example.", "anna.smith@xn--bcher-kva.example"),
    (" bob@EXAMPLE.org ", "bob@example.org"),
    ("ü@example.org", "ü@example.org"),  # RFC 6531 UTF-8 local part
])
def test_normalise(given: str, stored: str) -> None:
    assert normalise_address(given) == stored


@pytest.mark.parametrize("bad", ["", "nobody", "@example.org", "a@", "a b@example.org",
                                 '"quoted"@example.org', "a@exa_mple.org", "a..b@example.org",
                                 "a@" + "x" * 300 + ".org"])
def test_invalid_addresses(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_address(bad)


@pytest.mark.parametrize(("cell", "written"), [
    ("=SUM(A1:A2)", "'=SUM(A1:A2)"), ("+1", "'+1"), ("-2", "'-2"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
])
def test_formula_cells_escaped(cell: str, written: str) -> None:
    assert escape_cell(cell) == written


def test_export_writes_every_cell_escaped() -> None:
    out = io.StringIO()
    contacts = [Contact(1, "=x@example.org", "=HYPERLINK(\"http://evil\")",
                        {"plan": "@pro", "n": 3}, created=10.0)]
    assert write_csv(out, contacts, ["n", "plan", "missing"]) == 1
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["email", "name", "status", "created", "n", "plan", "missing"],
                    ["'=x@example.org", "'=HYPERLINK(\"http://evil\")", "active", "10", "3",
                     "'@pro", ""]]


KEY = b"k" * 32


def test_token_round_trip_and_tampering() -> None:
    token = sign(KEY, "confirm", (7, 42), expires=2000)
    assert verify(KEY, "confirm", token, now=1000) == (7, 42)
    with pytest.raises(ExpiredToken):
        verify(KEY, "confirm", token, now=2001)
    with pytest.raises(InvalidToken):
        verify(KEY, "unsubscribe", token, now=1000)  # another purpose
    with pytest.raises(InvalidToken):
        verify(b"j" * 32, "confirm", token, now=1000)  # another server
    forged = token.replace("7.42.", "7.43.", 1)
    with pytest.raises(InvalidToken):
        verify(KEY, "confirm", forged, now=1000)
    later = token.replace(".2000.", ".9999.", 1)
    with pytest.raises(InvalidToken):
        verify(KEY, "confirm", later, now=1000)
    for junk in ("", "x", "1.2.3", token + "A", token[:-1]):
        with pytest.raises(InvalidToken):
            verify(KEY, "confirm", junk, now=1000)


def test_confirmation_message_keeps_the_link_whole() -> None:
    link = "https://lists.example.org/confirm/1.2.1796000000." + "A" * 43
    raw = confirmation_message(sender="news@example.org", to="ü@example.org", to_name="Zoë",
                               list_title="Nöws", link=link, hostname="mx.example.org",
                               valid_hours=168)
    msg = message_from_bytes(raw, policy=default)
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_body(("plain",))
    assert body is not None and link in body.get_content()
    assert "Nöws" in str(msg["From"]) and "Zoë" in str(msg["To"])
