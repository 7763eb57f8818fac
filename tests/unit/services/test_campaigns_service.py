"""The campaign service on a temporary data directory: create and edit from a campaign
file, the life cycle as compare-and-set moves, schedule times in a time zone (zoneinfo,
DST gap), the check with its DNS part over an in-memory resolver, preview and the test
message (VERP sender, RFC 2369/8058 list fields), and the report."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailyard.bulk.campaigns.compose import SendSettings
from mailyard.bulk.campaigns.input import CampaignInput, input_from_mapping, parse_send_at
from mailyard.bulk.campaigns.model import CampaignState
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.model import Consent, MembershipStatus, OptIn
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.bulk.templates.check import Severity
from mailyard.dkim.keys import KeyStore
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dns.static import StaticResolver
from mailyard.feedback.verp import CampaignRecipient, parse_verp_address
from mailyard.services.campaign_auth import AlignmentCheck, DnsAlignment
from mailyard.services.campaigns import Campaigns, CheckFailed
from mailyard.services.contacts import Contacts, Settings
from mailyard.services.dkim import DkimKeys
from mailyard.services.errors import ServiceError

VERP_KEY = b"v" * 32
HTML = ('<p>Hello {{ name }}</p><p><a href="https://example.org/offer">Offer</a></p>'
        '<img src="https://example.org/logo.png" alt="Logo">'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
TEXT = "Hello {{ name }}\nUnsubscribe: {{ unsubscribe_url }}\n"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def settings(public_url: str = "https://news.example.org") -> SendSettings:
    return SendSettings(public_url=public_url, hostname="mx.example.org",
                        bounce_domain="example.org", tracking_key=b"t" * 32,
                        verp_key=VERP_KEY, id_salt=b"s" * 32)


@pytest.fixture
def contacts(tmp_path: Path) -> Contacts:
    store = SqliteContactStore(tmp_path / "bulk.db", lambda a: "d:" + a)
    contacts = Contacts(store, Settings("postmaster@example.org", "https://news.example.org",
                                        b"k" * 32, 3600, "mx.example.org"))
    contacts.create_list("news", "News", OptIn.DOUBLE)
    contacts.create("anna@example.com", "Anna", {"plan": "pro"})
    contacts.set_member("news", "anna@example.com", MembershipStatus.CONFIRMED,
                        Consent(NOW, "192.0.2.1", "test"))
    return contacts


def make(contacts: Contacts, alignment: object = None, url: str = "https://news.example.org",
         clock: Clock | None = None) -> Campaigns:
    store = SqliteCampaignStore(contacts.store.db)  # type: ignore[attr-defined]
    return Campaigns(store, contacts, settings(url), alignment,  # type: ignore[arg-type]
                     clock or Clock(), pools=frozenset({"bulk"}))


@pytest.fixture
def campaigns(contacts: Contacts) -> Campaigns:
    return make(contacts)


def full_input(name: str = "December") -> CampaignInput:
    return input_from_mapping({"name": name, "from": "Example News <news@example.org>",
                               "subject": "Hi {{ name }}", "html": HTML, "text": TEXT,
                               "lists": ["news"], "pool": "bulk", "rate": 600,
                               "domain_caps": {"gmail.com": 300}})


def code_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.code


# --- create and edit -------------------------------------------------------------------
def test_create_from_a_campaign_file_and_flags(campaigns: Campaigns, tmp_path: Path) -> None:
    (tmp_path / "body.html").write_text(HTML)
    data = {"name": "Winter", "from": "news@example.org", "subject": "S",
            "html_file": "body.html", "list": "news", "tracking": False,
            "ab": {"subjects": ["A {{ name }}", "B"], "sample_percent": 10,
                   "wait_hours": 2, "metric": "clicks"}}
    inp = input_from_mapping(data, lambda p: (tmp_path / p).read_text())
    created = campaigns.create(inp.merged(CampaignInput(subject="From the flag")))
    assert created.state is CampaignState.DRAFT
    spec = created.spec
    assert spec.html == HTML and spec.subject == "From the flag" and not spec.tracking
    assert spec.extra["ab"] == {"subjects": ["A {{ name }}", "B"], "sample_percent": 10,
                                "wait_hours": 2, "metric": "clicks"}
    assert campaigns.get("Winter").id == created.id == campaigns.get(str(created.id)).id
    assert code_of(lambda: campaigns.create(inp)) == "campaign_exists"


@pytest.mark.parametrize("data, code", [
    ({"name": ""}, "invalid_campaign"),
    ({"name": "x", "colour": "red"}, "invalid_campaign"),
    ({"name": "x", "from": "not an address"}, "invalid_campaign"),
    ({"name": "x", "lists": ["missing"]}, "no_such_list"),
    ({"name": "x", "pool": "nope"}, "invalid_campaign"),
    ({"name": "x", "segment": "plan = ; drop table contacts"}, "invalid_campaign"),
    ({"name": "x", "rate": -1}, "invalid_campaign"),
    ({"name": "x", "domain_caps": {"gmail..com": 5}}, "invalid_campaign"),
    ({"name": "x", "timezone": "Mars/Olympus"}, "invalid_campaign"),
    ({"name": "x", "timezone": "../../etc/passwd"}, "invalid_campaign"),
    ({"name": "x", "ab": {"subjects": ["only one"]}}, "invalid_campaign"),
    ({"name": "x", "ab": {"subjects": ["a", "b"], "metric": "revenue"}}, "invalid_campaign"),
    ({"name": "x", "html": "{% for %}"}, "invalid_template"),
    ({"name": "x\r\nBcc: y"}, "invalid_campaign"),
])
def test_create_refuses_bad_settings(campaigns: Campaigns, data: dict[str, object],
                                     code: str) -> None:
    def create() -> None:
        try:
            inp = input_from_mapping(data)
        except ValueError as exc:
            raise ServiceError("invalid_campaign", str(exc)) from None
        campaigns.create(inp)
    assert code_of(create) == code


def test_html_file_is_refused_without_a_reader() -> None:
    with pytest.raises(ValueError, match="not accepted"):
        input_from_mapping({"name": "x", "html_file": "/etc/passwd"})


def test_edit_only_drafts(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    edited = campaigns.edit(c.id, CampaignInput(subject="New", ab={"subjects": ["a", "b"]}))
    assert edited.spec.subject == "New" and edited.spec.html == HTML
    assert edited.spec.extra["ab"]["metric"] == "opens"
    assert "ab" not in campaigns.edit(c.id, CampaignInput(ab={})).spec.extra
    campaigns.schedule(c.id, force=True)
    assert code_of(lambda: campaigns.edit(c.id, CampaignInput(subject="x"))) == "campaign_state"
    assert code_of(lambda: campaigns.edit(c.id, CampaignInput(name="other"))) == \
        "invalid_campaign"


# --- the life cycle --------------------------------------------------------------------
def test_life_cycle_moves_and_refusals(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    assert code_of(lambda: campaigns.pause(c.id)) == "campaign_state"
    assert code_of(lambda: campaigns.resume(c.id)) == "campaign_state"
    assert code_of(lambda: campaigns.unschedule(c.id)) == "campaign_state"
    scheduled = campaigns.schedule(c.id, "2026-12-24 09:00", "Europe/Berlin", force=True)
    assert scheduled.campaign.state is CampaignState.SCHEDULED
    assert scheduled.campaign.send_at == datetime(2026, 12, 24, 8, 0, tzinfo=UTC).timestamp()
    assert code_of(lambda: campaigns.schedule(c.id, force=True)) == "campaign_state"
    assert campaigns.unschedule(c.id).send_at is None
    campaigns.schedule(c.id, force=True)
    # The runner starts it (another process): pause and resume are its moves now.
    campaigns.store.move(c.id, CampaignState.SCHEDULED, CampaignState.SENDING, NOW)
    assert campaigns.pause(c.id).state is CampaignState.PAUSED
    assert campaigns.resume(c.id).state is CampaignState.SENDING
    assert campaigns.cancel(c.id).state is CampaignState.CANCELLED
    for action in (campaigns.cancel, campaigns.pause, campaigns.resume, campaigns.unschedule):
        assert code_of(lambda a=action: a(c.id)) == "campaign_state"  # type: ignore[misc]
    assert code_of(lambda: campaigns.get(999)) == "no_such_campaign"


def test_a_move_another_process_made_first_is_a_conflict(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    campaigns.schedule(c.id, force=True)
    campaigns.store.move(c.id, CampaignState.SCHEDULED, CampaignState.SENDING, NOW)
    stale = campaigns.get(c.id)
    campaigns.store.move(c.id, CampaignState.SENDING, CampaignState.FINISHED, NOW)
    campaigns.get = lambda ref: stale  # type: ignore[method-assign]
    assert code_of(lambda: campaigns.pause(c.id)) == "campaign_state"
    assert code_of(lambda: campaigns.cancel(c.id)) == "campaign_state"


@pytest.mark.parametrize("text, tz, expected", [
    ("2026-12-24 09:00", "Europe/Berlin", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
    ("2027-07-01 09:00", "Europe/Berlin", datetime(2027, 7, 1, 7, 0, tzinfo=UTC)),
    ("2026-12-24T09:00:00-05:00", "Europe/Berlin", datetime(2026, 12, 24, 14, 0, tzinfo=UTC)),
    ("2026-12-24 09:00", "America/New_York", datetime(2026, 12, 24, 14, 0, tzinfo=UTC)),
    # The autumn hour that happens twice: the first (summer time, fold=0).
    ("2027-10-31 02:30", "Europe/Berlin", datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
])
def test_send_at_in_a_time_zone(text: str, tz: str, expected: datetime) -> None:
    assert parse_send_at(text, tz, NOW) == expected.timestamp()


@pytest.mark.parametrize("text, tz, message", [
    ("2027-03-28 02:30", "Europe/Berlin", "does not exist"),  # the spring gap
    ("2026-11-30 09:00", "UTC", "in the past"),
    ("next tuesday", "UTC", "not a date"),
    ("2026-12-24 09:00", "No/Where", "not a time zone"),
])
def test_send_at_refusals(campaigns: Campaigns, text: str, tz: str, message: str) -> None:
    c = campaigns.create(full_input())
    with pytest.raises(ServiceError, match=message) as info:
        campaigns.schedule(c.id, text, tz, force=True)
    assert info.value.code in ("invalid_schedule", "invalid_campaign")
    assert campaigns.get(c.id).state is CampaignState.DRAFT


def test_schedule_now_uses_the_clock(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    assert campaigns.schedule(c.id, "now", force=True).campaign.send_at == NOW


# --- check -----------------------------------------------------------------------------
def dns_for(keys: DkimKeys, *, spf: bool = True, dkim: bool = True,
            dmarc: str | None = "v=DMARC1; p=quarantine") -> StaticResolver:
    zones: dict[str, dict[str, list[str]]] = {"mx.example.org": {"A": ["192.0.2.25"]}}
    if spf:
        zones["example.org"] = {"TXT": ["v=spf1 ip4:192.0.2.25 -all"]}
    if dkim:
        for s in keys.show("example.org").selectors:
            zones[s.record_name] = {"TXT": [s.record]}
    if dmarc:
        zones["_dmarc.example.org"] = {"TXT": [dmarc]}
    return StaticResolver(zones)


@pytest.fixture
def keys(tmp_path: Path) -> DkimKeys:
    keys = DkimKeys(KeyStore(tmp_path / "dkim"), lambda: ["example.org"],
                    algorithms=("ed25519-sha256",))
    keys.ensure("example.org")
    return keys


def checker(keys: DkimKeys, resolver: StaticResolver) -> object:
    psl = PublicSuffixes.from_text("org\ncom\n")

    def check(domain: str) -> AlignmentCheck:
        return asyncio.run(DnsAlignment(resolver, keys, hostname="mx.example.org",
                                        bounce_domain="example.org",
                                        suffixes=lambda: psl).check(domain))
    return check


def test_check_passes_with_published_records(contacts: Contacts, keys: DkimKeys) -> None:
    campaigns = make(contacts, checker(keys, dns_for(keys)))
    c = campaigns.create(full_input())
    result = campaigns.check(c.id)
    assert result.ok, result.report.to_dict()
    assert result.sample == "anna@example.com"
    assert not result.report.warnings, result.report.to_dict()


@pytest.mark.parametrize("kw, code", [
    ({"spf": False}, "spf-missing"),
    ({"dkim": False}, "dkim-missing"),
    ({"dmarc": None}, "dmarc-missing"),
    ({"dmarc": "v=DMARC1; p=bogus"}, "dmarc-record-invalid"),
])
def test_check_finds_dns_errors(contacts: Contacts, keys: DkimKeys, kw: dict[str, object],
                                code: str) -> None:
    campaigns = make(contacts, checker(keys, dns_for(keys, **kw)))  # type: ignore[arg-type]
    c = campaigns.create(full_input())
    result = campaigns.check(c.id)
    assert not result.ok and code in result.report.codes(), result.report.to_dict()
    with pytest.raises(CheckFailed) as info:
        campaigns.schedule(c.id)
    assert info.value.code == "campaign_check_failed"
    assert campaigns.get(c.id).state is CampaignState.DRAFT
    assert campaigns.schedule(c.id, force=True).campaign.state is CampaignState.SCHEDULED


def test_check_warnings_do_not_block(contacts: Contacts, keys: DkimKeys) -> None:
    resolver = dns_for(keys, dmarc="v=DMARC1; p=none")
    campaigns = make(contacts, checker(keys, resolver))
    c = campaigns.create(full_input())
    result = campaigns.check(c.id)
    assert result.ok and "dmarc-policy-none" in result.report.codes()
    resolver.fail("_dmarc.example.org")
    result = campaigns.check(c.id)
    assert result.ok and "dmarc-lookup-failed" in result.report.codes()
    assert campaigns.schedule(c.id).campaign.state is CampaignState.SCHEDULED


def test_check_of_a_foreign_from_domain(contacts: Contacts, keys: DkimKeys) -> None:
    campaigns = make(contacts, checker(keys, dns_for(keys)))
    c = campaigns.create(full_input())
    campaigns.edit(c.id, CampaignInput(from_address="news@other.com"))
    codes = campaigns.check(c.id).report.codes()
    assert {"spf-domain-not-aligned", "dkim-no-key", "dmarc-missing"} <= codes


def test_check_of_the_content(campaigns: Campaigns) -> None:
    html = ('<p>{{ name }}</p><a href="javascript:alert(1)">x</a><a href="/relative">y</a>'
            '<img src="https://example.org/a.png">' + "<!-- pad -->" * 9000)
    c = campaigns.create(input_from_mapping({"name": "bad", "from": "news@example.org",
                                             "subject": "s", "html": html, "lists": ["news"]}))
    report = campaigns.check(c.id).report
    errors = {f.code for f in report.errors}
    warnings = {f.code for f in report.warnings}
    assert {"unsafe-link", "relative-link", "no-unsubscribe-link", "html-clipped"} <= errors
    assert {"image-without-alt", "text-from-html", "no-pool", "alignment-not-checked"} <= \
        warnings
    empty = campaigns.create(CampaignInput(name="empty"))
    assert {"no-from-address", "no-lists", "no-body"} <= {
        f.code for f in campaigns.check(empty.id).report.errors}


def test_check_with_an_http_public_url(contacts: Contacts) -> None:
    campaigns = make(contacts, url="http://127.0.0.1:8080")
    c = campaigns.create(full_input())
    codes = {f.code for f in campaigns.check(c.id).report.findings
             if f.severity is Severity.ERROR}
    assert {"public-url-not-https", "no-one-click"} <= codes


def test_render_failure_for_a_member_is_an_error(campaigns: Campaigns) -> None:
    c = campaigns.create(input_from_mapping({
        "name": "r", "from": "news@example.org", "subject": "s", "lists": ["news"],
        "text": "{{ attributes.missing.deeper }} {{ unsubscribe_url }}"}))
    assert "render-failed" in {f.code for f in campaigns.check(c.id).report.errors}
    ab = campaigns.create(input_from_mapping({
        "name": "ab", "from": "news@example.org", "subject": "s", "lists": ["news"],
        "text": "{{ unsubscribe_url }}",
        "ab": {"subjects": ["fine", "{{ attributes.missing.deeper }}"]}}))
    failed = [f for f in campaigns.check(ab.id).report.errors if f.code == "ab-subject-failed"]
    assert len(failed) == 1 and "subject 2" in failed[0].message


# --- preview, test message, report -----------------------------------------------------
def test_preview_for_a_chosen_contact(campaigns: Campaigns, contacts: Contacts) -> None:
    contacts.create("bob@example.net", "Bob")
    c = campaigns.create(full_input())
    preview = campaigns.preview(c.id, "bob@example.net")
    assert preview.subject == "Hi Bob" and "Hello Bob" in preview.text
    assert preview.html is not None and 'href="https://example.org/offer"' in preview.html
    assert campaigns.preview(c.id).subject == "Hi Anna"
    assert code_of(lambda: campaigns.preview(c.id, "nobody@example.net")) == "no_such_contact"


def test_test_message_follows_the_conventions(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    mail = campaigns.test_message(c.id, "Tester@Example.NET")
    assert mail.recipient == "tester@example.net" and mail.pool == "bulk"
    assert parse_verp_address(mail.sender, VERP_KEY) == CampaignRecipient(c.id, 0)
    msg = email.message_from_bytes(mail.content, policy=email.policy.default)
    # Anna's message (her name and attributes) to the test address.
    assert msg["Subject"] == "[Test] Hi Anna" and msg["To"] == "Anna <tester@example.net>"
    # Links as written (none stored) and a Message-ID of its own each time.
    assert "/t/" not in mail.content.decode() and not campaigns.store.links(c.id)
    again = email.message_from_bytes(campaigns.test_message(c.id, "tester@example.net")
                                     .content, policy=email.policy.default)
    assert again["Message-ID"] != msg["Message-ID"]
    assert msg["From"] == "Example News <news@example.org>"
    https, mailto = (u.strip(" <>") for u in str(msg["List-Unsubscribe"]).split(","))
    assert https.startswith("https://news.example.org/u/")
    token = mail.sender.split("+", 1)[1].split("@")[0]
    assert mailto == f"mailto:unsubscribe+{token}@example.org"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058 3.1
    assert msg["List-Id"] == "<news.example.org>"  # RFC 2919
    assert msg["Feedback-ID"] == f"{c.id}:news:campaign:mx.example.org"
    assert code_of(lambda: campaigns.test_message(c.id, "not an address")) == "invalid_address"


def test_report_is_built_from_the_stored_events(campaigns: Campaigns) -> None:
    c = campaigns.create(full_input())
    campaigns.store.add_links(c.id, 0, ["https://example.org/offer"])
    campaigns.store.record_events(c.id, [
        CampaignEvent(EventKind.QUEUED, NOW, 1, "example.com"),
        CampaignEvent(EventKind.DELIVERED, NOW + 5, 1, "example.com"),
        CampaignEvent(EventKind.OPENED, NOW + 60, 1, "example.com"),
        CampaignEvent(EventKind.CLICKED, NOW + 70, 1, "example.com", link=0),
        CampaignEvent(EventKind.QUEUED, NOW, 2, "example.net"),
    ])
    report = campaigns.report(c.id)
    assert (report.recipients, report.delivered, report.queued) == (2, 1, 1)
    assert report.links[0].url == "https://example.org/offer"
    assert report.clicks.unique_human == 1
