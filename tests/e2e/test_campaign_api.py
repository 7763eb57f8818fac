"""Campaigns over the real HTTP service and the CLI on the same data directory.

``mailyard serve`` with ``listen.http``, a dedicated pool and a loopback DNS server
holding the From domain's SPF, DKIM and DMARC records; driven with httpx: create (and
the validation errors as RFC 9457 problems), the check (live DNS), schedule in a time
zone, the life cycle (409 for a move the state does not allow), a test message
delivered to a local Maildir with its VERP sender and RFC 2369/8058 list fields, the
report (the same numbers as ``mailyard campaign report --json``), the scope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import httpx
import pytest

from mailyard.bulk.campaigns.model import CampaignState
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.sqlite import MIGRATIONS
from mailyard.sqlitedb import Database
from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PROBLEM = "application/problem+json"
C = "/api/v1/campaigns"
HTML = ('<p>Hello {{ name }}</p><p><a href="https://example.org/offer">Offer</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer({"mx.example.test": {"A": ["127.0.0.1"]},
                        "example.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                        "_dmarc.example.test": {"TXT": ["v=DMARC1; p=quarantine"]}}) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns: DnsTestServer
           ) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("campaigns"), http=True, overrides={
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 2.0,
                     "pools": [{"name": "bulk", "source_addresses": ["127.0.0.1"]}]}})
    srv.start(timeout=90)  # a busy machine: the workers take a while
    try:
        srv.add_user("anna@example.test", "x")
        for record in json.loads(srv.cli("domain", "records", "example.test", "--json")
                                 .stdout)["records"]:
            if record["kind"] == "dkim":
                dns.set(record["name"], "TXT", [record["value"]])
        yield srv
    finally:
        srv.stop()


def _key(server: MailyardServer, name: str, scope: str) -> str:
    out = server.cli("apikey", "create", "--name", name, "--scope", scope).stdout.decode()
    return out.splitlines()[0].strip()


@pytest.fixture(scope="module")
def client(server: MailyardServer) -> Iterator[httpx.Client]:
    contacts_key = _key(server, "contacts", "contacts")
    with httpx.Client(base_url=server.http_url, timeout=30,
                      headers={"Authorization": f"Bearer {contacts_key}"}) as c:
        assert c.post("/api/v1/lists", json={"name": "news"}).status_code == 201
        assert c.post("/api/v1/contacts", json={"address": "anna@example.test",
                                                "name": "Anna"}).status_code == 201
        assert c.put("/api/v1/lists/news/members/anna@example.test",
                     json={"status": "confirmed"}).status_code == 200
    key = _key(server, "campaigns", "campaigns")
    with httpx.Client(base_url=server.http_url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["type"] == f"urn:mailyard:problem:{code}" and body["code"] == code
    assert "Traceback" not in resp.text
    return body


def _create(client: httpx.Client, name: str) -> dict[str, object]:
    resp = client.post(C, json={"name": name, "from": "News <news@example.test>",
                                 "subject": "Hello {{ name }}", "html": HTML,
                                 "lists": ["news"], "pool": "bulk", "rate_per_minute": 600,
                                 "domain_caps": {"gmail.com": 300},
                                 "ab": {"subjects": ["A", "B"], "metric": "clicks"}})
    assert resp.status_code == 201, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_scope_and_validation(server: MailyardServer, client: httpx.Client) -> None:
    contacts_key = _key(server, "other", "contacts")
    _problem(httpx.get(server.http_url + "/api/v1/campaigns",
                       headers={"Authorization": f"Bearer {contacts_key}"}), 403,
             "forbidden_scope")
    _problem(httpx.post(server.http_url + "/api/v1/campaigns/1/pause",
                        headers={"Authorization": f"Bearer {contacts_key}"}), 403,
             "forbidden_scope")
    _problem(httpx.get(server.http_url + "/api/v1/campaigns"), 401, "unauthorized")
    _problem(client.post(C, json={"subject": "no name"}), 422, "validation_failed")
    _problem(client.post(C, json={"name": "x", "colour": "red"}), 422, "validation_failed")
    _problem(client.post(C, json={"name": "x", "timezone": "Mars/Base"}), 422,
             "invalid_campaign")
    _problem(client.post(C, json={"name": "x", "lists": ["nope"]}), 404, "no_such_list")
    _problem(client.post(C, json={"name": "x", "html": "{% for %}"}), 422,
             "invalid_template")
    _problem(client.post(C, json={"name": "x", "ab": {"subjects": ["one"]}}), 422,
             "validation_failed")
    _problem(client.get(f"{C}/99999"), 404, "no_such_campaign")
    _problem(client.get(f"{C}/99999999999999999999999"), 422, "validation_failed")
    paths = httpx.get(server.http_url + "/api/openapi.json").json()["paths"]
    assert {"/api/v1/campaigns", "/api/v1/campaigns/{campaign_id}/schedule",
            "/api/v1/campaigns/{campaign_id}/report"} <= set(paths)


def test_check_schedule_and_life_cycle(client: httpx.Client) -> None:
    created = _create(client, "December")
    cid = created["id"]
    assert created["state"] == "draft"
    assert created["spec"]["ab"]["metric"] == "clicks"  # type: ignore[index]
    _problem(client.post(C, json={"name": "December"}), 409, "campaign_exists")
    check = client.get(f"{C}/{cid}/check").json()
    codes = {f["code"]: f["severity"] for f in check["findings"]}
    assert check["sample"] == "anna@example.test"
    # The DNS part passes (SPF, DKIM, DMARC published on the loopback DNS server);
    # the public URL of this test server is http, so one-click unsubscribe cannot work.
    assert not {"spf-not-aligned", "dkim-not-aligned", "dmarc-not-aligned",
                "dmarc-missing", "dkim-missing", "spf-missing"} & set(codes), codes
    assert codes["public-url-not-https"] == "error" and check["ok"] is False
    body = _problem(client.post(f"{C}/{cid}/schedule", json={"at": "now"}), 422,
                    "campaign_check_failed")
    assert any(f["code"] == "public-url-not-https" for f in body["findings"])  # type: ignore[attr-defined]
    resp = client.post(f"{C}/{cid}/schedule", json={"at": "2030-12-24 09:00",
                                                 "timezone": "Europe/Berlin", "force": True})
    assert resp.status_code == 200, resp.text
    campaign = resp.json()["campaign"]
    assert campaign["state"] == "scheduled"
    assert campaign["send_at"] == datetime(2030, 12, 24, 8, 0, tzinfo=UTC).timestamp()
    _problem(client.patch(f"{C}/{cid}", json={"subject": "x"}), 409, "campaign_state")
    _problem(client.post(f"{C}/{cid}/pause"), 409, "campaign_state")
    _problem(client.post(f"{C}/{cid}/schedule", json={"force": True}), 409, "campaign_state")
    assert client.post(f"{C}/{cid}/unschedule").json()["state"] == "draft"
    patched = client.patch(f"{C}/{cid}", json={"subject": "Changed", "ab": {}}).json()
    assert patched["spec"]["subject"] == "Changed" and "ab" not in patched["spec"]
    _problem(client.post(f"{C}/{cid}/schedule", json={"at": "2027-03-28 02:30",
                                                    "timezone": "Europe/Berlin",
                                                    "force": True}), 422, "invalid_schedule")
    assert client.post(f"{C}/{cid}/cancel").json()["state"] == "cancelled"
    _problem(client.post(f"{C}/{cid}/resume"), 409, "campaign_state")
    listed = client.get(C, params={"state": "cancelled"}).json()
    assert [c["id"] for c in listed] == [cid]


def test_test_message_reaches_the_mailbox(server: MailyardServer,
                                          client: httpx.Client) -> None:
    cid = _create(client, "Tested")["id"]
    preview = client.get(f"{C}/{cid}/preview").json()
    assert preview["subject"] == "Hello Anna" and preview["address"] == "anna@example.test"
    resp = client.post(f"{C}/{cid}/test", json={"to": "anna@example.test"})
    assert resp.status_code == 202, resp.text
    messages = server.wait_for_messages("anna@example.test", 1)
    assert messages, server.output()
    msg = message_from_bytes(messages[-1], policy=default)
    assert msg["Subject"] == "[Test] Hello Anna"
    assert msg.get_body(("plain",)).get_content().startswith("Hello Anna")  # type: ignore[union-attr]
    assert str(msg["Return-Path"]).strip("<>").startswith("bounces+")
    assert str(msg["Return-Path"]).strip("<>").endswith("@example.test")
    assert "mailto:unsubscribe+" in str(msg["List-Unsubscribe"])
    assert msg["List-Id"] == "<news.example.test>"
    assert msg["Feedback-ID"] == f"{cid}:news:campaign:mx.example.test"
    assert msg["DKIM-Signature"] is not None
    _problem(client.post(f"{C}/{cid}/test", json={"to": "not an address"}), 422,
             "invalid_address")


def test_report_matches_the_cli(server: MailyardServer, client: httpx.Client) -> None:
    cid = int(str(_create(client, "Reported")["id"]))
    store = SqliteCampaignStore(Database(Path(server.data_dir) / "bulk.db", MIGRATIONS,
                                         secure_delete=True))
    store.add_links(cid, 0, ["https://example.org/offer"])
    t = 1_800_000_000.0
    store.record_events(cid, [
        CampaignEvent(EventKind.QUEUED, t, 1, "example.test"),
        CampaignEvent(EventKind.DELIVERED, t + 5, 1, "example.test"),
        CampaignEvent(EventKind.OPENED, t + 60, 1, "example.test"),
        CampaignEvent(EventKind.OPENED, t + 61, 1, "example.test", machine=True),
        CampaignEvent(EventKind.CLICKED, t + 70, 1, "example.test", link=0),
        CampaignEvent(EventKind.QUEUED, t, 2, "gmail.com"),
        CampaignEvent(EventKind.BOUNCED, t + 9, 2, "gmail.com"),
    ])
    api = client.get(f"{C}/{cid}/report").json()
    cli = json.loads(server.cli("campaign", "report", str(cid), "--json").stdout)
    assert api == cli
    assert (api["recipients"], api["delivered"], api["bounced"]) == (2, 1, 1)
    assert api["opens"]["total_all"] == 2 and api["links"][0]["url"] == \
        "https://example.org/offer"
    table = server.cli("campaign", "report", "Reported").stdout.decode()
    assert "Recipients" in table and "example.org/offer" in table
    shown = json.loads(server.cli("campaign", "show", str(cid), "--json").stdout)
    assert shown["state"] == CampaignState.DRAFT.value
