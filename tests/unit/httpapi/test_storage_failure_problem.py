"""A service's storage failure (not a full disk) as an RFC 9457 problem: its stable
code and status (503), a fixed ``detail``; the message with the server's paths and
SQLite's words goes to the log only.  A refusal of the client's own input keeps its
message."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailyard.directory.api import DirectoryError
from mailyard.http import problems
from mailyard.services.errors import error, from_directory

SECRET = "/srv/mailyard/data/queue/index.db"


def app() -> FastAPI:
    a = FastAPI()
    problems.install(a)

    @a.post("/queue")
    def queue_failed() -> None:
        raise error("mail_not_queued", f"the queue is not available: [Errno 5] Input/output"
                                       f" error: '{SECRET}'")

    @a.post("/directory")
    def directory_failed() -> None:
        raise from_directory(DirectoryError(
            f"directory database error: unable to open database file {SECRET}"))

    @a.post("/input")
    def bad_input() -> None:
        raise error("invalid_address", "'nobody@' is not an address")

    return a


@pytest.mark.parametrize(("path", "code"), [("/queue", "mail_not_queued"),
                                            ("/directory", "directory_error")])
def test_storage_failure_detail_is_fixed(path: str, code: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mailyard.http"), \
            TestClient(app(), raise_server_exceptions=True) as client:
        r = client.post(path)
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code and body["detail"] == problems.STORAGE_FAILED_DETAIL
    assert SECRET not in r.text and "Errno" not in r.text and "database" not in r.text
    assert any(SECRET in str(getattr(rec, "fields", "")) for rec in caplog.records)  # logged


def test_from_service_for_the_public_pages() -> None:
    """The public routes (subscribe, unsubscribe, tracking) build their answers with
    :func:`problems.from_service` directly."""
    problem = problems.from_service(error("contacts_error", f"cannot read {SECRET}"))
    assert problem.status == 503 and problem.detail == problems.STORAGE_FAILED_DETAIL


def test_the_clients_own_input_is_named() -> None:
    with TestClient(app(), raise_server_exceptions=True) as client:
        r = client.post("/input")
    assert r.status_code == 422 and r.json()["detail"] == "'nobody@' is not an address"
