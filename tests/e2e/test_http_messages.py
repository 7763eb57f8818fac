"""Transactional messages end to end: ``POST /api/v1/messages`` on the real ``mailyard
serve`` over HTTP, the mail delivered to a local Maildir (or, for a pool key, to a
fake next hop), checked as it arrives.

* 202, then the message in the mailbox: DKIM-signed (verified against the published
  key), the Return-Path a VERP address that decodes to the answered id, the
  Message-ID the answer gave;
* a stored template rendered with variables; raw parts with CR/LF in the subject and
  names stay one header field; a template that tries the sandbox's internals is
  refused with a problem document;
* Idempotency-Key: twice in a row, and 10 at once, give one message and the same
  answer; the same key with another body is 422;
* a suppressed recipient is not sent to and listed as suppressed; all suppressed: 422;
* over the From user's sending limit: 429 with Retry-After;
* a key bound to pool "tx": the next hop sees the pool's source address 127.0.0.2;
* a key without the send scope: 403; a From outside the local domains: 403.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default

import httpx
import pytest

from mailyard.daemon.secret import load_server_secret
from mailyard.dkim.result import DkimStatus
from mailyard.dkim.verify import verify_message
from mailyard.dns.static import StaticResolver
from mailyard.feedback.verp import TransactionalMessage, parse_verp_address, verp_key
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def mx() -> Iterator[FakeMx]:
    with FakeMx("127.0.0.1", free_port()) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mx: FakeMx) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("messages"), http=True, overrides={
        "http": {"max_recipients": 5},
        "delivery": {
            "pools": [{"name": "tx", "source_addresses": ["127.0.0.2"],
                       "helo_name": "tx.pool.test"}],
            "transports": [{"domain": "remote.test", "nexthop": f"127.0.0.1:{mx.port}",
                            "tls": "none"}]}})
    for user in ("app", "limited", "ann", "bob", "carol", "dave", "eve"):
        srv.add_user(f"{user}@example.test", "x")
    srv.cli("domain", "dkim", "rotate", "example.test")
    with srv:
        yield srv


def _key(server: MailyardServer, name: str, scope: str, *extra: str) -> str:
    out = server.cli("apikey", "create", "--name", name, "--scope", scope, *extra)
    return out.stdout.decode().splitlines()[0].strip()


@pytest.fixture(scope="module")
def client(server: MailyardServer) -> Iterator[httpx.Client]:
    key = _key(server, "app", "send")
    with httpx.Client(base_url=server.http_url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["code"] == code and body["type"] == f"urn:mailyard:problem:{code}"
    assert "Traceback" not in resp.text
    return body


def _raw(to: list[object], subject: str = "Your receipt", **extra: object) -> dict[str, object]:
    return {"from": {"address": "app@example.test", "name": "The App"}, "to": to,
            "subject": subject, "html": "<p>Thanks for your <b>order</b>.</p>", **extra}


def test_message_arrives_signed_with_verp_return_path(server: MailyardServer,
                                                      client: httpx.Client) -> None:
    resp = client.post("/api/v1/messages", json=_raw(["ann@example.test"], tags=["receipt"]))
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["recipients"] == [{"address": "ann@example.test", "status": "queued"}]
    [message] = server.wait_for_messages("ann@example.test", 1)
    parsed = message_from_bytes(message, policy=default)
    assert parsed["Message-ID"] == answer["message_id"]
    assert parsed["Subject"] == "Your receipt"
    key = verp_key(load_server_secret(server.data_dir))
    assert parse_verp_address(parsed["Return-Path"], key) == TransactionalMessage(answer["id"])
    shown = json.loads(server.cli("domain", "dkim", "show", "example.test", "--json").stdout)
    resolver = StaticResolver({s["name"]: {"TXT": [s["value"]]} for s in shown["selectors"]})
    results = asyncio.run(verify_message(message, resolver))
    assert results and all(r.status is DkimStatus.PASS for r in results), results
    text = parsed.get_body(("plain",)).get_content()
    assert "Thanks for your order." in text


def test_stored_template_and_hostile_input(server: MailyardServer,
                                           client: httpx.Client) -> None:
    tpl = {"subject": "Welcome, {{ name }}", "html": "<p>Your code is {{ code }}.</p>"}
    assert client.put("/api/v1/templates/welcome", json=tpl).status_code == 200
    resp = client.post("/api/v1/messages", json={
        "from": "app@example.test", "template": "welcome",
        "to": [{"address": "bob@example.test", "name": "Bob\r\nBcc: eve@example.test"}],
        "variables": {"code": "<script>1</script>"},
        "headers": {"X-Order": "1234", "In-Reply-To": "<a@b>"}})
    assert resp.status_code == 202, resp.text
    [message] = server.wait_for_messages("bob@example.test", 1)
    parsed = message_from_bytes(message, policy=default)
    assert parsed["Bcc"] is None and parsed["X-Order"] == "1234"
    assert parsed["Subject"] == "Welcome, Bob Bcc: eve@example.test"
    assert "&lt;script&gt;" in parsed.get_body(("html",)).get_content()
    # Header injection through a raw subject, a name, an extra header.
    resp = client.post("/api/v1/messages", json=_raw(
        [{"address": "carol@example.test", "name": "C\nX-Evil: 1"}],
        subject="Hi\r\nBcc: eve@example.test"))
    assert resp.status_code == 202
    [message] = server.wait_for_messages("carol@example.test", 1)
    parsed = message_from_bytes(message, policy=default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    _problem(client.post("/api/v1/messages", json=_raw(
        ["carol@example.test"], headers={"X-A": "1\r\nBcc: eve@example.test"})), 422,
        "validation_failed")
    _problem(client.post("/api/v1/messages", json=_raw(
        ["carol@example.test"], headers={"Bcc": "eve@example.test"})), 422, "validation_failed")
    # Sandbox escapes and runaway loops: refused, never run.
    for source in ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                   "{{ cycler.__init__.__globals__.os }}",
                   "{% for i in range(10**9) %}x{% endfor %}"):
        body = _problem(client.post("/api/v1/messages", json={
            "from": "app@example.test", "to": ["carol@example.test"],
            "template": {"subject": "x", "text": source}}), 422, "template_failed")
        assert "Traceback" not in str(body)
    _problem(client.post("/api/v1/messages", json={
        "from": "app@example.test", "to": ["carol@example.test"], "template": "nope"}), 404,
        "no_such_template")
    _problem(client.post("/api/v1/messages", json=_raw(
        [f"r{i}@example.test" for i in range(6)])), 422, "too_many_recipients")
    assert len(server.messages("carol@example.test")) == 1
    assert len(server.messages("eve@example.test")) == 0


def test_idempotency_key_sends_once(server: MailyardServer, client: httpx.Client) -> None:
    body = _raw(["dave@example.test"], subject="once")
    headers = {"Idempotency-Key": "order-1"}
    first = client.post("/api/v1/messages", json=body, headers=headers)
    again = client.post("/api/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    _problem(client.post("/api/v1/messages", json=_raw(["dave@example.test"],
                                                       subject="other"), headers=headers),
             422, "idempotency_key_reused")
    for bad in ("with space", "k" * 256, "tab\tinside"):
        _problem(client.post("/api/v1/messages", json=body, headers={"Idempotency-Key": bad}),
                 422, "invalid_idempotency_key")
    # Ten at once with one key, over separate connections.
    concurrent_body = _raw(["dave@example.test"], subject="concurrent")

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.http_url, timeout=60,
                          headers=dict(client.headers)) as c:
            return c.post("/api/v1/messages", json=concurrent_body,
                          headers={"Idempotency-Key": "burst"})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1
    server.wait_for_messages("dave@example.test", 2)
    assert server.wait_queue_empty()
    subjects = [message_from_bytes(m, policy=default)["Subject"]
                for m in server.messages("dave@example.test")]
    assert sorted(subjects) == ["concurrent", "once"]


def test_suppressed_recipients_are_not_sent(server: MailyardServer,
                                            client: httpx.Client) -> None:
    admin = _key(server, "contacts-admin", "contacts")
    resp = httpx.put(f"{server.http_url}/api/v1/suppressions/Eve@Example.test",
                     json={"reason": "manual"}, headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 200, resp.text
    resp = client.post("/api/v1/messages", json=_raw(["eve@example.test", "ann@example.test"],
                                                     subject="mixed"))
    assert resp.status_code == 202, resp.text
    assert resp.json()["recipients"] == [
        {"address": "eve@example.test", "status": "suppressed"},
        {"address": "ann@example.test", "status": "queued"}]
    _problem(client.post("/api/v1/messages", json=_raw(["EVE@example.test"])), 422,
             "recipients_suppressed")
    server.wait_for_messages("ann@example.test", 2)
    assert server.wait_queue_empty()
    assert server.messages("eve@example.test") == []


def test_sending_limit_answers_429_with_retry_after(server: MailyardServer,
                                                    client: httpx.Client) -> None:
    server.cli("user", "limits", "limited@example.test", "--messages-per-hour", "1")
    body = {"from": "limited@example.test", "to": ["ann@example.test"], "subject": "lim",
            "text": "hello"}
    assert client.post("/api/v1/messages", json=body).status_code == 202
    resp = client.post("/api/v1/messages", json=body)
    _problem(resp, 429, "rate_limited")
    assert 0 < int(resp.headers["retry-after"]) <= 3600


def test_scope_and_sender_checks(server: MailyardServer, client: httpx.Client) -> None:
    contacts_only = _key(server, "contacts-only", "contacts")
    _problem(httpx.post(f"{server.http_url}/api/v1/messages", json=_raw(["ann@example.test"]),
                        headers={"Authorization": f"Bearer {contacts_only}"}), 403,
             "forbidden_scope")
    _problem(client.post("/api/v1/messages", json={**_raw(["ann@example.test"]),
                                                   "from": "someone@gmail.test"}),
             403, "sender_not_allowed")
    narrow = _key(server, "narrow", "send", "--sender", "app@example.test")
    _problem(httpx.post(f"{server.http_url}/api/v1/messages",
                        json={**_raw(["ann@example.test"]), "from": "bob@example.test"},
                        headers={"Authorization": f"Bearer {narrow}"}), 403,
             "sender_not_allowed")
    _problem(client.post("/api/v1/messages", content=b'{"from": "' + b"a" * 2_000_000 + b'"}',
                         headers={"content-type": "application/json"}), 413,
             "body_too_large")


def test_pool_key_leaves_from_the_pool_address(server: MailyardServer, mx: FakeMx) -> None:
    key = _key(server, "pooled", "send", "--pool", "tx")
    resp = httpx.post(f"{server.http_url}/api/v1/messages",
                      json=_raw(["someone@remote.test"], subject="pooled"),
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert resp.status_code == 202, resp.text
    [message] = mx.wait_messages(1, timeout=30)
    session = next(s for s in mx.wait_sessions(1, timeout=30) if s.number == message.session)
    assert session.peer == "127.0.0.2"
    assert session.commands[0].split()[1] == "tx.pool.test"
    key_id = parse_verp_address(message.mail_from, verp_key(load_server_secret(
        server.data_dir)))
    assert key_id == TransactionalMessage(resp.json()["id"])
    bad = server.cli("apikey", "create", "--name", "nopool", "--scope", "send", "--pool",
                     "missing", check=False)
    assert bad.returncode != 0 and b"no delivery pool" in bad.stderr
