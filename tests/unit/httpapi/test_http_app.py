"""The ASGI application in-process (httpx's ASGI transport): problem documents,
scopes, the body cap; and the per-client rate limiter."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailyard.apikeys.sqlite import SqliteKeyStore
from mailyard.bulk.model import OptIn
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.http.app import create_app
from mailyard.http.context import HttpContext
from mailyard.http.ratelimit import RateLimiter, client_key
from mailyard.queue.api import StorageError
from mailyard.services.apikeys import ApiKeys
from mailyard.services.contacts import ConfirmationMail, Contacts, Settings


def test_rate_limiter_windows() -> None:
    limiter = RateLimiter(limit=2, window=60)
    assert limiter.hit("192.0.2.1", 0) == 0 and limiter.hit("192.0.2.1", 1) == 0
    assert limiter.hit("192.0.2.1", 2) == 58
    assert limiter.hit("192.0.2.2", 2) == 0  # another client
    assert limiter.hit("192.0.2.1", 60) == 0  # a new window


def test_ipv6_counted_by_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    limiter = RateLimiter(limit=1, window=60)
    assert limiter.hit("2001:db8::1", 0) == 0 and limiter.hit("2001:db8::2", 0) > 0


def test_limiter_table_is_bounded() -> None:
    limiter = RateLimiter(limit=1, window=60, max_clients=10)
    for i in range(100):
        limiter.hit(f"192.0.2.{i}", 0)
    assert len(limiter._table) == 10


class App:
    def __init__(self, tmp: Path) -> None:
        self.mails: list[ConfirmationMail] = []
        settings = Settings("n@example.org", "http://t", b"k" * 32, 3600, "mx.example.org")
        contacts = Contacts(SqliteContactStore(tmp / "bulk.db", lambda a: a), settings)
        self.keys = ApiKeys(SqliteKeyStore(tmp / "apikeys.db"))

        self.mail_error: Exception | None = None  # what queueing a mail raises

        async def mailer(mail: ConfirmationMail) -> str:
            if self.mail_error is not None:
                raise self.mail_error
            self.mails.append(mail)
            return "QID"

        self.contacts = contacts
        self.app = create_app(HttpContext(contacts, self.keys, mailer, RateLimiter(5, 60),
                                          max_body_size=2048, max_import_size=4096))

    def call(self, method: str, path: str, key: str = "", **kw: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            transport = httpx.ASGITransport(app=self.app, client=("192.0.2.9", 1234),
                                            raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, headers=headers | kw.pop("headers", {}),
                                       **kw)
        return asyncio.run(run())


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """RFC 9457 3.1: type, title, status; our code and instance."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["type"] == "urn:mailyard:problem:" + code and body["code"] == code
    assert body["status"] == status and body["title"] and body["instance"]
    return body


def test_scopes(app: App) -> None:
    send = app.keys.create("s", "send").secret
    contacts = app.keys.create("c", "contacts").secret
    admin = app.keys.create("a", "admin").secret
    problem(app.call("GET", "/api/v1/lists"), 401, "unauthorized")
    problem(app.call("GET", "/api/v1/lists", "Basic abc"), 401, "unauthorized")
    resp = app.call("GET", "/api/v1/lists", send)
    problem(resp, 403, "forbidden_scope")
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
    assert app.call("GET", "/api/v1/lists", contacts).json() == []
    assert app.call("GET", "/api/v1/lists", admin).status_code == 200


