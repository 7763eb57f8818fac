"""The inbound checks (mailyard.senderauth): DKIM, ARC and DMARC of a port-25 message,
the Authentication-Results field (RFC 8601) and the DMARC action (RFC 7489 6.7), over
an in-memory resolver and an in-memory queue."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailyard.authres.parse import parse_value
from mailyard.config import DmarcConfig, DmarcQuarantine
from mailyard.dkim.keys import dns_record
from mailyard.dkim.sign import Signer, sign_message
from mailyard.dkim.verify import VerifyPolicy
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dns.static import StaticResolver
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import IngestRefused, Origin, Submission
from mailyard.ingest.pipeline import QueueIngest
from mailyard.message.headerblock import inspect_header
from mailyard.proto.smtp.replies import REPLY_DMARC_REJECT
from mailyard.senderauth.checks import SpfInput, Verdict, check_message
from mailyard.senderauth.hook import InboundChecks, OwnFields
from tests.support.memory_queue import MemoryQueue

NOW = 1_790_000_000.0
SUFFIXES = PublicSuffixes.from_text("com\nnet\n")
MESSAGE = (b"From: Ada <ada@example.com>\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
           b"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\n"
           b"Hi Bob,\r\n\r\nthe report is attached.\r\n")
SPF_PASS = SpfInput("pass", "mailfrom", "ada@example.com", "example.com")
SPF_FAIL = SpfInput("fail", "mailfrom", "ada@example.com", "example.com")
ENVELOPE = Envelope(sender="ada@example.com", recipients=(Recipient("bob@example.net"),),
                    client_ip="192.0.2.9", client_helo="mail.example.com")


def zone(key: rsa.RSAPrivateKey, policy: str = "reject") -> StaticResolver:
    return StaticResolver({
        "s1._domainkey.example.com": {"TXT": [dns_record(key)]},
        "_dmarc.example.com": {"TXT": [f"v=DMARC1; p={policy}"]},
        "example.com": {"A": ["192.0.2.1"]},
    })


def signed(key: rsa.RSAPrivateKey, message: bytes = MESSAGE) -> bytes:
    return sign_message(message, [Signer("example.com", "s1", key)], NOW) + message


DMARC = DmarcConfig()


def run(message: bytes, resolver: StaticResolver, spf: SpfInput | None,
        dmarc: DmarcConfig = DMARC) -> Verdict:
    return asyncio.run(check_message(message, resolver, SUFFIXES, spf=spf, dmarc=dmarc,
                                     remote_ip="192.0.2.9", now=NOW, sample=lambda: 0))


def test_signed_message_passes_dkim_and_dmarc_and_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    verdict = run(signed(rsa_key), zone(rsa_key), SPF_PASS)
    assert [str(r.status) for r in verdict.dkim] == ["pass"]
    assert verdict.dmarc is not None and str(verdict.dmarc.status) == "pass"
    assert str(verdict.action().kind) == "accept"
    field = verdict.field("mx.example.net")
    assert field.startswith(b"Authentication-Results: mx.example.net;")
    # RFC 8601 2.2: the field parses, one entry per method (dkim per signature).
    parsed = parse_value(field.decode().partition(":")[2])
    assert not isinstance(parsed, Exception) and hasattr(parsed, "results")
    methods = {(r.method, r.result) for r in parsed.results}  # type: ignore[union-attr]
    assert methods == {("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("arc", "none")}
    dkim = next(r for r in parsed.results if r.method == "dkim")  # type: ignore[union-attr]
    assert dkim.prop("header", "d") == "example.com" and len(dkim.prop("header", "b") or "") >= 8
    assert b"smtp.mailfrom=ada@example.com" in field and b"header.from=example.com" in field


def test_rfc7489_aligned_spf_alone_passes_dmarc(rsa_key: rsa.RSAPrivateKey) -> None:
    verdict = run(MESSAGE, zone(rsa_key), SPF_PASS)
    assert verdict.dkim == () and verdict.dmarc is not None
    assert str(verdict.dmarc.status) == "pass"
    assert b"dkim=none" in verdict.field("mx.example.net")


def test_forged_message_under_p_reject_is_refused_550_5_7_1(rsa_key: rsa.RSAPrivateKey) -> None:
    verdict = run(MESSAGE, zone(rsa_key), SPF_FAIL)
    action = verdict.action()
    assert str(action.kind) == "reject" and action.reply is not None
    assert (action.reply.code, action.reply.status) == (550, "5.7.1")


def test_broken_signature_fails_dkim_and_dmarc(rsa_key: rsa.RSAPrivateKey) -> None:
    tampered = signed(rsa_key).replace(b"the report", b"the invoice")
    verdict = run(tampered, zone(rsa_key), None)
    assert [str(r.status) for r in verdict.dkim] == ["fail"]
    assert verdict.dmarc is not None and str(verdict.dmarc.status) == "fail"


def test_dns_timeouts_are_temperror_and_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = zone(rsa_key)
    resolver.fail("s1._domainkey.example.com", "timeout")
    resolver.fail("_dmarc.example.com", "timeout")
    verdict = run(signed(rsa_key), resolver, SPF_FAIL)
    assert [str(r.status) for r in verdict.dkim] == ["temperror"]
    assert verdict.dmarc is not None and str(verdict.dmarc.status) == "temperror"
    assert str(verdict.action().kind) == "accept"


@pytest.mark.parametrize("dmarc", [DmarcConfig(enabled=False), None])
def test_dmarc_disabled_gives_no_dmarc_entry(rsa_key: rsa.RSAPrivateKey,
                                             dmarc: DmarcConfig | None) -> None:
    verdict = asyncio.run(check_message(MESSAGE, zone(rsa_key), SUFFIXES, spf=SPF_FAIL,
                                        dmarc=dmarc, now=NOW))
    assert verdict.dmarc is None and str(verdict.action().kind) == "accept"
    assert b"dmarc=" not in verdict.field("mx.example.net")


# --- in the ingest stage ------------------------------------------------------------

def hook(resolver: StaticResolver, spf: SpfInput | None,
         dmarc: DmarcConfig = DMARC) -> InboundChecks:
    return InboundChecks(lambda: resolver, lambda: SUFFIXES, authserv_id="mx.example.net",
                         policy=VerifyPolicy(), dmarc=dmarc, spf_of=lambda s: spf)


def ingest(queue: MemoryQueue, checks: InboundChecks) -> QueueIngest:
    return QueueIngest(queue, "mx.example.net", streaming_hooks=[checks],
                       rewrite=OwnFields(("mx.example.net",)))


def receive(ingest: QueueIngest, message: bytes, *, auth_user: str = "",
            origin: Origin = Origin.INBOUND, log_fields: dict[str, str] | None = None) -> str:
    """As smtpd streams DATA: the header section is reported before the chunk that
    ends it (its first part is written already), then the rest in pieces."""
    end = message.index(b"\r\n\r\n") + 2
    header = message[:end]
    envelope = replace(ENVELOPE, auth_user=auth_user, received_at=NOW)
    submission = Submission(origin, envelope, protocol="ESMTP")
    if log_fields is not None:
        submission = replace(submission, log_fields=log_fields)
    writer = ingest.open(submission)
    writer.write(header[:40])
    writer.header(header, inspect_header(header))
    rest = message[40:]
    for i in range(0, len(rest), 7):
        writer.write(rest[i:i + 7])
    return asyncio.run(writer.commit())


def test_ingest_prepends_our_field_and_streams_the_body(rsa_key: rsa.RSAPrivateKey,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    queue = MemoryQueue()
    qid = receive(ingest(queue, hook(zone(rsa_key), SPF_PASS)), signed(rsa_key))
    _envelope, content, prepend = queue.messages[qid]
    assert prepend.startswith(b"Authentication-Results: mx.example.net;")
    assert b"dkim=pass" in prepend and b"dmarc=pass" in prepend
    assert content.startswith(b"Received: from mail.example.com")  # the body untouched
    assert content.endswith(b"the report is attached.\r\n")


def test_rfc8601_5_fields_claiming_our_authserv_id_are_removed(
        rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    queue = MemoryQueue()
    forged = (b"Authentication-Results: MX.example.net.; dkim=pass header.d=bank.example\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n"
              b"X-Mailyard-Folder: INBOX\r\n" + signed(rsa_key))
    qid = receive(ingest(queue, hook(zone(rsa_key), SPF_PASS)), forged)
    _envelope, content, prepend = queue.messages[qid]
    assert b"bank.example" not in content and b"X-Mailyard-Folder" not in content
    assert b"Authentication-Results: other.example; spf=pass\r\n" in content
    assert b"dkim=pass header.d=example.com" in prepend  # the removed field was not signed


def test_forged_mail_is_refused_at_commit(rsa_key: rsa.RSAPrivateKey) -> None:
    queue = MemoryQueue()
    with pytest.raises(IngestRefused) as refused:
        receive(ingest(queue, hook(zone(rsa_key), SPF_FAIL)), MESSAGE)
    assert refused.value.reply.code == REPLY_DMARC_REJECT.code
    assert refused.value.reply.status == "5.7.1" and not queue.messages


def test_results_go_to_the_transaction_log_line(rsa_key: rsa.RSAPrivateKey,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No log line of their own: smtpd adds them to its ``smtp transaction`` line."""
    monkeypatch.setattr("time.time", lambda: NOW)
    passed: dict[str, str] = {}
    receive(ingest(MemoryQueue(), hook(zone(rsa_key), SPF_PASS)), signed(rsa_key),
            log_fields=passed)
    assert passed == {"dkim": "pass", "arc": "none", "dmarc": "pass",
                      "from_domain": "example.com", "action": "accept"}
    refused: dict[str, str] = {}
    with pytest.raises(IngestRefused):
        receive(ingest(MemoryQueue(), hook(zone(rsa_key), SPF_FAIL)), MESSAGE,
                log_fields=refused)
    assert refused == {"dkim": "none", "arc": "none", "dmarc": "fail",
                       "from_domain": "example.com", "action": "reject"}


