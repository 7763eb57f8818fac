"""End to end: SCRAM-SHA-256 with the real server (two workers).  An unknown user is
shown the same salt by every worker and after a restart, with the configured iteration
count, like a real user (RFC 5802 9); ``[auth] scram_iterations = 0`` turns SCRAM off."""

from __future__ import annotations

import base64
import json
import smtplib

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


def _server_first(server: MailyardServer, username: str) -> tuple[str, str]:
    """(salt, iteration count) of the server-first message for ``username`` over 465."""
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=10,
                          context=unverified_tls()) as s:
        s.ehlo("laptop.test")
        first = base64.b64encode(f"n,,n={username},r=clientnonce0123".encode()).decode()
        code, reply = s.docmd("AUTH", f"SCRAM-SHA-256 {first}")
        assert code == 334
        attrs = dict(p.split("=", 1) for p in base64.b64decode(reply).decode().split(","))
        s.docmd("*")  # cancel the exchange
        return attrs["s"], attrs["i"]


def test_decoy_salt_is_the_same_in_every_worker_and_after_restart(tmp_path):
    server = MailyardServer(tmp_path, workers=2)
    server.add_user("alice@example.test", "alice-pw")
    with server:
        ghost = {_server_first(server, "ghost@example.test") for _ in range(10)}
        alice = {_server_first(server, "alice@example.test") for _ in range(4)}
    assert len(ghost) == 1 and len(alice) == 1
    assert next(iter(ghost))[1] == next(iter(alice))[1] == "100000"
    secret = server.data_dir / "server-secret"
    assert secret.stat().st_mode & 0o777 == 0o600

    with server:  # a restart: new worker processes
        assert {_server_first(server, "ghost@example.test") for _ in range(6)} == ghost
        assert {_server_first(server, "alice@example.test") for _ in range(2)} == alice


def test_scram_can_be_turned_off(tmp_path):
    server = MailyardServer(tmp_path, overrides={"auth": {"scram_iterations": 0}})
    server.add_user("alice@example.test", "alice-pw")
    assert json_users(server) == [("alice@example.test", False)]
    with server, smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=10,
                          context=unverified_tls()) as s:
        s.ehlo("laptop.test")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        first = base64.b64encode(b"n,,n=alice@example.test,r=nonce").decode()
        code, _ = s.docmd("AUTH", f"SCRAM-SHA-256 {first}")
        assert code == 504
        s.login("alice@example.test", "alice-pw")


def json_users(server: MailyardServer) -> list[tuple[str, bool]]:
    rows = json.loads(server.cli("user", "list", "--json").stdout)
    return [(r["address"], r["scram"]) for r in rows]