def test_errors_are_problems(app: App) -> None:
    key = app.keys.create("c", "contacts").secret
    body = problem(app.call("POST", "/api/v1/lists", key, json={"opt_in": "triple"}), 422,
                   "validation_failed")
    assert {e["location"] for e in body["errors"]} == {"body.name", "body.opt_in"}
    problem(app.call("POST", "/api/v1/lists", key, content=b"{", headers={
        "content-type": "application/json"}), 422, "validation_failed")
    problem(app.call("GET", "/api/v1/lists/none", key), 404, "no_such_list")
    problem(app.call("DELETE", "/api/v1/lists", key), 405, "method_not_allowed")
    problem(app.call("POST", "/api/v1/contacts", key, content=b"x" * 3000, headers={
        "content-type": "application/json"}), 413, "body_too_large")
    assert app.call("POST", "/api/v1/lists", key, json={"name": "l"}).status_code == 201
    ok = app.call("POST", "/api/v1/lists/l/import", key, content=b"email\na@example.org\n",
                  headers={"content-type": "text/csv"})
    assert ok.json()["new"] == 1
    again = app.call("POST", "/api/v1/contacts/import?list=l", key,
                     content=b'{"email": "b@example.org"}\n',
                     headers={"content-type": "application/x-ndjson"})
    assert again.json()["new"] == 1
    problem(app.call("POST", "/api/v1/contacts/import", key, content=b"",
                     headers={"content-type": "text/csv"}), 422, "validation_failed")
    problem(app.call("POST", "/api/v1/lists/l/import", key, content=b"x" * 5000,
                     headers={"content-type": "text/csv"}), 413, "body_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b"email\n"
        for _ in range(5):
            yield b"a" * 1000 + b"\n"

    problem(app.call("POST", "/api/v1/lists/l/import", key, content=chunked(),
                     headers={"content-type": "text/csv"}), 413, "body_too_large")


def test_subscribe_json_and_rate_limit(app: App) -> None:
    key = app.keys.create("c", "contacts").secret
    app.call("POST", "/api/v1/lists", key, json={"name": "d", "opt_in": "double"})
    resp = app.call("POST", "/subscribe/d", json={"email": "p@example.org"})
    assert resp.status_code == 202 and len(app.mails) == 1
    problem(app.call("POST", "/subscribe/d", json={"email": "nope"}), 422, "invalid_address")
    problem(app.call("POST", "/subscribe/d", content=b"a=1", headers={
        "content-type": "text/plain", "accept": "application/json"}), 415,
        "unsupported_media_type")
    assert app.call("POST", "/subscribe/d", data={"email": "q@example.org",
                                                  "website": "x"}).status_code == 200
    assert len(app.mails) == 1  # the honeypot: nothing sent
    app.call("POST", "/subscribe/d", data={"email": "r@example.org"})
    limited = problem(app.call("POST", "/subscribe/d", json={"email": "s@example.org"}),
                      429, "rate_limited")
    assert limited["detail"]
    page = app.call("POST", "/subscribe/d", data={"email": "s@example.org"})
    assert page.status_code == 429 and int(page.headers["retry-after"]) > 0
    assert "text/html" in page.headers["content-type"]


def test_subscribe_body_nested_too_deeply(app: App) -> None:
    """The public form takes JSON: one nested deeper than the parser goes is a 422
    problem like any other body that is not JSON, not a RecursionError answered 500."""
    key = app.keys.create("c", "contacts").secret
    app.call("POST", "/api/v1/lists", key, json={"name": "d", "opt_in": "double"})
    body = b"[" * 1020 + b"]" * 1020  # past the interpreter's recursion limit, in 2 kB
    body_problem = problem(app.call("POST", "/subscribe/d", content=body, headers={
        "content-type": "application/json"}), 422, "validation_failed")
    assert body_problem["detail"] == "the body is not JSON"
    assert app.mails == []


def test_openapi_and_docs(app: App) -> None:
    schema = app.call("GET", "/api/openapi.json").json()
    assert "/api/v1/contacts" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    forbidden = schema["paths"]["/api/v1/lists"]["get"]["responses"]["403"]["content"]
    assert list(forbidden) == ["application/problem+json"]
    assert app.call("GET", "/api/docs").status_code == 200


def test_a_bug_is_a_bare_500(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    key = app.keys.create("c", "contacts").secret

    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.contacts, "lists", broken)
    resp = app.call("GET", "/api/v1/lists", key)
    body = problem(resp, 500, "internal_error")
    assert "secret internals" not in resp.text and "Traceback" not in resp.text
    assert "detail" not in body



def test_message_variables_nested_too_deeply() -> None:
    """POST /api/v1/messages keeps the request as JSON (for Idempotency-Key replays):
    variables nested past what the encoder takes were a 500; 32 levels are fine, 33
    a validation error."""
    from pydantic import ValidationError

    from mailyard.http.messages import MessageIn

    def message(depth: int) -> dict[str, Any]:
        value: Any = "x"
        for _ in range(depth):
            value = [value]
        return {"from": "a@example.test", "to": ["b@example.org"], "template": "t",
                "variables": {"v": value}}

    assert MessageIn.model_validate(message(32)).request().canonical["variables"]
    for depth in (33, 300):
        with pytest.raises(ValidationError, match="deeper than 32 levels"):
            MessageIn.model_validate(message(depth))


def test_subscribe_on_a_full_disk_is_507_and_the_retry_sends(app: App) -> None:
    """The confirmation mail cannot be queued (the queue's disk is full): 507 with
    Retry-After, and the same post once space is back sends the mail at once."""
    app.contacts.create_list("d", "", OptIn.DOUBLE)
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as exc:
        full = StorageError("cannot commit the queue file: disk full")
        full.__cause__ = exc
    app.mail_error = full
    resp = app.call("POST", "/subscribe/d", json={"email": "p@example.org"})
    problem(resp, 507, "insufficient_storage")
    assert int(resp.headers["retry-after"]) > 0
    app.mail_error = None
    assert app.call("POST", "/subscribe/d", json={"email": "p@example.org"}).status_code == 202
    assert [m.recipient for m in app.mails] == ["p@example.org"]
