"""Hostile and malformed input against the real ``mailyard serve``, over real
sockets: each case is one a fuzzing run found answered wrongly (a traceback in the
log, a 500, a dropped connection).  The server must give the protocol's own error
reply, keep the connection usable where the protocol says so, and log no traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("hostile"), http=True)
    for user in ("alice", "bob"):
        srv.add_user(f"{user}@example.test", "pw")
    with srv:
        yield srv


def no_traceback(server: MailyardServer) -> None:
    out = server.output()
    assert "Traceback" not in out and "Exception in" not in out, out


def test_deeply_nested_template_is_a_422(server: MailyardServer) -> None:
    """A template whose expression nests a thousand levels deep is a template
    problem (422), not a RecursionError answered 500 with a traceback; the
    keep-alive connection stays usable."""
    with server.api_client("send") as client:
        for subject in ("{{" * 1000, "{{" + "(" * 300 + "1" + ")" * 300 + "}}"):
            resp = client.put("/api/v1/templates/deep", json={"subject": subject,
                                                               "text": "x"})
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == PROBLEM
            assert "nested too deeply" in resp.json()["detail"]
        resp = client.put("/api/v1/templates/deep", json={"subject": "ok", "text": "x"})
        assert resp.status_code == 200, resp.text
    no_traceback(server)