@pytest.mark.parametrize(("mode", "folder"), [(DmarcQuarantine.JUNK, True),
                                               (DmarcQuarantine.HEADER, False)])
def test_quarantine_marks_and_files_in_junk(rsa_key: rsa.RSAPrivateKey,
                                            mode: DmarcQuarantine, folder: bool) -> None:
    queue = MemoryQueue()
    checks = hook(zone(rsa_key, "quarantine"), SPF_FAIL, DmarcConfig(quarantine=mode))
    qid = receive(ingest(queue, checks), MESSAGE)
    prepend = queue.messages[qid][2]
    assert b"dmarc=fail" in prepend
    assert b"X-Mailyard-Quarantine: dmarc domain=example.com policy=quarantine" in prepend
    assert (b"X-Mailyard-Folder: Junk\r\n" in prepend) is folder


def test_authenticated_and_submitted_mail_is_not_checked(rsa_key: rsa.RSAPrivateKey) -> None:
    queue = MemoryQueue()
    ing = ingest(queue, hook(zone(rsa_key), SPF_FAIL))
    for qid in (receive(ing, MESSAGE, auth_user="ada"),
                receive(ing, MESSAGE, origin=Origin.SUBMISSION, auth_user="ada")):
        assert queue.messages[qid][2] == b""


