"""``mailyard campaign ...`` through the real argument parser on a temporary data
directory; ``check`` and ``schedule`` ask a real DNS server on loopback
(tests/support/dnsserver.py) with ``--dns``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailyard.cli.main import main
from tests.support.dnsserver import DnsTestServer

Cli = Callable[..., tuple[int, str, str]]
HTML = ('<p>Hello {{ name }}</p><p><a href="https://example.org/offer">Offer</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer({"mx.example.test": {"A": ["127.0.0.1"]},
                            "example.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                            "_dmarc.example.test": {"TXT": ["v=DMARC1; p=reject"]}}).start()
    yield server
    server.stop()


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(
        f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
        'local_domains = ["example.test"]\n[listen]\nsmtp = ["127.0.0.1:2525"]\n'
        '[http]\npublic_url = "https://news.example.test"\n'
        '[delivery]\ndns_timeout = 2.0\n[[delivery.pools]]\nname = "bulk"\n')
    monkeypatch.chdir(tmp_path)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config_path)])
        out, err = capsys.readouterr()
        return code, out, err
    return cli


@pytest.fixture
def ready(run: Cli, dns: DnsTestServer, tmp_path: Path) -> DnsTestServer:
    """A list with a confirmed member, the domain's DKIM key published, a campaign."""
    assert run("list", "create", "news")[0] == 0
    (tmp_path / "people.csv").write_text("email,name,plan\nanna@example.org,Anna,pro\n")
    assert run("contact", "import", "people.csv", "--list", "news")[0] == 0
    code, out, _ = run("domain", "records", "example.test", "--json")
    assert code == 0
    for record in json.loads(out)["records"]:
        if record["kind"] == "dkim":
            dns.set(record["name"], "TXT", [record["value"]])
    (tmp_path / "body.html").write_text(HTML)
    (tmp_path / "c.toml").write_text(
        'name = "December"\nfrom = "News <news@example.test>"\nsubject = "Hi {{ name }}"\n'
        'html_file = "body.html"\nlists = ["news"]\npool = "bulk"\nrate = 100\n'
        '[domain_caps]\n"gmail.com" = 300\n'
        '[ab]\nsubjects = ["A", "B"]\nmetric = "clicks"\n')
    code, out, err = run("campaign", "create", "c.toml", "--text", "body.html")
    assert code == 0, err
    assert "campaign 1 (December) created" in out
    return dns


def test_create_show_edit_list(run: Cli, ready: DnsTestServer) -> None:
    code, out, _ = run("campaign", "show", "December", "--json")
    shown = json.loads(out)
    assert shown["spec"]["ab"] == {"subjects": ["A", "B"], "sample_percent": 20,
                                   "wait_hours": 4, "metric": "clicks"}
    assert shown["spec"]["domain_caps"] == {"gmail.com": 300} and shown["state"] == "draft"
    code, out, _ = run("campaign", "show", "1")
    assert "A/B: 2 subjects" in out and "cap gmail.com: 300/hour" in out
    assert run("campaign", "edit", "1", "--subject", "New", "--no-ab",
               "--domain-cap", "web.de=50")[0] == 0
    spec = json.loads(run("campaign", "show", "1", "--json")[1])["spec"]
    assert spec["subject"] == "New" and "ab" not in spec and spec["domain_caps"] == {
        "web.de": 50}
    code, out, _ = run("campaign", "list")
    assert "December" in out and "-- 1 campaign(s)" in out


@pytest.mark.parametrize("args, message", [
    (["--name", "x", "--domain-cap", "gmail.com"], "DOMAIN=PER_HOUR"),
    (["--name", "x", "--timezone", "Nowhere/City"], "not a time zone"),
    (["--name", "x", "--html", "/nonexistent/file.html"], "cannot read"),
    (["--name", "x", "--list", "missing"], "no list"),
    (["--name", "x", "--ab-subject", "only one"], "2 to 10"),
    (["--name", "December"], "exists"),
    (["bad.toml"], "not valid TOML"),
])
def test_create_refusals(run: Cli, ready: DnsTestServer, tmp_path: Path,
                         args: list[str], message: str) -> None:
    (tmp_path / "bad.toml").write_text("name = \n")
    code, _, err = run("campaign", "create", *args)
    assert code in (1, 2) and message in err, err
    assert "Traceback" not in err


