"""``mailyard template ...`` through the real argument parser, and the API's
``/api/v1/templates`` (in-process, httpx's ASGI transport) on the same data
directory: one service behind both, so what one stores the other reads, and a
template stored by the CLI is what ``POST /api/v1/messages`` renders."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailyard.apikeys.sqlite import SqliteKeyStore
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.bulk.templates.mime import Mailbox
from mailyard.http.app import create_app
from mailyard.http.context import HttpContext
from mailyard.http.ratelimit import RateLimiter
from mailyard.services.apikeys import ApiKeys
from mailyard.services.contacts import ConfirmationMail, Contacts, Settings
from mailyard.services.messages import MessageRequest, TransactionalMail
from mailyard.transactional.sqlite import SqliteTransactionalStore
from tests.unit.cli_accounts.test_cli_accounts import Cli
from tests.unit.transactional.test_idempotency import KEY, FakeIngest

HTML = "<p>Hello {{ name }}, your code is <b>{{ code }}</b>.</p>"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
                           'local_domains = ["example.test"]\n')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "welcome.html").write_text(HTML)
    (tmp_path / "welcome.txt").write_text("Hello {{ name }}, your code is {{ code }}.\n")
    return Cli(config_path, capsys, monkeypatch)


class Api:
    """The HTTP app over ``data`` with a transactional-mail service and a send key."""

    def __init__(self, data: Path) -> None:
        self.ingest = FakeIngest()
        self.service = TransactionalMail(
            SqliteTransactionalStore(data / "transactional.db"),
            SqliteContactStore(data / "bulk.db", lambda a: a),
            lambda d: d == "example.test", self.ingest, lambda qid: None, b"i" * 32,
            b"v" * 32, "example.test")
        contacts = Contacts(SqliteContactStore(data / "bulk.db", lambda a: a),
                            Settings("n@example.test", "http://t", b"k" * 32, 3600,
                                     "mx.example.test"))
        keys = ApiKeys(SqliteKeyStore(data / "apikeys.db"))
        self.key = keys.create("app", "send").secret

        async def mailer(mail: ConfirmationMail) -> str:
            return "QID"

        self.app = create_app(HttpContext(contacts, keys, mailer, RateLimiter(5, 60),
                                          messages=self.service))

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, url, headers={
                    "Authorization": f"Bearer {self.key}"}, **kw)
        return asyncio.run(go())


def test_put_list_show_delete(run: Cli) -> None:
    code, out, err = run("template", "put", "welcome", "--subject", "Welcome, {{ name }}",
                         "--html", "welcome.html", "--text", "welcome.txt")
    assert code == 0, err
    assert "template welcome stored" in out
    code, out, _ = run("template", "list")
    assert code == 0 and out.startswith("welcome ") and "-- 1 template(s)" in out
    code, out, _ = run("template", "show", "welcome", "--json")
    shown = json.loads(out)
    assert (shown["name"], shown["subject"], shown["html"]) == (
        "welcome", "Welcome, {{ name }}", HTML)
    code, out, _ = run("template", "show", "welcome")
    assert "subject: Welcome, {{ name }}" in out and HTML in out
    # Replacing keeps one template; the body can come from standard input.
    code, _, err = run("template", "put", "welcome", "--subject", "Hi", "--text", "-",
                       stdin="Hi {{ name }}")
    assert code == 0, err
    code, out, _ = run("template", "list", "--json")
    [only] = json.loads(out)
    assert (only["subject"], only["html"], only["text"]) == ("Hi", None, "Hi {{ name }}")
    assert run("template", "delete", "welcome")[0] == 0
    code, _, err = run("template", "show", "welcome")
    assert code == 1 and "no template 'welcome'" in err
    code, _, err = run("template", "delete", "welcome")
    assert code == 1 and "no template" in err


@pytest.mark.parametrize(("args", "message"), [
    (["../x", "--subject", "s", "--html", "welcome.html"], "template name"),
    (["a" * 65, "--subject", "s", "--html", "welcome.html"], "template name"),
    (["w", "--subject", "s"], "needs an HTML or a text body"),
    (["w", "--subject", "{{ x", "--html", "welcome.html"], "subject"),
    (["w", "--subject", "s", "--html", "missing.html"], "cannot read missing.html"),
    (["w", "--subject", "s", "--html", "-", "--text", "-"], "standard input"),
    (["w", "--subject", "x" * 2049, "--html", "welcome.html"], "at most 2048"),
])
def test_put_refusals_are_usage_errors(run: Cli, args: list[str], message: str) -> None:
    code, _, err = run("template", "put", *args)
    assert code == 2 and message in err, err
    assert "Traceback" not in err
    code, out, _ = run("template", "list", "--json")
    assert json.loads(out) == []


def test_cli_and_api_share_the_templates(run: Cli, data: Path) -> None:
    assert run("template", "put", "welcome", "--subject", "Welcome, {{ name }}",
               "--html", "welcome.html")[0] == 0
    api = Api(data)
    listed = api.call("GET", "/api/v1/templates")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()] == ["welcome"]
    assert api.call("GET", "/api/v1/templates/welcome").json()["html"] == HTML
    # What the CLI stored is what a message naming it renders.
    result = asyncio.run(api.service.send(KEY, MessageRequest(
        Mailbox("app@example.test"), (Mailbox("ann@example.net", "Ann"),),
        template="welcome", variables={"code": "4711"})))
    assert result.status == 202
    [(_, _, message)] = api.ingest.queued
    assert b"Subject: Welcome, Ann" in message and b"4711" in message
    # Stored over the API, read by the CLI; the same refusals both ways.
    assert api.call("PUT", "/api/v1/templates/reset", json={
        "subject": "Reset", "text": "Code {{ code }}"}).status_code == 200
    code, out, _ = run("template", "show", "reset", "--json")
    assert code == 0 and json.loads(out)["text"] == "Code {{ code }}"
    bad = api.call("PUT", "/api/v1/templates/bad..name!", json={"subject": "s", "text": "t"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_template_name"
    assert api.call("DELETE", "/api/v1/templates/reset").status_code == 204
    assert run("template", "show", "reset")[0] == 1
    assert api.call("GET", "/api/v1/templates/welcome").status_code == 200