def test_own_bounces_and_forwards_keep_their_header() -> None:
    rewrite = OwnFields(("mx.example.net",))
    for origin in (Origin.DSN, Origin.FORWARD):
        assert not rewrite.applies(Submission(origin, ENVELOPE))
    for origin in (Origin.INBOUND, Origin.SUBMISSION, Origin.LOCAL, Origin.API):
        assert rewrite.applies(Submission(origin, ENVELOPE))


class SilentResolver(StaticResolver):
    """A DNS server that never answers (the lookups wait until cancelled)."""

    async def query(self, name: str, rdtype: str):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()


def test_lookups_beyond_the_time_budget_give_temperror_not_a_stall(
        rsa_key: rsa.RSAPrivateKey) -> None:
    checks = InboundChecks(lambda: SilentResolver(), lambda: SUFFIXES,
                           authserv_id="mx.example.net", policy=VerifyPolicy(),
                           dmarc=DMARC, spf_of=lambda s: SPF_FAIL, time_budget=0.05)
    queue = MemoryQueue()
    qid = receive(ingest(queue, checks), signed(rsa_key))  # a reject would raise here
    prepend = queue.messages[qid][2]
    assert b"dkim=temperror header.d=example.com header.s=s1" in prepend
    assert b"dmarc=temperror" in prepend and b"spf=fail" in prepend


def test_rfc8601_2_7_2_spf_of_both_identities(rsa_key: rsa.RSAPrivateKey) -> None:
    helo = SpfInput("none", "helo", "postmaster@mail.example.com", "mail.example.com")
    verdict = asyncio.run(check_message(MESSAGE, zone(rsa_key), SUFFIXES, spf=SPF_PASS,
                                        dmarc=DMARC, now=NOW))
    field = replace(verdict, spf_helo=helo).field("mx.example.net")
    assert b"spf=pass smtp.mailfrom=ada@example.com;" in field
    assert b"spf=none smtp.helo=mail.example.com;" in field



