"""smtpd policy pieces without a network: listener rules, the free-space cache, the
connection limiter and the Received field (RFC 5321 4.4, RFC 3848)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from support.smtpd_fakes import MemoryDirectory, MemorySpool  # noqa: E402

from mailyard.config import Config, SmtpdConfig  # noqa: E402
from mailyard.directory.api import DirectoryError  # noqa: E402
from mailyard.proto.smtp.replies import (  # noqa: E402
    REPLY_AUTH_REQUIRED,
    REPLY_DISK_FULL,
    REPLY_MUST_STARTTLS,
    REPLY_RELAY_DENIED,
    REPLY_SENDER_NOT_OWNED,
    REPLY_SERVER_BUSY,
    REPLY_TEMP_LOOKUP,
    REPLY_TOO_MANY_CONNECTIONS,
    REPLY_UNKNOWN_USER,
)
from mailyard.proto.smtp.session import Session  # noqa: E402
from mailyard.smtpd.limits import ConnectionLimiter  # noqa: E402
from mailyard.smtpd.policy import FreeSpaceGauge, ListenerPolicy  # noqa: E402

CONFIG = Config(hostname="mx.test", local_domains=("mx.test",),
                smtpd=SmtpdConfig(min_free_disk=1000))


def policy(kind: str, spool: MemorySpool | None = None) -> ListenerPolicy:
    directory = MemoryDirectory(("mx.test",), {"user@mx.test": "pw"})
    return ListenerPolicy(kind, CONFIG, directory, FreeSpaceGauge(spool or MemorySpool()))


def session(tls: bool = False, user: str = "") -> Session:
    s = Session(tls=tls)
    s.auth_user = user
    return s


def test_mx_rules() -> None:
    p = policy("smtp")
    assert p.check_mail(session(), "anyone@example.org") is None
    assert p.check_rcpt(session(), "user@mx.test") is None
    assert p.check_rcpt(session(), "user+tag@MX.test") is None
    assert p.check_rcpt(session(), "nobody@mx.test") == REPLY_UNKNOWN_USER
    assert p.check_rcpt(session(), "user@example.org") == REPLY_RELAY_DENIED
    assert p.check_rcpt(session(), "user@[192.0.2.1]") == REPLY_RELAY_DENIED
    assert p.check_rcpt(session(), "Postmaster") is None
    assert p.postmaster_address("Postmaster") == "Postmaster@mx.test"


def test_submission_rules() -> None:
    """RFC 6409 4.3 / RFC 8314: TLS, then AUTH, then only owned senders."""
    p = policy("submission")
    assert p.check_mail(session(), "user@mx.test") == REPLY_MUST_STARTTLS
    assert p.check_mail(session(tls=True), "user@mx.test") == REPLY_AUTH_REQUIRED
    authed = session(tls=True, user="user@mx.test")
    assert p.check_mail(authed, "user@mx.test") is None
    assert p.check_mail(authed, "user+x@mx.test") is None
    assert p.check_mail(authed, "other@mx.test") == REPLY_SENDER_NOT_OWNED
    assert p.check_rcpt(authed, "anyone@example.org") is None
    assert p.check_rcpt(authed, "nobody@mx.test") == REPLY_UNKNOWN_USER
    with pytest.raises(ValueError):
        policy("lmtp")


class CountingDirectory(MemoryDirectory):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(("mx.test",), {"user@mx.test": "pw"})
        self.refreshes = 0
        self.fail = fail

    def refresh(self) -> None:
        if self.fail:
            raise DirectoryError("database is locked")
        self.refreshes += 1


def test_directory_refreshed_once_per_transaction() -> None:
    """MAIL refreshes the directory; the RCPTs of the transaction use what it saw."""
    directory = CountingDirectory()
    p = ListenerPolicy("smtp", CONFIG, directory, FreeSpaceGauge(MemorySpool()))
    assert p.check_mail(session(), "anyone@example.org") is None
    for _ in range(3):
        assert p.check_rcpt(session(), "user@mx.test") is None
    assert directory.refreshes == 1
    failing = ListenerPolicy("smtp", CONFIG, CountingDirectory(fail=True),
                             FreeSpaceGauge(MemorySpool()))
    assert failing.check_mail(session(), "anyone@example.org") == REPLY_TEMP_LOOKUP


def test_disk_space_is_cached() -> None:
    spool = MemorySpool()
    clock = [0.0]
    gauge = FreeSpaceGauge(spool, clock=lambda: clock[0])
    spool.free = 5000
    assert gauge.free_bytes() == 5000
    spool.free = 10
    assert gauge.free_bytes() == 5000  # within the second
    clock[0] = 1.5
    assert gauge.free_bytes() == 10
    p = ListenerPolicy("smtp", CONFIG, MemoryDirectory((), {}), gauge)
    assert p.check_mail(session(), "a@b.example") == REPLY_DISK_FULL


def test_connection_limiter() -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_ip=2)
    assert limiter.acquire("192.0.2.1") is None
    assert limiter.acquire("192.0.2.1") is None
    assert limiter.acquire("192.0.2.1") == REPLY_TOO_MANY_CONNECTIONS
    assert limiter.acquire("192.0.2.2") is None
    assert limiter.acquire("192.0.2.3") == REPLY_SERVER_BUSY
    limiter.release("192.0.2.1")
    assert limiter.count("192.0.2.1") == 1 and limiter.total == 2
    limiter.release("192.0.2.9")  # never counted: no effect
    assert limiter.total == 2


def _summary(block: bytes):
    from mailyard.message.headerblock import inspect_header
    return inspect_header(block)


def test_delivered_to_naming_a_recipient_is_a_loop() -> None:
    """A Delivered-To for an accepted local recipient (key, +tag stripped) refuses the
    message in session (554 5.4.6), so no bounce goes to a forged sender."""
    from mailyard.envelope import Recipient
    from mailyard.proto.smtp.replies import REPLY_DELIVERED_TO_LOOP

    for kind in ("smtp", "submission"):
        p = policy(kind)
        s = session(tls=True, user="user@mx.test")
        rcpts = (Recipient("User+Tag@MX.test"), Recipient("someone@remote.test"))
        assert p.check_content(s, rcpts, _summary(b"Delivered-To: user@mx.test\r\n")) == \
            REPLY_DELIVERED_TO_LOOP
        assert p.check_content(s, rcpts, _summary(b"Delivered-To: USER+tag@mx.test\r\n")) == \
            REPLY_DELIVERED_TO_LOOP
        assert p.check_content(s, rcpts, _summary(b"Delivered-To: other@mx.test\r\n")) is None
        assert p.check_content(s, rcpts, _summary(b"Delivered-To: someone@remote.test\r\n")) \
            is None  # not local: not ours to judge
        assert p.check_content(s, rcpts, _summary(b"Subject: x\r\n")) is None


def test_header_from_must_be_owned_when_required() -> None:
    from dataclasses import replace as dc_replace

    from mailyard.proto.smtp.replies import REPLY_HEADER_FROM_NOT_OWNED
    required = dc_replace(CONFIG, smtpd=dc_replace(CONFIG.smtpd, require_header_from_match=True))
    directory = MemoryDirectory(("mx.test",), {"user@mx.test": "pw"})
    on = ListenerPolicy("submission", required, directory, FreeSpaceGauge(MemorySpool()))
    off = policy("submission")
    s = session(tls=True, user="user@mx.test")
    own = _summary(b"From: User <user+news@mx.test>\r\n")
    foreign = _summary(b"From: \"user@mx.test\" <ceo@mx.test>\r\n")
    display = _summary(b"From: \"ceo@mx.test\" <user@mx.test>\r\n")
    missing = _summary(b"Subject: x\r\n")
    assert on.check_content(s, (), own) is None
    for summary in (foreign, display, missing):
        assert on.check_content(s, (), summary) == REPLY_HEADER_FROM_NOT_OWNED
        assert off.check_content(s, (), summary) is None
    mx = ListenerPolicy("smtp", required, directory, FreeSpaceGauge(MemorySpool()))
    assert mx.check_content(session(), (), foreign) is None  # port 25: not a login


@pytest.mark.parametrize("literal,allowed", [
    ("[192.0.2.1]", False), ("[8.8.8.8]", True), ("[127.0.0.1]", False),
    ("[10.0.0.5]", False), ("[169.254.1.1]", False), ("[IPv6:::1]", False),
    ("[IPv6:fe80::1]", False), ("[IPv6:::ffff:10.0.0.1]", False),
    ("[IPv6:2001:4860:4860::8888]", True), ("[not-an-ip]", False), ("[224.0.0.1]", False),
])
def test_submission_address_literals(literal: str, allowed: bool) -> None:
    """Refused by default on submission; allowed on request, but never to loopback,
    private, link-local or other non-global ranges (no SSRF into the LAN)."""
    from dataclasses import replace as dc_replace

    from mailyard.proto.smtp.replies import REPLY_ADDRESS_LITERAL_DENIED
    authed = session(tls=True, user="user@mx.test")
    assert policy("submission").check_rcpt(authed, f"x@{literal}") == REPLY_ADDRESS_LITERAL_DENIED
    config = dc_replace(CONFIG, smtpd=dc_replace(CONFIG.smtpd,
                                                 submission_allow_address_literals=True))
    p = ListenerPolicy("submission", config,
                       MemoryDirectory(("mx.test",), {"user@mx.test": "pw"}),
                       FreeSpaceGauge(MemorySpool()))
    expected = None if allowed else REPLY_ADDRESS_LITERAL_DENIED
    assert p.check_rcpt(authed, f"x@{literal}") == expected
    assert p.check_rcpt(authed, "x@remote.example") is None


def test_postmaster_goes_to_first_directory_domain_without_local_domains() -> None:
    """RFC 5321 4.5.1: <postmaster> is accepted even when the domains come only from
    the directory (``mailyard domain add``)."""
    config = Config(hostname="host.test", smtpd=SmtpdConfig(min_free_disk=1000))
    p = ListenerPolicy("smtp", config, MemoryDirectory(("mx.test",), {}),
                       FreeSpaceGauge(MemorySpool()))
    address = p.postmaster_address("POSTMASTER")
    assert address == "POSTMASTER@mx.test"
    assert p.check_rcpt(session(), address) is None


def test_bounces_to_our_srs_addresses_are_accepted_on_port_25() -> None:
    """A valid SRS address of a local domain is a recipient (ingest routes it back to
    the original sender); a forged or expired one is an unknown user, and so is any on
    the submission ports, which take no bounces."""
    import time

    from mailyard.srs import Srs

    srs = Srs(b"k" * 32)
    good = srs.forward("dave@remote.test", "mx.test", time.time())
    old = srs.forward("dave@remote.test", "mx.test", time.time() - 30 * 86_400)
    directory = MemoryDirectory(("mx.test",), {"user@mx.test": "pw"})

    def made(kind: str) -> ListenerPolicy:
        return ListenerPolicy(kind, CONFIG, directory, FreeSpaceGauge(MemorySpool()),
                              srs=lambda: srs)

    mx = made("smtp")
    assert mx.check_rcpt(session(), good) is None
    assert mx.check_rcpt(session(), good.upper().replace("MX.TEST", "mx.test")) is None
    assert mx.check_rcpt(session(), good.replace("=dave@", "=eve@")) == REPLY_UNKNOWN_USER
    assert mx.check_rcpt(session(), old) == REPLY_UNKNOWN_USER
    assert mx.check_rcpt(session(), good.replace("@mx.test", "@elsewhere.test")) == \
        REPLY_RELAY_DENIED
    assert policy("smtp").check_rcpt(session(), good) == REPLY_UNKNOWN_USER  # SRS off
    assert made("submission").check_rcpt(session(True, "user@mx.test"), good) == \
        REPLY_UNKNOWN_USER


def test_feedback_addresses_are_accepted_only_with_a_valid_token() -> None:
    """bounces+<token> and unsubscribe+<token> at the bounce domain: the signed token
    decides, not the directory (a user named "bounces" does not make a forged bounce
    deliverable); the complaint address is always a recipient."""
    from mailyard.feedback.addresses import FeedbackAddresses
    from mailyard.feedback.verp import CampaignRecipient, verp_address

    key = b"v" * 32
    good = verp_address(CampaignRecipient(3, 9), key, "mx.test")
    token = good.partition("+")[2].partition("@")[0]
    forged = good.replace(token, token[::-1])
    directory = MemoryDirectory(("mx.test",), {"bounces@mx.test": "pw"})
    for kind in ("smtp", "submission"):
        p = ListenerPolicy(kind, CONFIG, directory, FreeSpaceGauge(MemorySpool()),
                           feedback=FeedbackAddresses("mx.test", lambda: key))
        s = session(True, "bounces@mx.test")
        assert p.check_rcpt(s, good) is None
        assert p.check_rcpt(s, good.upper().replace("MX.TEST", "mx.test")) is None
        assert p.check_rcpt(s, f"unsubscribe+{token}@mx.test") is None
        assert p.check_rcpt(s, "FBL@mx.test") is None
        assert p.check_rcpt(s, forged) == REPLY_UNKNOWN_USER
        assert p.check_rcpt(s, "unsubscribe+x@mx.test") == REPLY_UNKNOWN_USER
        assert p.check_rcpt(s, "bounces@mx.test") is None  # the user, as before
    mx = ListenerPolicy("smtp", CONFIG, directory, FreeSpaceGauge(MemorySpool()),
                        feedback=FeedbackAddresses("mx.test", lambda: key))
    assert mx.check_rcpt(session(), "nobody@mx.test") == REPLY_UNKNOWN_USER
