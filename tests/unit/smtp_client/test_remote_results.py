"""How remote delivery turns what each next hop said into one result per recipient
(RFC 5321 5.1: try the hosts in order; 4.2.1: 4yz transient, 5yz permanent)."""

from __future__ import annotations

from mailyard.delivery.remote import _Attempt, _conclude, credentials, pool_key
from mailyard.delivery.routing import NextHop, SmtpAuth
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import AttemptStatus, ReplyOrigin

DELIVERED, DEFERRED, FAILED = AttemptStatus.DELIVERED, AttemptStatus.DEFERRED, AttemptStatus.FAILED
OK = Reply(250, "2.0.0", "queued")
REFUSED = Reply(451, "4.4.1", "connect to mx1: Connection refused")
NO_SERVICE = Reply(554, "5.3.2", "no service")
UNKNOWN = Reply(550, "5.1.1", "unknown user")


def test_no_hops_defers() -> None:
    result = _conclude(3, [])
    assert (result.index, result.status, result.remote_host) == (3, DEFERRED, "")
    assert (result.reply.code, result.reply.status) == (451, "4.4.0")
    assert result.reply.origin is ReplyOrigin.LOCAL and not result.answered


def test_last_word_counts() -> None:
    attempts = [_Attempt(REFUSED, "mx1", False, DEFERRED), _Attempt(OK, "mx2", True, DELIVERED)]
    result = _conclude(0, attempts)
    assert (result.status, str(result.reply), result.remote_host) == (
        DELIVERED, "250 2.0.0 queued", "mx2")
    assert result.reply.reply == OK and result.reply.remote_host == "mx2" and result.answered


def test_recipient_refusal_on_a_later_hop_is_final() -> None:
    attempts = [_Attempt(REFUSED, "mx1", False, DEFERRED), _Attempt(UNKNOWN, "mx2", True, FAILED)]
    assert _conclude(0, attempts).status is FAILED


def test_session_refusals_only_bounce_when_no_hop_failed_temporarily() -> None:
    both_5xx = [_Attempt(NO_SERVICE, "mx1", False, FAILED),
                _Attempt(NO_SERVICE, "mx2", False, FAILED)]
    assert _conclude(0, both_5xx).status is FAILED
    mixed = [_Attempt(REFUSED, "mx1", False, DEFERRED), _Attempt(NO_SERVICE, "mx2", False, FAILED)]
    result = _conclude(0, mixed)
    assert (result.status, result.remote_host) == (DEFERRED, "mx1")
    assert result.reply.reply == REFUSED


def test_a_session_failure_the_client_reports_is_ours_not_the_hosts() -> None:
    """A connection that broke is a local note (origin local), even with a host."""
    from mailyard.proto.smtp.replies import REPLY_REMOTE_UNREACHABLE

    result = _conclude(0, [_Attempt(REPLY_REMOTE_UNREACHABLE, "mx1", False, DEFERRED)])
    assert result.remote_host == "mx1"
    assert result.reply.origin is ReplyOrigin.LOCAL and not result.answered


def test_credentials_and_pool_keys() -> None:
    assert credentials(None) is None
    assert credentials(("u", "p")) == ("u", "p")
    assert credentials(SmtpAuth("u", "p")) == ("u", "p")
    a = NextHop("mx.test", "192.0.2.1", 25, "may")
    b = NextHop("other-name.test", "192.0.2.1", 25, "may")
    c = NextHop("mx.test", "192.0.2.1", 25, "require")
    d = NextHop("mx.test", "192.0.2.1", 587, "may", SmtpAuth("u", "p"))
    assert pool_key(a) == pool_key(b)
    assert len({pool_key(a), pool_key(c), pool_key(d)}) == 3
