"""The whole bulk journey as a person makes it, against a real ``mailyard serve`` over
SMTP and HTTP: a double opt-in list (contacts imported, one person subscribing through
the public form and confirming the link mailed to them), a campaign written over the
API, checked and scheduled with the CLI, sent through a dedicated pool (the next hop sees
the pool's source address), opened, clicked and unsubscribed from over HTTP, and its
report read from the CLI, the API and the HTML page, which agree."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

READERS = 12
HTML = """<html><head><style>p { color: #333; }</style></head><body>
<p>Hello {{ name }}, you are on the {{ attributes.plan | default("free") }} plan.</p>
<p><a href="https://shop.example/offer">The offer</a></p>
<p><img src="https://shop.example/logo.png" alt="Logo"></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""


def _html(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return msg.get_body(("html",)).get_content()


def _local(url: str, base: str) -> str:
    """A link of the message, sent to this test's HTTP listener."""
    parts = urlsplit(url)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


def _report(srv: MailyardServer, campaign_id: int) -> dict:
    out = srv.cli("campaign", "report", str(campaign_id), "--json")
    return json.loads(out.stdout)


def test_first_campaign_from_list_to_report(tmp_path):
    port = free_port()
    srv = MailyardServer(tmp_path, http=True, overrides={
        "delivery": {
            "pools": [{"name": "news", "source_addresses": ["127.0.0.2"],
                       "helo_name": "news.example.test"}],
            "transports": [{"domain": "readers.test", "nexthop": f"127.0.0.1:{port}",
                            "tls": "none"}]}})
    srv.cli("domain", "dkim", "rotate", "example.test")
    people = tmp_path / "people.csv"
    people.write_text("email,name,plan\n" + "".join(
        f"r{i}@readers.test,Reader {i},{'pro' if i % 2 else 'free'}\n" for i in range(READERS)))
    with FakeMx("127.0.0.1", port) as mx, srv:
        base = srv.http_url
        # A double opt-in list: the imported people gave their consent elsewhere; a new
        # reader subscribes through the form and confirms the mailed link.
        srv.cli("list", "create", "news", "--double-opt-in")
        srv.cli("contact", "import", str(people), "--list", "news", "--status", "confirmed")
        sub = httpx.post(base + "/subscribe/news", data={"email": "new@readers.test",
                                                         "name": "New Reader"}, timeout=30)
        assert sub.status_code == 200, sub.text
        confirmation = mx.wait_messages(1, timeout=60)[0]
        assert confirmation.recipients == ["new@readers.test"]
        text = confirmation.data.decode(errors="replace").replace("=\r\n", "")
        link = re.search(r"(http://\S+/confirm/[A-Za-z0-9_\-.~=]+)", text)
        assert link, text
        assert httpx.post(_local(link.group(1), base), timeout=30).status_code == 200

        # The campaign, written over the API.
        with srv.api_client("campaigns") as api:
            made = api.post("/api/v1/campaigns", json={
                "name": "first", "from": "news@example.test", "from_name": "Example News",
                "subject": "News for {{ name }}", "html": HTML, "lists": ["news"],
                "pool": "news"})
            assert made.status_code == 201, made.text
            campaign_id = made.json()["id"]
            check = api.get(f"/api/v1/campaigns/{campaign_id}/check")
            assert check.status_code == 200, check.text

            # No DNS records for example.test here: the check finds errors, and
            # scheduling refuses until forced.
            refused = srv.cli("campaign", "schedule", str(campaign_id), check=False)
            assert refused.returncode != 0
            srv.cli("campaign", "schedule", str(campaign_id), "--force")

            got = mx.wait_messages(1 + READERS + 1, timeout=180)
            sent = [m for m in got if m.mail_from.startswith("bounces+")]
            assert sorted(m.recipients[0] for m in sent) == sorted(
                [f"r{i}@readers.test" for i in range(READERS)] + ["new@readers.test"])
            campaign_sessions = {m.session for m in sent}
            assert {s.peer for s in mx.sessions if s.number in campaign_sessions} == {
                "127.0.0.2"}

            # One reader opens, clicks and unsubscribes.
            reader = next(m for m in sent if m.recipients == ["r3@readers.test"])
            html = _html(reader.data)
            pixel = re.search(r'src="([^"]+/t/o/[^"]+)"', html).group(1)
            click = re.search(r'href="([^"]+/t/c/[^"]+)"', html).group(1)
            unsubscribe = re.search(r'href="([^"]+/u/[^"]+)"', html).group(1)
            seen = httpx.get(_local(pixel, base), timeout=30)
            assert seen.status_code == 200 and seen.headers["content-type"] == "image/gif"
            went = httpx.get(_local(click, base), timeout=30, follow_redirects=False)
            assert went.status_code == 302
            assert went.headers["location"] == "https://shop.example/offer"
            page = httpx.get(_local(unsubscribe, base), timeout=30)
            assert page.status_code == 200 and "<form" in page.text
            done = httpx.post(_local(unsubscribe, base), timeout=30,
                              data={"List-Unsubscribe": "One-Click"})
            assert done.status_code == 200

            # The report: every message delivered, the reader's open, click and
            # unsubscribe counted; the CLI, the API and the page agree.
            deadline = time.monotonic() + 60
            while True:
                report = _report(srv, campaign_id)
                if (report["delivered"] == READERS + 1 and report["unsubscribed"] == 1
                        and report["opens"]["total_all"] >= 1
                        and report["clicks"]["total_all"] >= 1):
                    break
                assert time.monotonic() < deadline, report
                time.sleep(0.5)
            assert report["recipients"] == READERS + 1 and report["bounced"] == 0
            assert report["links"][0]["url"] == "https://shop.example/offer"
            assert api.get(f"/api/v1/campaigns/{campaign_id}/report").json() == report
            shown = srv.cli("campaign", "show", str(campaign_id), "--json")
            assert json.loads(shown.stdout)["state"] == "finished"
        member = srv.cli("list", "show", "news", "--json")
        assert json.loads(member.stdout)["members"]["unsubscribed"] == 1
        url = srv.cli("campaign", "report-link", str(campaign_id)).stdout.decode().strip()
        page = httpx.get(_local(url, base), timeout=30)
        assert page.status_code == 200 and "<svg" in page.text
        assert str(READERS + 1) in page.text
