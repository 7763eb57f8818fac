"""Feedback addresses (bounces+token, unsubscribe+token, the complaint address) and the
actions a received report becomes (mailyard.feedback.addresses, .actions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.feedback.actions import ActionKind, Source, campaign_of_feedback_id, plan
from mailyard.feedback.addresses import FeedbackAddress, FeedbackAddresses, FeedbackKind
from mailyard.feedback.classify import classify
from mailyard.feedback.verp import CampaignRecipient, TransactionalMessage, verp_address, verp_key

SAMPLES = Path(__file__).parent / "samples"
KEY = verp_key(b"k" * 32)
TARGET = CampaignRecipient(42, 1001)
VERP = verp_address(TARGET, KEY, "lists.example.org")
TOKEN = VERP.partition("+")[2].partition("@")[0]
UNSUB = f"unsubscribe+{TOKEN}@lists.example.org"


def addresses(**kw) -> FeedbackAddresses:
    return FeedbackAddresses("Lists.Example.org", lambda: KEY, **kw)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"TOKEN", TOKEN.encode())


def arf(return_path: str, feedback_id: str = "", rcpt: str = "",
        feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 report (section 2: text, message/feedback-report, the message)."""
    rcpt_field = f"Original-Rcpt-To: <{rcpt}>\n" if rcpt else ""
    fid = f"Feedback-ID: {feedback_id}\n" if feedback_id else ""
    return (
        "From: <fbl@provider.example>\nTo: <fbl@lists.example.org>\nSubject: complaint\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nA complaint.\n\n"
        f"--b\nContent-Type: message/feedback-report\n\nFeedback-Type: {feedback_type}\n"
        f"User-Agent: Provider-FBL/1.0\nVersion: 1\n{rcpt_field}\n"
        "--b\nContent-Type: message/rfc822\n\n"
        f"Return-Path: <{return_path}>\nFrom: news@lists.example.org\n"
        f"To: reader@example.net\n{fid}Subject: July issue\n\nHello.\n\n--b--\n").encode()


# --- addresses ------------------------------------------------------------------------

def test_match_tells_the_kinds_apart_and_verifies_the_token() -> None:
    a = addresses()
    assert a.match(VERP) == FeedbackAddress(FeedbackKind.BOUNCE, TARGET)
    assert a.match(f"<{VERP.upper()}>") == FeedbackAddress(FeedbackKind.BOUNCE, TARGET)
    assert a.match(UNSUB) == FeedbackAddress(FeedbackKind.UNSUBSCRIBE, TARGET)
    assert a.match("FBL@lists.example.org") == FeedbackAddress(FeedbackKind.COMPLAINT, None)
    forged = "bounces+" + TOKEN[:-1] + ("a" if TOKEN[-1] != "a" else "b") + \
        "@lists.example.org"
    assert a.match(forged) == FeedbackAddress(FeedbackKind.BOUNCE, None)
    assert not a.match(forged).valid
    assert a.match("unsubscribe+junk@lists.example.org").valid is False
    # Not feedback addresses at all: the directory decides.
    for other in ("bounces@lists.example.org", "news@lists.example.org",
                  f"bounces+{TOKEN}@other.example", "postmaster"):
        assert a.match(other) is None


def test_a_configured_complaint_address_may_be_elsewhere() -> None:
    a = addresses(complaint_address="Abuse-FBL@example.com")
    assert a.domains == {"lists.example.org", "example.com"}
    assert a.match("abuse-fbl@example.com").kind is FeedbackKind.COMPLAINT
    assert a.match("fbl@lists.example.org") is None


def test_sender_target_reads_the_key_only_for_a_vERP_sender() -> None:
    def no_key() -> bytes:
        raise AssertionError("key read for a non-VERP sender")

    a = FeedbackAddresses("lists.example.org", no_key)
    for sender in ("", "alice@example.org", "bounces@lists.example.org",
                   f"bounces+{TOKEN}@elsewhere.example"):
        assert a.sender_target(sender) is None
    assert addresses().sender_target(VERP) == TARGET


# --- actions --------------------------------------------------------------------------

def test_postfix_dsn_at_the_bounce_address_is_a_hard_bounce() -> None:
    """RFC 3464 2.3.4 Status 5.1.1 with Action failed."""
    a = addresses()
    p = plan(a.match(VERP), classify(sample("postfix-dsn.eml")), a.locate)
    [act] = p.actions
    assert act.kind is ActionKind.HARD_BOUNCE and act.target == TARGET
    assert act.source is Source.REPORT and act.status == "5.1.1"
    assert act.data()["format"] == "rfc3464"


@pytest.mark.parametrize("name", ["rfc3464-simple.eml", "postfix-delay.eml",
                                  "exim-delay.eml"])
def test_temporary_failures_and_delay_notices_are_soft(name: str) -> None:
    a = addresses()
    [act] = plan(a.match(VERP), classify(sample(name)), a.locate).actions
    assert act.kind is ActionKind.SOFT_BOUNCE


@pytest.mark.parametrize("name", ["ooo-rfc3834.eml", "ooo-subject.eml", "reply.eml"])
def test_auto_replies_and_people_are_no_action(name: str) -> None:
    a = addresses()
    p = plan(a.match(VERP), classify(sample(name)), a.locate)
    assert p.actions == () and p.note