def test_check_and_schedule_in_a_time_zone(run: Cli, ready: DnsTestServer) -> None:
    dns = ready.server_spec
    code, out, err = run("campaign", "check", "1", "--dns", dns)
    assert code == 0, out + err
    assert "0 error(s)" in out and "sample anna@example.org" in out
    code, out, err = run("campaign", "schedule", "1", "--at", "2030-12-24 09:00",
                         "--tz", "Europe/Berlin", "--dns", dns)
    assert code == 0, err
    assert "scheduled for 2030-12-24 09:00:00 CET (Europe/Berlin)" in out
    code, _, err = run("campaign", "pause", "1")
    assert code == 1 and "only a sending campaign can be paused" in err
    assert run("campaign", "unschedule", "1")[0] == 0
    ready.set("_dmarc.example.test", "TXT", ["v=spf1 -all"])  # no DMARC record any more
    code, out, _ = run("campaign", "check", "1", "--dns", dns, "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"]
    assert {"dmarc-missing", "dmarc-not-aligned"} <= {f["code"] for f in result["findings"]}
    code, out, err = run("campaign", "schedule", "1", "--dns", dns)
    assert code == 1 and "check found" in err and "dmarc-missing" in out
    assert json.loads(run("campaign", "show", "1", "--json")[1])["state"] == "draft"
    assert run("campaign", "schedule", "1", "--force", "--dns", dns)[0] == 0
    code, _, err = run("campaign", "schedule", "1", "--at", "yesterday", "--dns", dns)
    assert code == 1 and "is scheduled" in err
    assert run("campaign", "cancel", "1")[0] == 0
    code, _, err = run("campaign", "resume", "1")
    assert code == 1 and "cancelled" in err
    assert run("campaign", "check", "1", "--dns", "not a server")[0] == 2


def test_preview_test_and_report(run: Cli, ready: DnsTestServer, tmp_path: Path) -> None:
    code, out, _ = run("campaign", "preview", "1")
    assert code == 0 and "Subject: Hi Anna" in out and "Hello Anna" in out
    code, out, _ = run("campaign", "preview", "1", "--raw")
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out
    code, _, err = run("campaign", "preview", "1", "--contact", "nobody@example.org")
    assert code == 1 and "no contact" in err
    code, out, err = run("campaign", "test", "1", "--to", "me@example.net")
    assert code == 0, err
    qid = out.split()[-1]
    code, out, _ = run("queue", "show", qid, "--json")
    entry = json.loads(out)
    assert entry["sender"].startswith("bounces+") and entry["sender"].endswith("@example.test")
    assert [r["address"] for r in entry["recipients"]] == ["me@example.net"]
    code, out, _ = run("queue", "show", qid, "--headers")
    assert "Subject: [Test] Hi Anna" in out and "To: Anna <me@example.net>" in out, out
    assert "DKIM-Signature:" in out and "List-Id: <news.example.test>" in out
    code, out, _ = run("campaign", "report", "1", "--json")
    report = json.loads(out)
    assert report["campaign_id"] == 1 and report["recipients"] == 0
    code, out, _ = run("campaign", "report", "December")
    assert code == 0 and "Recipients" in out


def test_report_link_opens_the_page_until_it_expires(run: Cli, ready: DnsTestServer,
                                                     tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from mailyard.config import load_config
    from mailyard.services.setup import open_campaign_reports, open_campaigns

    code, out, err = run("campaign", "report-link", "December", "--ttl", "600")
    assert code == 0, err
    url = urlsplit(out.strip())
    assert (url.scheme, url.netloc, url.path) == ("https", "news.example.test",
                                                  "/reports/campaigns/1")
    assert "valid until" in err
    token = parse_qs(url.query)["token"][0]
    # The key the HTTP worker checks the token with: the same server secret.
    config = load_config(tmp_path / "mailyard.toml")
    reports = open_campaign_reports(config, open_campaigns(config).store)
    assert reports.check(1, token) and not reports.check(2, token)
    reports.clock = lambda: time.time() + 601
    assert not reports.check(1, token)
    code, out, _ = run("campaign", "report-link", "1", "--json")
    link = json.loads(out)
    assert code == 0 and link["expires"] > time.time() + 86000
    for bad in ("59", "2592001"):
        code, _, err = run("campaign", "report-link", "1", "--ttl", bad)
        assert code == 2 and "ttl must be" in err, bad
    with pytest.raises(SystemExit) as usage:
        run("campaign", "report-link", "1", "--ttl", "x")
    assert usage.value.code == 2
    code, _, err = run("campaign", "report-link", "nope")
    assert code == 1 and "no campaign" in err
