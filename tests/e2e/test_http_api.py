"""The HTTP service end to end: the real ``mailyard serve`` with ``listen.http``,
driven over a socket with httpx, and the CLI on the same data directory.

API keys and scopes (RFC 6750 3: 401 with WWW-Authenticate, 403 for a missing scope),
RFC 9457 problem documents, the body cap, contact import over the API and the CLI,
the double opt-in flow (the confirmation mail is delivered to a local Maildir and its
link followed), forged tokens, rate limiting, the honeypot, and erasure."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import httpx
import pytest

from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    https = free_port()
    srv = MailyardServer(tmp_path_factory.mktemp("http"), http=True,
                         overrides={"http": {"subscribe_rate": 3, "max_body_size": 65536},
                                    "listen": {"https": [f"127.0.0.1:{https}"]}})
    srv.ports["https"] = https
    with srv:
        srv.add_user("sub@example.test", "x")
        srv.add_user("sub2@example.test", "x")
        yield srv



@pytest.fixture(scope="module")
def client(server: MailyardServer) -> Iterator[httpx.Client]:
    with server.api_client("contacts") as c:
        yield c


def _problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["type"] == f"urn:mailyard:problem:{code}"
    assert body["status"] == status and body["code"] == code and body["title"]
    assert "Traceback" not in resp.text
    return body


def test_keys_and_scopes(server: MailyardServer) -> None:
    url = server.http_url + "/api/v1/lists"
    resp = httpx.get(url)
    _problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    _problem(httpx.get(url, headers={"Authorization": "Bearer myk_nope"}), 401, "unauthorized")
    send_key = server.api_key("send-only", "send")
    body = _problem(httpx.get(url, headers={"Authorization": f"Bearer {send_key}"}), 403,
                    "forbidden_scope")
    assert "contacts" in str(body["detail"])
    admin_key = server.api_key("admin", "admin")
    assert httpx.get(url, headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
    keys = {k["name"]: k for k in json.loads(server.cli("apikey", "list", "--json").stdout)}
    assert keys["admin"]["last_used"] is not None and keys["send-only"]["scopes"] == ["send"]
    server.cli("apikey", "revoke", "admin")
    _problem(httpx.get(url, headers={"Authorization": f"Bearer {admin_key}"}), 401,
             "unauthorized")
    log = (server.root / "mailyard.log").read_text() + server.output()
    assert admin_key not in log and send_key not in log


def test_problem_documents_and_body_cap(client: httpx.Client) -> None:
    body = _problem(client.post("/api/v1/contacts", json={"name": "no address"}), 422,
                    "validation_failed")
    assert any("address" in e["location"] for e in body["errors"])  # type: ignore[union-attr]
    _problem(client.post("/api/v1/contacts", json={"address": "not-an-address"}), 422,
             "invalid_address")
    _problem(client.get("/api/v1/contacts/nobody@example.org"), 404, "no_such_contact")
    _problem(client.get("/api/v1/no-such-route"), 404, "not_found")
    big = b'{"address": "' + b"a" * 70000 + b'"}'
    _problem(client.post("/api/v1/contacts", content=big,
                         headers={"content-type": "application/json"}), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"address": "'
        for _ in range(20):
            yield b"b" * 8192
        yield b'"}'

    _problem(client.post("/api/v1/contacts", content=chunks(),
                         headers={"content-type": "application/json"}), 413, "body_too_large")
    assert client.post("/api/v1/contacts", json={"address": "Ok@Example.ORG"}).status_code == 201
    _problem(client.post("/api/v1/contacts", json={"address": "ok@example.org"}), 409,
             "contact_exists")


def test_import_api_and_cli_then_export(server: MailyardServer, client: httpx.Client,
                                        tmp_path: object) -> None:
    assert client.post("/api/v1/lists", json={"name": "imp"}).status_code == 201
    csv_body = ("email;name;plan\r\nann@example.org;Ann;pro\r\nbad-row;X;free\r\n"
                "ANN@example.org;Dup;pro\r\n=1+2@example.org;=HYPERLINK(\"x\");free\r\n")
    resp = client.post("/api/v1/lists/imp/import", content=csv_body.encode(),
                       headers={"content-type": "text/csv"})
    summary = resp.json()
    assert resp.status_code == 200, resp.text
    assert (summary["new"], summary["invalid"], summary["duplicates"]) == (2, 1, 1)
    assert summary["invalid_rows"][0]["line"] == 3
    assert summary["duplicate_rows"] == [{"line": 4, "first_line": 2}]
    _problem(client.post("/api/v1/lists/imp/import", content=b"x",
                         headers={"content-type": "application/pdf"}), 415,
             "unsupported_media_type")
    jsonl = server.root / "more.jsonl"
    jsonl.write_text('{"email": "bob@example.org", "name": "Bob", "plan": "free"}\n'
                     '{"email": "ann@example.org", "attributes": {"plan": "team"}}\nnot json\n')
    out = server.cli("contact", "import", str(jsonl), "--list", "imp", "--json")
    summary = json.loads(out.stdout)
    assert (summary["new"], summary["updated"], summary["invalid"]) == (1, 1, 1)
    members = client.get("/api/v1/lists/imp/members").json()["items"]
    assert {m["address"] for m in members} == {"ann@example.org", "bob@example.org",
                                               "=1+2@example.org"}
    assert client.get("/api/v1/contacts/ann@example.org").json()["contact"][
        "attributes"] == {"plan": "team"}
    export = server.cli("contact", "export", "--list", "imp").stdout.decode()
    rows = list(csv.reader(io.StringIO(export)))
    assert rows[0] == ["email", "name", "status", "created", "plan"]
    assert ["'=1+2@example.org", "'=HYPERLINK(\"x\")"] in [r[:2] for r in rows]
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)


def _confirmation_link(server: MailyardServer, address: str) -> str:
    messages = server.wait_for_messages(address, 1)
    assert messages, server.output()
    msg = message_from_bytes(messages[-1], policy=default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"(http://\S+/confirm/\S+)", text)
    assert found, text
    return found.group(1)


def test_double_opt_in(server: MailyardServer, client: httpx.Client) -> None:
    server.cli("list", "create", "news", "--double-opt-in", "--title", "The News")
    resp = httpx.post(server.http_url + "/subscribe/news",
                      data={"email": "Sub@Example.test", "name": "Sub Scriber", "website": ""})
    assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
    link = _confirmation_link(server, "sub@example.test")
    assert json.loads(server.cli("list", "show", "news", "--json").stdout)["members"][
        "unconfirmed"] == 1
    page = httpx.get(link)  # shows a button, changes nothing
    assert page.status_code == 200 and "<form method=post" in page.text
    assert json.loads(server.cli("list", "show", "news", "--json").stdout)["members"][
        "confirmed"] == 0
    forged = link[:-1] + ("A" if link[-1] != "A" else "B")
    assert httpx.get(forged).status_code == 404
    _problem(httpx.post(forged, headers={"Accept": "application/json"}), 404, "no_such_token")
    done = httpx.post(link)
    assert done.status_code == 200 and "subscribed" in done.text
    data = json.loads(server.cli("contact", "show", "sub@example.test", "--json").stdout)
    member = data["memberships"][0]
    assert member["status"] == "confirmed" and member["consent"]["source"] == "form"
    assert member["consent"]["ip"] == "127.0.0.1"
    assert member["confirmed"]["source"] == "confirmation link"
    # JSON subscription to the same list: accepted, no second mail to a confirmed member.
    resp = httpx.post(server.http_url + "/subscribe/news", json={"email": "sub@example.test"})
    assert resp.status_code == 202 and resp.json()["status"] == "accepted"


def test_rate_limit_and_honeypot(server: MailyardServer, client: httpx.Client) -> None:
    assert client.post("/api/v1/lists", json={"name": "open"}).status_code == 201
    url = server.http_url + "/subscribe/open"
    # The double opt-in test used two of this client's three attempts; one is left.
    resp = httpx.post(url, data={"email": "bot@example.org", "website": "http://spam"})
    assert resp.status_code == 200
    _problem(client.get("/api/v1/contacts/bot@example.org"), 404, "no_such_contact")
    limited = httpx.post(url, json={"email": "late@example.org"})
    _problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) > 0


def test_erase(server: MailyardServer, client: httpx.Client) -> None:
    assert client.post("/api/v1/lists", json={"name": "erasing"}).status_code == 201
    client.post("/api/v1/contacts", json={"address": "bob@example.org"})  # 409 after import
    assert client.put("/api/v1/lists/erasing/members/gone@example.org",
                      json={"status": "confirmed", "source": "test"}).status_code == 200
    assert client.put("/api/v1/suppressions/gone@example.org",
                      json={"reason": "complaint"}).status_code == 200
    resp = client.delete("/api/v1/contacts/gone@example.org")
    assert resp.status_code == 200 and resp.json()["suppression_kept_as_digest"]
    held = client.get("/api/v1/contacts/gone@example.org").json()  # only the digest is left
    assert held["contact"] is None and held["memberships"] == [] and held["events"] == []
    assert held["suppression"]["address"] is None
    kept = client.get("/api/v1/suppressions").json()["items"]
    assert any(s["address"] is None and s["reason"] == "complaint" for s in kept)
    for path in server.data_dir.glob("bulk.db*"):  # secure_delete, WAL checkpointed
        assert b"gone@example.org" not in path.read_bytes(), path
    server.cli("contact", "suppress", "Bob@Example.org", "--note", "asked by phone")
    listed = json.loads(server.cli("contact", "suppressions", "--json").stdout)
    assert {"address": "bob@example.org", "reason": "manual", "note": "asked by phone"} \
        .items() <= next(e for e in listed if e["address"] == "bob@example.org").items()
    assert "(erased)" in server.cli("contact", "suppressions").stdout.decode()
    server.cli("contact", "unsuppress", "bob@example.org")
    server.cli("contact", "erase", "bob@example.org")
    res = server.cli("contact", "show", "bob@example.org", check=False)
    assert res.returncode == 1 and b"nothing is held" in res.stderr


def test_https_listener_and_startup_lines(server: MailyardServer) -> None:
    """listen.https serves the same application over TLS with the [tls] certificate (here
    the self-signed one); serve prints where it listens."""
    resp = httpx.get(f"https://127.0.0.1:{server.ports['https']}/api/v1/lists", verify=False)
    _problem(resp, 401, "unauthorized")
    out = (server.root / "serve.out").read_text()
    assert f"http listening on 127.0.0.1:{server.ports['http']}" in out
    assert f"https listening on 127.0.0.1:{server.ports['https']}" in out


def test_cli_import_of_hostile_files(server: MailyardServer) -> None:
    server.cli("list", "create", "hostile")
    latin = server.root / "latin.csv"
    latin.write_bytes("email,name\nj@example.org,Jürgen\n".encode("latin-1"))
    res = server.cli("contact", "import", str(latin), "--list", "hostile", check=False)
    assert res.returncode == 1
    assert b"line 2: not valid utf-8" in res.stderr and b"Traceback" not in res.stderr
    ok = server.cli("contact", "import", str(latin), "--list", "hostile", "--encoding",
                    "latin-1")
    assert b"1 new" in ok.stdout
    wide = server.root / "wide.csv"
    wide.write_text("email," + ",".join(f"c{i}" for i in range(10_000)) + "\n")
    res = server.cli("contact", "import", str(wide), "--list", "hostile", check=False)
    assert res.returncode == 1 and b"10001 columns; at most 200" in res.stderr
    res = server.cli("contact", "import", str(wide), "--list", "missing", check=False)
    assert res.returncode == 1 and b"no list" in res.stderr


def _http_workers(server: MailyardServer) -> list[int]:
    assert server.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"mailyard.daemon.http_worker" in cmdline and \
                    os.getsid(int(entry.name)) == server.proc.pid:
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


def test_http_worker_is_restarted(server: MailyardServer) -> None:
    """A dead HTTP worker is replaced like an SMTP worker; the listening socket stays
    open in the supervisor, so the service comes back on the same port."""
    (pid,) = _http_workers(server)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _http_workers(server)
        if workers and workers != [pid]:
            try:
                if httpx.get(server.http_url + "/api/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    else:
        pytest.fail(f"no new HTTP worker: {server.output()}")
    assert "worker exited; restarting" in server.output()