def test_unparseable_bytes_are_no_action() -> None:
    a = addresses()
    p = plan(a.match(VERP), classify(b"\x00\xff" * 100), a.locate)
    assert p.actions == ()


def test_a_bad_token_is_never_acted_on() -> None:
    p = plan(FeedbackAddress(FeedbackKind.BOUNCE, None), classify(sample("postfix-dsn.eml")),
             addresses().locate)
    assert p.actions == () and p.note == "token does not verify"


def test_transactional_bounces_name_each_failed_address() -> None:
    msg = TransactionalMessage("m-7")
    a = addresses()
    where = a.match(verp_address(msg, KEY, "lists.example.org"))
    acts = plan(where, classify(sample("rfc3464-multi.eml")), a.locate).actions
    assert {act.target for act in acts} == {msg}
    # RFC 3464 appendix: two failed (5.0.0), one delayed (4.0.0).
    assert [(act.address, act.kind) for act in acts] == [
        ("arathib@vnet.ibm.com", ActionKind.HARD_BOUNCE),
        ("johnh@hpnjld.njd.hp.com", ActionKind.SOFT_BOUNCE),
        ("wsnell@sdcc13.ucsd.edu", ActionKind.HARD_BOUNCE)]


def test_mailto_unsubscribe_whatever_the_body() -> None:
    a = addresses()
    body = b"From: reader@example.net\nSubject: unsubscribe\n\nplease\n"
    [act] = plan(a.match(UNSUB), classify(body), a.locate).actions
    assert (act.kind, act.target, act.source) == (ActionKind.UNSUBSCRIBE, TARGET,
                                                  Source.MAILTO)
    assert plan(a.match(UNSUB), classify(sample("ooo-rfc3834.eml")), a.locate).actions == ()


def test_arf_at_the_complaint_address_is_located_by_the_verp_return_path() -> None:
    """RFC 5965 2: the third part is the reported message, with our Return-Path."""
    a = addresses()
    [act] = plan(a.match("fbl@lists.example.org"), classify(arf(VERP)), a.locate).actions
    assert (act.kind, act.target) == (ActionKind.COMPLAINT, TARGET)
    assert act.detail == "abuse"


def test_arf_without_our_token_falls_back_to_feedback_id_and_recipient() -> None:
    a = addresses()
    report = arf("someone@else.example", feedback_id="42:news:campaign:mx.example.org",
                 rcpt="reader@example.net")
    [act] = plan(a.match("fbl@lists.example.org"), classify(report), a.locate).actions
    assert (act.target, act.campaign_id, act.address) == (None, 42, "reader@example.net")
    # No campaign and no token: nothing (anyone can write a report).
    p = plan(a.match("fbl@lists.example.org"), classify(sample("rfc5965-abuse.eml")),
             a.locate)
    assert p.actions == ()


def test_not_spam_reports_and_bounces_at_the_complaint_address_are_ignored() -> None:
    """RFC 5965 7.3: not-spam is no complaint."""
    a = addresses()
    fbl = a.match("fbl@lists.example.org")
    assert plan(fbl, classify(arf(VERP, feedback_type="not-spam")), a.locate).actions == ()
    assert plan(fbl, classify(sample("postfix-dsn.eml")), a.locate).actions == ()


def test_arf_sent_to_the_return_path_is_a_complaint_about_its_token() -> None:
    a = addresses()
    [act] = plan(a.match(VERP), classify(arf("x@y.example")), a.locate).actions
    assert (act.kind, act.target) == (ActionKind.COMPLAINT, TARGET)


@pytest.mark.parametrize("value,expected", [
    ("42:news:campaign:mx.example.org", 42), (" 7:a:campaign:h ", 7),
    ("42:campaign:mailyard", None), ("x:news:campaign:h", None), ("", None), (None, None),
    ("0:news:campaign:h", None), ("99999999999999999999:l:campaign:h", None),
])
def test_campaign_of_feedback_id(value, expected) -> None:
    assert campaign_of_feedback_id(value) == expected


# --- configuration ----------------------------------------------------------------------

BASE = 'hostname = "mx.example.org"\nlocal_domains = ["example.org"]\n'


@pytest.mark.parametrize("value", ["no address", "a+b@example.org", "<x@example.org>"])
def test_a_bad_complaint_address_names_the_key(value: str) -> None:
    from mailyard.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f'[bulk]\ncomplaint_address = "{value}"')
    assert info.value.key == "bulk.complaint_address"


def test_feedback_addresses_from_the_configuration(tmp_path) -> None:
    from mailyard.config import parse_config
    from mailyard.services.setup import feedback_addresses

    cfg = parse_config(BASE + f'data_dir = "{tmp_path}"\n')
    a = feedback_addresses(cfg)
    assert (a.domain, a.complaint_address) == ("example.org", "fbl@example.org")
    cfg = parse_config(BASE + f'data_dir = "{tmp_path}"\n[bulk]\nbounce_domain = "B.example.org"'
                       '\nbounce_prefix = "rtn"\ncomplaint_address = "Abuse@example.org"')
    a = feedback_addresses(cfg)
    assert (a.domain, a.complaint_address) == ("b.example.org", "abuse@example.org")
    target = CampaignRecipient(1, 2)
    verp = verp_address(target, a.key, "b.example.org", prefix="rtn")  # key from data_dir
    assert a.match(verp) == FeedbackAddress(FeedbackKind.BOUNCE, target)
    assert a.match(verp.replace("rtn+", "bounces+")) is None