def test_rfc8601_2_7_2_the_helo_identity_is_in_the_field_ingest_adds(
        rsa_key: rsa.RSAPrivateKey) -> None:
    """The HELO identity checked apart from MAIL FROM gets its own ``spf`` entry, in a
    finished check as in one that ran out of time."""
    helo = SpfInput("pass", "helo", "postmaster@mail.example.com", "mail.example.com")
    checks = InboundChecks(lambda: zone(rsa_key), lambda: SUFFIXES,
                           authserv_id="mx.example.net", policy=VerifyPolicy(),
                           dmarc=DMARC, spf_of=lambda s: SPF_PASS,
                           spf_helo_of=lambda s: helo)
    queue = MemoryQueue()
    qid = receive(ingest(queue, checks), signed(rsa_key))
    prepend = queue.messages[qid][2]
    assert b"spf=pass smtp.mailfrom=ada@example.com;" in prepend
    assert b"spf=pass smtp.helo=mail.example.com;" in prepend

# --- recorded for the aggregate reports (RFC 7489 7.2) ------------------------------

def reporting_zone(key: rsa.RSAPrivateKey, policy: str) -> StaticResolver:
    resolver = zone(key, policy)
    resolver.set("_dmarc.example.com", "TXT",
                 [f"v=DMARC1; p={policy}; aspf=s; rua=mailto:agg@example.com"])
    return resolver


def test_evaluations_are_recorded_with_what_was_done(rsa_key: rsa.RSAPrivateKey,
                                                     tmp_path) -> None:
    """A pass, a refused forgery (disposition reject) and, with ``[dmarc] reject =
    false``, a forgery quarantined instead (reason local_policy) are all counted; a
    domain without rua is not."""
    from mailyard.dmarc.evalstore import EvaluationRecorder, EvaluationStore

    store = EvaluationStore(tmp_path / "e.db")
    recorder = EvaluationRecorder(store, lambda: NOW, delay=3600)

    def checks(resolver: StaticResolver, spf: SpfInput,
               dmarc: DmarcConfig = DMARC) -> InboundChecks:
        return InboundChecks(lambda: resolver, lambda: SUFFIXES, authserv_id="mx.example.net",
                             policy=VerifyPolicy(), dmarc=dmarc, spf_of=lambda s: spf,
                             recorder=recorder)

    queue = MemoryQueue()
    receive(ingest(queue, checks(reporting_zone(rsa_key, "reject"), SPF_PASS)), signed(rsa_key))
    with pytest.raises(IngestRefused):
        receive(ingest(queue, checks(reporting_zone(rsa_key, "reject"), SPF_FAIL)), MESSAGE)
    receive(ingest(queue, checks(reporting_zone(rsa_key, "reject"), SPF_FAIL,
                                 DmarcConfig(reject=False))), MESSAGE)
    last = ingest(queue, checks(zone(rsa_key, "reject"), SPF_PASS))
    receive(last, MESSAGE)  # no rua: not counted
    assert recorder.pending == 3 and store.rows(0) == []
    asyncio.run(last.close_hooks())  # what a worker does at shutdown
    assert recorder.pending == 0
    found = {(r.evaluation.disposition, r.evaluation.dkim, r.evaluation.spf,
              r.evaluation.reasons) for r in store.rows(0)}
    assert found == {("none", "pass", "pass", ()), ("reject", "fail", "fail", ()),
                     ("quarantine", "fail", "fail", ("local_policy",))}
    row = next(r.evaluation for r in store.rows(0) if r.evaluation.dkim == "pass")
    assert (row.policy_domain, row.header_from, row.source_ip, row.envelope_from) == (
        "example.com", "example.com", "192.0.2.9", "example.com")
    assert [(a.method, a.domain, a.result) for a in row.auth] == [
        ("dkim", "example.com", "pass"), ("spf", "example.com", "pass")]
    assert (row.policy.p, row.policy.aspf) == ("reject", "s")


def test_prepare_loads_the_suffix_list_and_resolver_before_the_first_message() -> None:
    made: list[str] = []

    def suffixes() -> PublicSuffixes:
        made.append("suffixes")
        return SUFFIXES

    def resolver() -> StaticResolver:
        made.append("resolver")
        return StaticResolver({})

    checks = InboundChecks(resolver, suffixes, authserv_id="mx.example.net",
                           policy=VerifyPolicy(), dmarc=DMARC)
    QueueIngest(MemoryQueue(), "mx.example.net", streaming_hooks=[checks]).prepare_hooks()
    assert made == ["suffixes", "resolver"]


def test_prepare_with_an_unreadable_suffix_list_leaves_it_for_later() -> None:
    def missing() -> PublicSuffixes:
        raise FileNotFoundError("/nonexistent/public_suffix_list.dat")

    checks = InboundChecks(lambda: StaticResolver({}), missing, authserv_id="mx.example.net",
                           policy=VerifyPolicy(), dmarc=DMARC)
    checks.prepare()  # logs a warning, does not raise
