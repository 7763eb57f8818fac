"""IMAP SEARCH with the search index, end to end: the real ``mailyard serve``, mail
delivered over SMTP and appended, expunged and moved with imaplib; each search
answers what the mailbox holds then (RFC 9051 6.4.4), and the index file in the
user's Maildir follows (rows of expunged and moved messages dropped)."""

from __future__ import annotations

import base64
import imaplib
import sqlite3
import time
from collections.abc import Iterator

import pytest

from tests.e2e import test_imap as imap
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

USER = "finder"
WARM_USER = "warmed"
WARM_COUNT = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("imap-search"), workers=2,
                         overrides={"imap": {"search_time_budget": 20.0}})
    srv.add_user(f"{USER}@example.test", imap.PASSWORD)
    srv.add_user(f"{WARM_USER}@example.test", imap.PASSWORD)
    with srv:
        yield srv


def uids(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = client.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return [int(u) for u in data[0].split()]


def indexed_uids(server: MailyardServer) -> list[int]:
    path = server.maildir(f"{USER}@example.test") / "mailyard-search.db"
    with sqlite3.connect(path) as db:
        return [u for (u,) in db.execute("SELECT uid FROM docs ORDER BY uid")]


def test_search_follows_append_expunge_move_and_delivery(server: MailyardServer) -> None:
    imap.deliver(server, USER, 3, subject="alpha")
    client = imap.login(server, USER)
    client.select("INBOX")
    assert uids(client, "BODY", '"line of alpha"') == [1, 2, 3]  # fills the index
    assert uids(client, "SUBJECT", "alpha") == [1, 2, 3]  # answered from it
    assert uids(client, "TEXT", "remote.test") == [1, 2, 3]
    assert indexed_uids(server) == [1, 2, 3]

    subject = "=?utf-8?b?" + base64.b64encode("Grüße alpha".encode()).decode() + "?="
    message = (f"Subject: {subject}\r\nFrom: me@example.test\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
               "the line of alpha, caf=C3=A9\r\n").encode()
    assert client.append("INBOX", None, None, message)[0] == "OK"
    assert uids(client, "BODY", '"line of alpha"') == [1, 2, 3, 4]
    client.literal = "GRÜSSE".encode()
    assert uids(client, "CHARSET", "UTF-8", "SUBJECT") == [4]
    client.literal = "CAFÉ".encode()  # sent as the last argument, a literal
    assert uids(client, "CHARSET", "UTF-8", "BODY") == [4]

    client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    client.expunge()
    assert uids(client, "BODY", "alpha") == [1, 3, 4]
    assert 2 not in indexed_uids(server)

    assert client.create("Kept")[0] == "OK"
    typ, _ = client.uid("MOVE", "3", "Kept")
    assert typ == "OK"
    assert uids(client, "SUBJECT", "alpha") == [1, 4]
    assert 3 not in indexed_uids(server)

    other = imap.login(server, USER)  # another session renames a file (a flag)
    other.select("INBOX")
    other.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    other.logout()
    imap.deliver(server, USER, 1, subject="alpha")
    deadline = time.monotonic() + 10
    while len(found := uids(client, "BODY", "alpha")) < 3 and time.monotonic() < deadline:
        client.noop()
        time.sleep(0.2)
    assert found == [1, 4, 5]
    assert uids(client, "FLAGGED", "SUBJECT", "alpha") == [1]

    client.select("Kept")
    assert uids(client, "BODY", '"line of alpha"') == [1]
    assert uids(client, "SUBJECT", "alpha") == [1]
    client.logout()


def test_search_of_unindexed_strings_and_hostile_terms(server: MailyardServer) -> None:
    """Short strings (no trigram), quotes and FTS5 syntax in a string, a string
    longer than any message: plain substrings, tagged OK."""
    imap.deliver(server, USER, 2, subject='q"uote AND (x*)')
    client = imap.login(server, USER)
    client.select("INBOX")
    both = uids(client, "SUBJECT", '"q\\"uote"')
    assert len(both) == 2
    assert uids(client, "SUBJECT", '"AND (x*)"') == both
    assert len(uids(client, "BODY", "q")) >= 2
    assert uids(client, "BODY", '"' + "y" * 5000 + '"') == []
    client.logout()


def texts_indexed(server: MailyardServer, user: str) -> int:
    path = server.maildir(f"{user}@example.test") / "mailyard-search.db"
    try:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM docs WHERE has_texts = 1")
                       .fetchone()[0])
    except sqlite3.Error:
        return 0  # not made yet


def wait_indexed(server: MailyardServer, user: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while texts_indexed(server, user) < count:
        assert time.monotonic() < deadline, (texts_indexed(server, user), server.output())
        time.sleep(0.2)


def test_selected_folder_is_indexed_in_the_background(server: MailyardServer) -> None:
    """SELECT queues the folder for warming: a few hundred messages (dropped into
    ``new/`` as a local delivery does) are indexed with no SEARCH, then a BODY
    search answers from the index; new mail in the selected folder is indexed too."""
    client = imap.login(server, WARM_USER)  # makes the Maildir
    new = server.maildir(f"{WARM_USER}@example.test") / "new"
    for i in range(WARM_COUNT):
        word = "marmalade" if i % 7 == 0 else "porridge"
        (new / f"1700000000.M{i}P1.test").write_bytes(
            f"Subject: breakfast {i}\nFrom: cook@remote.test\n\n"
            f"Today we serve {word}, batch {i}.\n".encode())
    assert client.select("INBOX")[0] == "OK"
    wait_indexed(server, WARM_USER, WARM_COUNT)
    expected = [i + 1 for i in range(WARM_COUNT) if i % 7 == 0]
    assert sorted(uids(client, "BODY", "MARMALADE")) == expected
    assert len(uids(client, "SUBJECT", "breakfast")) == WARM_COUNT

    imap.deliver(server, WARM_USER, 1, subject="marmalade")  # the watcher sees it
    wait_indexed(server, WARM_USER, WARM_COUNT + 1)
    assert uids(client, "BODY", "marmalade") == [*expected, WARM_COUNT + 1]
    client.logout()
