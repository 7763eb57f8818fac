"""SCRAM-SHA-256 settings of the server core: decoys for unknown users (RFC 5802 9)
from an injected key and iteration count, and SCRAM switched off."""

from __future__ import annotations

import base64
import dataclasses

from smtpd_core_harness import run_all_ways, run_session

from mailyard.proto.smtp.server import ServerSettings
from mailyard.sasl.scram import ScramSha256Mechanism
from mailyard.sasl.steps import Challenge, NeedScramCredentials

TLS_AUTH = ServerSettings(hostname="mx.test", starttls=True, auth=True, implicit_tls=True)
KEY_A = b"a" * 32
KEY_B = b"b" * 32


def _decoy_server_first(username: str, **kw: object) -> dict[str, str]:
    mech = ScramSha256Mechanism(**kw)  # type: ignore[arg-type]
    step = mech.start(f"n,,n={username},r=clientnonce".encode())
    assert isinstance(step, NeedScramCredentials)
    challenge = mech.set_credentials(None)
    assert isinstance(challenge, Challenge)
    return dict(part.split("=", 1) for part in challenge.data.decode().split(","))


def test_decoy_salt_depends_only_on_the_key_and_the_user() -> None:
    """Two mechanisms (two processes, or before and after a restart) given the same
    key show an unknown user the same salt; another key or user gives another."""
    first = _decoy_server_first("ghost@mx.test", decoy_key=KEY_A, decoy_iterations=100_000)
    again = _decoy_server_first("ghost@mx.test", decoy_key=KEY_A, decoy_iterations=100_000)
    assert first["s"] == again["s"]
    assert len(base64.b64decode(first["s"])) == 16
    assert first["s"] != _decoy_server_first("ghost@mx.test", decoy_key=KEY_B)["s"]
    assert first["s"] != _decoy_server_first("other@mx.test", decoy_key=KEY_A)["s"]


def test_decoy_uses_the_configured_iteration_count() -> None:
    assert _decoy_server_first("ghost@mx.test", decoy_key=KEY_A,
                               decoy_iterations=100_000)["i"] == "100000"
    assert _decoy_server_first("ghost@mx.test", decoy_key=KEY_A,
                               decoy_iterations=250_000)["i"] == "250000"


def _server_first_over_smtp(settings: ServerSettings) -> dict[str, str]:
    first = base64.b64encode(b"n,,n=ghost@mx.test,r=clientnonce")
    run = run_session(b"EHLO c\r\nAUTH SCRAM-SHA-256 " + first + b"\r\n", settings=settings,
                      eof=False)
    challenge = run.output.rsplit(b"\r\n", 2)[-2]
    assert challenge.startswith(b"334 ")
    text = base64.b64decode(challenge[4:]).decode()
    return dict(part.split("=", 1) for part in text.split(","))


def test_server_settings_reach_the_decoy() -> None:
    settings = dataclasses.replace(TLS_AUTH, scram_decoy_key=KEY_A,
                                   scram_decoy_iterations=100_000)
    a = _server_first_over_smtp(settings)
    b = _server_first_over_smtp(settings)
    assert a["s"] == b["s"] and a["i"] == "100000"
    other = _server_first_over_smtp(dataclasses.replace(settings, scram_decoy_key=KEY_B))
    assert other["s"] != a["s"]


def test_scram_off_is_neither_offered_nor_accepted() -> None:
    """RFC 4954 4: a mechanism the server does not offer is refused with 504 5.5.4."""
    settings = dataclasses.replace(TLS_AUTH, scram=False)
    run = run_all_ways(b"EHLO c\r\nAUTH SCRAM-SHA-256 " +
                       base64.b64encode(b"n,,n=u@mx.test,r=nonce") + b"\r\n", settings=settings)
    assert b"250-AUTH PLAIN LOGIN\r\n" in run.output or b"250 AUTH PLAIN LOGIN\r\n" in run.output
    assert b"SCRAM" not in run.output
    assert run.codes[-1] == "504 5.5.4"
    on = run_all_ways(b"EHLO c\r\n", settings=TLS_AUTH)
    assert b"AUTH PLAIN LOGIN SCRAM-SHA-256" in on.output
