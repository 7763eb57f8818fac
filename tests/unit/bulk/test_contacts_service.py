"""The contacts service over the SQLite store: import merging, memberships that are not
revived, subscribe and confirm, erasure, suppression; and the API-key service."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from mailyard.apikeys.api import Scope
from mailyard.apikeys.sqlite import SqliteKeyStore
from mailyard.bulk.importer import ImportFormat
from mailyard.bulk.model import Consent, MembershipStatus, OptIn, SuppressionReason
from mailyard.bulk.sqlite import MIGRATIONS, SqliteContactStore
from mailyard.services.apikeys import ApiKeys
from mailyard.services.contacts import Contacts, Settings
from mailyard.services.errors import ServiceError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def contacts(tmp_path: Path, clock: Clock) -> Contacts:
    store = SqliteContactStore(tmp_path / "bulk.db", lambda a: "d:" + a[::-1])
    settings = Settings(sender="news@example.org", public_url="https://lists.example.org/",
                        confirm_key=b"k" * 32, confirm_ttl=3600, hostname="mx.example.org")
    return Contacts(store, settings, clock)


def code_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.code


def test_database_is_private_with_a_schema_version(tmp_path: Path, contacts: Contacts) -> None:
    contacts.create_list("x")
    path = tmp_path / "bulk.db"
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_import_merges_and_keeps_ended_memberships(contacts: Contacts) -> None:
    contacts.create_list("news")
    first = contacts.import_contacts(io.BytesIO(b"email,name,plan\na@example.org,A,pro\n"
                                                b"b@example.org,B,free\n"),
                                     ImportFormat.CSV, "news", source="import:one.csv")
    assert (first.new, first.joined, first.rows) == (2, 2, 2)
    contacts.set_member("news", "b@example.org", MembershipStatus.UNSUBSCRIBED,
                        Consent(5.0, "", "test"))
    again = contacts.import_contacts(io.BytesIO(b"email,name,plan\nA@example.org,,team\n"
                                                b"b@example.org,B,free\nc@example.org,,\n"),
                                     ImportFormat.CSV, "news")
    assert (again.new, again.updated, again.unchanged, again.joined) == (1, 1, 1, 1)
    a = contacts.get("a@example.org")
    assert a.name == "A" and a.attributes == {"plan": "team"}  # empty name keeps the old
    members = {m.address: m for _, m in contacts.members("news")}
    assert members["b@example.org"].status is MembershipStatus.UNSUBSCRIBED
    consent = members["a@example.org"].consent
    assert consent is not None and consent.source == "import:one.csv"


def test_import_summary_reports_stop_line(contacts: Contacts) -> None:
    contacts.create_list("news")
    data = "email,name\na@example.org,Ä\nb@example.org,Ö\n".encode("latin-1")
    summary = contacts.import_contacts(io.BytesIO(data), ImportFormat.CSV, "news")
    assert summary.stopped is not None and summary.stopped.line == 2
    assert summary.to_dict()["stopped"]["line"] == 2
    assert code_of(lambda: contacts.import_contacts(io.BytesIO(b""), ImportFormat.CSV,
                                                    "news", encoding="nope")) == "invalid_import"
    assert code_of(lambda: contacts.import_contacts(io.BytesIO(b""), ImportFormat.CSV,
                                                    "none")) == "no_such_list"


def test_double_opt_in(contacts: Contacts, clock: Clock) -> None:
    contacts.create_list("news", "The News", OptIn.DOUBLE)
    result = contacts.subscribe("news", "Z@Example.org", "Zed", Consent(clock(), "192.0.2.1",
                                                                      "form"))
    assert result.membership is not None
    assert result.membership.status is MembershipStatus.UNCONFIRMED
    assert result.mail is not None and result.mail.recipient == "z@example.org"
    text = result.mail.content.decode()
    token = text.split("https://lists.example.org/confirm/")[1].split()[0]
    assert code_of(lambda: contacts.confirm(token[:-2] + "AA", Consent(0))) == "no_such_token"
    member = contacts.confirm(token, Consent(clock(), "192.0.2.2", "confirmation link"))
    assert member.status is MembershipStatus.CONFIRMED
    assert member.consent == Consent(clock(), "192.0.2.1", "form")
    assert member.confirmed == Consent(clock(), "192.0.2.2", "confirmation link")
    again = contacts.subscribe("news", "z@example.org", "", Consent(clock(), "", "form"))
    assert again.mail is None and again.membership is None  # nothing new, nothing said
    clock.now += 7200
    assert code_of(lambda: contacts.confirm(token, Consent(0))) == "token_expired"


def test_confirmation_resent_at_most_every_ten_minutes(contacts: Contacts,
                                                       clock: Clock) -> None:
    contacts.create_list("news", "", OptIn.DOUBLE)
    assert contacts.subscribe("news", "v@example.org", "", Consent(clock())).mail is not None
    clock.now += 60
    assert contacts.subscribe("news", "v@example.org", "", Consent(clock())).mail is None
    clock.now += 600
    assert contacts.subscribe("news", "v@example.org", "", Consent(clock())).mail is not None


def test_subscribe_does_not_revive_or_reach_suppressed(contacts: Contacts) -> None:
    contacts.create_list("open")
    contacts.suppress("s@example.org", SuppressionReason.COMPLAINT)
    assert contacts.subscribe("open", "s@example.org", "", Consent(1.0)).membership is None
    contacts.set_member("open", "u@example.org", MembershipStatus.UNSUBSCRIBED, Consent(1.0))
    # Unsubscribed moments ago: nothing (not even the renewal mail, see below).
    again = contacts.subscribe("open", "u@example.org", "", Consent(2.0))
    assert again.membership is None and again.mail is None
    single = contacts.subscribe("open", "n@example.org", "N", Consent(3.0, "", "api"))
    assert single.membership is not None and single.mail is None
    assert single.membership.status is MembershipStatus.CONFIRMED


def _link_token(mail) -> str:
    text = mail.content.decode()
    return text.split("/confirm/", 1)[1].split()[0]


def test_complained_and_bounced_members_are_not_revived_by_the_form(
        contacts: Contacts, clock: Clock) -> None:
    """A complaint ends the membership as ``complained`` and suppresses the address;
    the form neither revives it nor mails the address, even once the operator lifted
    the suppression: only the operator can put the person back."""
    contacts.create_list("news")
    for address, status in (("c@example.org", MembershipStatus.COMPLAINED),
                            ("b@example.org", MembershipStatus.BOUNCED)):
        contacts.set_member("news", address, status, Consent(clock()))
    contacts.suppress("c@example.org", SuppressionReason.COMPLAINT)
    clock.now += 86400
    for address in ("c@example.org", "b@example.org"):
        result = contacts.subscribe("news", address, "", Consent(clock(), "", "form"))
        assert result.membership is None and result.mail is None
    contacts.unsuppress("c@example.org")
    result = contacts.subscribe("news", "c@example.org", "", Consent(clock(), "", "form"))
    assert result.membership is None and result.mail is None
    statuses = {m.address: m.status for _, m in contacts.members("news")}
    assert statuses == {"c@example.org": MembershipStatus.COMPLAINED,
                        "b@example.org": MembershipStatus.BOUNCED}


def test_an_unsubscribed_person_comes_back_only_through_a_fresh_confirmation(
        contacts: Contacts, clock: Clock) -> None:
    contacts.create_list("open")  # single opt-in: a new address is confirmed at once
    contacts.set_member("open", "u@example.org", MembershipStatus.UNSUBSCRIBED,
                        Consent(clock(), "", "form"))
    clock.now += 3600
    first = contacts.subscribe("open", "u@example.org", "", Consent(clock(), "192.0.2.9"))
    assert first.membership is None and first.mail is not None
    assert first.mail.recipient == "u@example.org"
    assert contacts.members("open")[0][1].status is MembershipStatus.UNSUBSCRIBED
    # Another post within ten minutes sends nothing; a later one a new link, which
    # replaces the first.
    clock.now += 60
    assert contacts.subscribe("open", "u@example.org", "", Consent(clock())).mail is None
    clock.now += 600
    second = contacts.subscribe("open", "u@example.org", "", Consent(clock()))
    assert second.mail is not None
    old, new = _link_token(first.mail), _link_token(second.mail)
    assert code_of(lambda: contacts.confirm(old, Consent(clock()))) == "no_such_token"
    _, contact, _ = contacts.pending_confirmation(new)
    assert contact.address == "u@example.org"
    member = contacts.confirm(new, Consent(clock(), "192.0.2.10", "confirmation link"))
    assert member.status is MembershipStatus.CONFIRMED
    assert member.consent == member.confirmed == Consent(clock(), "192.0.2.10",
                                                         "confirmation link")
    # Used again after the person left once more: the link no longer works.
    clock.now += 1
    contacts.set_member("open", "u@example.org", MembershipStatus.UNSUBSCRIBED, Consent(0))
    assert code_of(lambda: contacts.confirm(new, Consent(clock()))) == "no_such_token"


def test_a_renewal_link_does_not_revive_an_address_suppressed_meanwhile(
        contacts: Contacts, clock: Clock) -> None:
    contacts.create_list("news", "", OptIn.DOUBLE)
    contacts.set_member("news", "u@example.org", MembershipStatus.UNSUBSCRIBED, Consent(0))
    clock.now += 3600
    mail = contacts.subscribe("news", "u@example.org", "", Consent(clock())).mail
    assert mail is not None
    contacts.suppress("u@example.org", SuppressionReason.COMPLAINT)
    member = contacts.confirm(_link_token(mail), Consent(clock()))
    assert member.status is MembershipStatus.UNSUBSCRIBED


def test_erase_everywhere_keeps_a_digest(tmp_path: Path, contacts: Contacts) -> None:
    contacts.create_list("news")
    contacts.create("gone@example.org", "Gone", {"city": "Berlin"})
    contacts.set_member("news", "gone@example.org", MembershipStatus.CONFIRMED, Consent(1.0))
    contacts.suppress("gone@example.org", SuppressionReason.HARD_BOUNCE, "550 no such user")
    assert contacts.personal_data("gone@example.org")["suppression"]["reason"] == "hard-bounce"
    contacts.store.add_soft_bounce("gone@example.org", "message:m1", 5.0)
    contacts.store.add_deliveries(["gone@example.org"], 6.0)
    held = contacts.personal_data("gone@example.org")
    assert held["soft_bounces"] == [{"message": "message:m1", "at": 5.0}]
    assert held["last_transactional_delivery"] == 6.0
    result = contacts.erase("gone@example.org")
    assert result["suppression_kept_as_digest"]
    data = contacts.personal_data("gone@example.org")
    assert data["contact"] is None and data["memberships"] == []
    assert data["suppression"]["address"] is None and data["suppression"]["note"] == ""
    assert data["soft_bounces"] == [] and data["last_transactional_delivery"] is None
    # Someone known only from transactional mail can be erased too.
    contacts.store.add_soft_bounce("tx@example.org", "message:m2", 7.0)
    assert contacts.erase("tx@example.org")["erased"]
    assert code_of(lambda: contacts.personal_data("tx@example.org")) == "no_such_contact"
    assert code_of(lambda: contacts.get("gone@example.org")) == "no_such_contact"
    # still suppressed: a new subscription changes nothing
    assert contacts.subscribe("news", "gone@example.org", "", Consent(2.0)).membership is None
    for path in tmp_path.glob("bulk.db*"):
        assert b"gone@example.org" not in path.read_bytes()
        assert b"Berlin" not in path.read_bytes()


def test_contact_rules(contacts: Contacts) -> None:
    assert code_of(lambda: contacts.create("x")) == "invalid_address"
    assert code_of(lambda: contacts.create("a@example.org", "Evil\r\nBcc: x@y")) == \
        "invalid_contact"
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    assert code_of(lambda: contacts.create("a@example.org", "", {"deep": deep})) == \
        "invalid_contact"
    contacts.create("a@example.org")
    assert code_of(lambda: contacts.update("a@example.org", attributes={"deep": deep})) \
        == "invalid_contact"
    assert code_of(lambda: contacts.create("A@EXAMPLE.org")) == "contact_exists"
    assert code_of(lambda: contacts.create_list("Bad Name!")) == "invalid_list"
    contacts.create_list("ok")
    assert code_of(lambda: contacts.create_list("OK")) == "list_exists"


def test_api_keys(tmp_path: Path, clock: Clock) -> None:
    keys = ApiKeys(SqliteKeyStore(tmp_path / "apikeys.db"), clock)
    made = keys.create("ci", "contacts,send")
    assert made.key.scopes == {Scope.CONTACTS, Scope.SEND}
    assert made.secret.startswith("myk_") and made.secret not in (
        tmp_path / "apikeys.db").read_bytes().decode("latin-1")
    found = keys.authenticate(made.secret)
    assert found is not None and found.key_id == made.key.key_id
    assert keys.list()[0].last_used == clock.now
    assert keys.authenticate(made.secret[:-1] + ("A" if made.secret[-1] != "A" else "B")) \
        is None
    assert keys.authenticate("garbage") is None
    with pytest.raises(ServiceError) as info:
        keys.create("ci", "admin")
    assert info.value.code == "apikey_exists"
    with pytest.raises(ServiceError) as info:
        keys.create("other", "contacts,root")
    assert info.value.code == "invalid_scope"
    keys.revoke("ci")
    assert keys.authenticate(made.secret) is None
    keys.create("ci", "admin")  # the name is free again


def test_a_confirmation_not_queued_is_sent_by_the_next_request(contacts: Contacts,
                                                                clock: Clock) -> None:
    """The confirmation mail could not be queued (a full disk): the same request a
    moment later sends one, instead of being taken for a repeat within ten minutes."""
    contacts.create_list("news", "", OptIn.DOUBLE)
    first = contacts.subscribe("news", "d@example.org", "", Consent(clock()))
    assert first.mail is not None
    contacts.confirmation_not_sent("news", "d@example.org")
    clock.now += 5
    again = contacts.subscribe("news", "d@example.org", "", Consent(clock()))
    assert again.mail is not None
    assert contacts.members("news")[0][1].status is MembershipStatus.UNCONFIRMED
    clock.now += 5  # sent this time: a repeat within ten minutes sends nothing
    assert contacts.subscribe("news", "d@example.org", "", Consent(clock())).mail is None
    # The same for an unsubscribed person coming back.
    contacts.set_member("news", "u@example.org", MembershipStatus.UNSUBSCRIBED, Consent(0))
    clock.now += 3600
    assert contacts.subscribe("news", "u@example.org", "", Consent(clock())).mail is not None
    contacts.confirmation_not_sent("news", "u@example.org")
    clock.now += 5
    retry = contacts.subscribe("news", "u@example.org", "", Consent(clock())).mail
    assert retry is not None
    contacts.confirm(_link_token(retry), Consent(clock()))
