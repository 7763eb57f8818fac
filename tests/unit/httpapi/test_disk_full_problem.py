"""A full disk under any route: ``507 insufficient_storage`` (RFC 4918 11.5) as an RFC
9457 problem document with Retry-After, from the inner exception handlers (no
traceback printed by the server, the connection kept); other storage errors stay a
bare 500."""

from __future__ import annotations

import errno
import sqlite3

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailyard.http import problems
from mailyard.services.errors import error


def app() -> FastAPI:
    a = FastAPI()
    problems.install(a)

    @a.post("/sqlite")
    def sqlite_full() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    @a.post("/os")
    def os_full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    @a.post("/service")
    def service_full() -> None:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise error("mail_not_queued", "the queue is not available") from None

    @a.post("/io")
    def io_error() -> None:
        raise OSError(errno.EIO, "I/O error")

    return a


def test_disk_full_is_507_with_retry_after() -> None:
    with TestClient(app(), raise_server_exceptions=True) as client:
        for path in ("/sqlite", "/os", "/service"):
            r = client.post(path)
            assert r.status_code == 507, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["retry-after"]) > 0
            body = r.json()
            assert body["type"] == "urn:mailyard:problem:insufficient_storage"
            assert body["code"] == "insufficient_storage" and body["status"] == 507
            assert body["instance"] == path


def test_other_storage_errors_stay_a_bare_500() -> None:
    with TestClient(app(), raise_server_exceptions=True) as client:
        r = client.post("/io")
        assert r.status_code == 500
        assert r.json()["code"] == "internal_error" and "I/O" not in r.text


def test_a_bug_is_answered_once_and_not_raised_again() -> None:
    """An unexpected exception is a 500 problem from the inner exception middleware:
    the server does not raise it again after answering (no traceback on its stderr,
    the connection kept for the next request)."""
    a = app()

    @a.get("/bug")
    def bug() -> None:
        raise KeyError("internals")

    with TestClient(a, raise_server_exceptions=True) as client:
        r = client.get("/bug")
        assert r.status_code == 500 and r.json()["code"] == "internal_error"
        assert "internals" not in r.text
        assert client.post("/sqlite").status_code == 507
