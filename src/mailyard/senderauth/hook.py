"""The inbound checks in the ingest stage, and the fields only we may write.

:class:`InboundChecks` is a :class:`~mailyard.ingest.api.StreamingHook` for mail
received on port 25 from unauthenticated clients (origin ``INBOUND`` without an
``auth_user``; submissions and authenticated sessions are our users' mail, signed
rather than checked).  Its observer sees the content as stored: it keeps the header
section (without our own trace field, which comes first and which no signer saw),
then feeds the body to the DKIM and ARC body hashers while the body streams, so the
body is read once.  At commit, with the SMTP transaction still waiting for its
answer, it looks up the keys and the DMARC record (async, through the worker's
caching resolver: a timeout is a ``temperror``, and all the lookups of a message
together get at most ``time_budget`` seconds, so the session never stalls), then:

* DMARC ``reject`` (``[dmarc] reject``): raises :class:`IngestRefused` with
  ``550 5.7.1``; nothing is queued;
* ``quarantine``: our Authentication-Results field, the ``X-Mailyard-Quarantine``
  marker and, with ``[dmarc] quarantine = "junk"``, the ``X-Mailyard-Folder: Junk``
  instruction that makes the local agent deliver to the mailbox's ``\\Junk`` folder;
* otherwise: our Authentication-Results field.

Those fields go to the record's prepend section.  :class:`OwnFields` is the header
rewrite that makes the folder instruction and our authserv-id trustworthy: every
message that enters from someone else (all origins but our own bounces and
forwards) loses, before it is stored, the ``Authentication-Results`` fields claiming
our authserv-id (RFC 8601 5) and any ``X-Mailyard-Folder`` field, so the local
agent honours only the one ingest wrote.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Protocol

from mailyard.authres.strip import strip_claimed
from mailyard.config import (
    AuthResultsConfig,
    DeliveryConfig,
    DkimConfig,
    DmarcConfig,
    DmarcQuarantine,
)
from mailyard.dkim.verify import VerifyPolicy
from mailyard.dmarc.action import ActionKind
from mailyard.dmarc.aggregate import AuthEntry, Evaluation, PublishedPolicy
from mailyard.dmarc.evalstore import EvaluationRecorder, EvaluationStore
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dmarc.record import DmarcRecord
from mailyard.dns.api import Resolver
from mailyard.ingest.api import ContentObserver, IngestRefused, Origin, Submission
from mailyard.obs import log_event
from mailyard.senderauth.checks import MessageChecks, SpfInput, Verdict
from mailyard.spf.result import SpfResult

__all__ = ["FOLDER_FIELD", "JUNK", "InboundChecks", "OwnFields", "inbound_checks_for",
           "without_fields"]

log = logging.getLogger("mailyard.senderauth")

FOLDER_FIELD = b"X-Mailyard-Folder"
JUNK = "Junk"  # the folder instruction's value: the mailbox's \Junk folder
MAX_HEADER = 256 * 1024
_OWN_CONTENT = frozenset((Origin.DSN, Origin.FORWARD))


def _fields(block: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def without_fields(block: bytes, name: bytes) -> bytes:
    """The header section without the fields called ``name`` (case-insensitive)."""
    lower = name.lower()
    if lower not in block.lower():
        return block
    return b"".join(f for f in _fields(block)
                    if f.partition(b":")[0].rstrip(b" \t").lower() != lower)


class OwnFields:
    """The :class:`~mailyard.ingest.api.HeaderRewrite` that removes what only we may
    write from the messages that enter from someone else."""

    def __init__(self, authserv_ids: Collection[str]) -> None:
        self.authserv_ids = tuple(i for i in authserv_ids if i)

    def applies(self, submission: Submission) -> bool:
        return submission.origin not in _OWN_CONTENT

    def rewrite(self, submission: Submission, block: bytes) -> bytes:
        block = without_fields(block, FOLDER_FIELD)
        if self.authserv_ids:
            block, removed = strip_claimed(block, self.authserv_ids)
            if removed:
                log_event(log, "authentication-results removed", count=removed,
                          client=submission.envelope.client_ip)
        return block


def spf_input(result: SpfResult) -> SpfInput:
    return SpfInput(str(result.status), str(result.identity), result.sender, result.domain)


def spf_of(submission: Submission) -> SpfInput | None:
    """The SPF result smtpd found at MAIL FROM (for the null sender, the HELO name's
    postmaster: the identity DMARC aligns, RFC 7489 3.1.2); None when not checked."""
    return None if submission.spf is None else spf_input(submission.spf)


def spf_helo_of(submission: Submission) -> SpfInput | None:
    """The SPF result of the HELO identity when smtpd checked it separately."""
    return None if submission.spf_helo is None else spf_input(submission.spf_helo)


class InboundChecks:
    """DKIM, ARC and DMARC on port-25 mail (see the module doc).  ``resolver`` is made
    on first use (the CLI's ingest never needs one); ``spf_of`` gives the SPF result
    smtpd found for a submission."""

    def __init__(self, resolver: Callable[[], Resolver], suffixes: Callable[[], PublicSuffixes],
                 *, authserv_id: str, policy: VerifyPolicy, dmarc: DmarcConfig,
                 spf_of: Callable[[Submission], SpfInput | None] = spf_of,
                 spf_helo_of: Callable[[Submission], SpfInput | None] = spf_helo_of,
                 time_budget: float = 20.0,
                 recorder: EvaluationRecorder | None = None) -> None:
        self.recorder = recorder
        self._make_resolver = resolver
        self._resolver: Resolver | None = None
        self._make_suffixes = suffixes
        self.authserv_id = authserv_id
        self.policy = policy
        self.dmarc = dmarc
        self.spf_of = spf_of
        self.spf_helo_of = spf_helo_of
        self.time_budget = time_budget
        self._published = PublishedPolicies()

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._resolver = self._make_resolver()
        return self._resolver

    def prepare(self) -> None:
        """Load the Public Suffix List (a fraction of a second of CPU) and make the
        resolver now, so the first message checked does not pay for them."""
        if self.dmarc.enabled:
            try:
                self._make_suffixes()
            except OSError as exc:  # the first message will say so again, and temperror
                log_event(log, "cannot load the public suffix list", level=logging.WARNING,
                          error=str(exc))
        _ = self.resolver

    def observe(self, submission: Submission) -> ContentObserver | None:
        if submission.origin is Origin.INBOUND and not submission.envelope.auth_user:
            return _Observer(self, submission)
        return None

    def checks(self, header: bytes, submission: Submission) -> MessageChecks:
        return MessageChecks(header, self.policy, dmarc=self.dmarc,
                             remote_ip=submission.envelope.client_ip)

    async def verdict(self, checks: MessageChecks, submission: Submission) -> Verdict:
        """The checks' verdict, or a ``temperror`` one when the lookups take longer
        than ``time_budget`` seconds in all (the session waits for its answer)."""
        spf, spf_helo = self.spf_of(submission), self.spf_helo_of(submission)
        try:
            async with asyncio.timeout(self.time_budget):  # no task of its own, unlike wait_for
                return await checks.finish(self.resolver, spf, self._make_suffixes(),
                                           spf_helo=spf_helo)
        except TimeoutError:
            return checks.timed_out(spf, spf_helo)

    def record(self, verdict: Verdict, submission: Submission) -> None:
        """Count the DMARC evaluation for the aggregate reports (``[dmarc] reports``)."""
        if self.recorder is None:
            return
        key = report_key(verdict, submission, self._published)
        if key is not None:
            self.recorder.note_key(key, evaluation_of)

    async def aclose(self) -> None:
        """Write the evaluations counted but not yet recorded (at shutdown)."""
        if self.recorder is not None:
            await self.recorder.aclose()

    def fields(self, verdict: Verdict) -> bytes:
        """What goes to the prepend section; raises IngestRefused for a DMARC reject."""
        action = verdict.action()
        if action.kind is ActionKind.REJECT and action.reply is not None:
            raise IngestRefused(action.reply)
        out = verdict.field(self.authserv_id)
        if action.kind is ActionKind.QUARANTINE:
            out += action.field
            if self.dmarc.quarantine is DmarcQuarantine.JUNK:
                out += FOLDER_FIELD + b": " + JUNK.encode() + b"\r\n"
        return out


_APPLIED = {ActionKind.ACCEPT: "none", ActionKind.QUARANTINE: "quarantine",
            ActionKind.REJECT: "reject"}


# What an aggregate report row says about one message, as plain values (cheap to make
# and to hash, for the count per message): the fields of an Evaluation in order, each
# AuthEntry a tuple of its fields.
ReportKey = tuple[str, str, str, str, str, str, str, tuple[str, ...],
                  tuple[tuple[str, str, str, str, str], ...], PublishedPolicy]


class PublishedPolicies:
    """The ``policy_published`` of each DMARC record in use, made once per record
    object (records are remembered per text by the parser; the policy is immutable)."""

    MAX = 1024

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[DmarcRecord, PublishedPolicy]] = {}

    def of(self, record: DmarcRecord) -> PublishedPolicy:
        known = self._by_id.get(id(record))
        if known is not None and known[0] is record:  # (held here: its id is not reused)
            return known[1]
        if len(self._by_id) >= self.MAX:
            self._by_id.clear()
        policy = PublishedPolicy.of(record)
        self._by_id[id(record)] = (record, policy)
        return policy


def report_key(verdict: Verdict, submission: Submission,
               published: PublishedPolicies | None = None) -> ReportKey | None:
    """What an aggregate report says about this message (RFC 7489 appendix C), as
    :data:`ReportKey` (:func:`evaluation_of` makes it an Evaluation); None when no
    DMARC record with a ``rua`` applied to it (nobody asked for a report)."""
    dmarc = verdict.dmarc
    if dmarc is None or dmarc.record is None or not dmarc.record.rua:
        return None
    applied = _APPLIED[verdict.action().kind]
    reasons: tuple[str, ...] = ()
    if dmarc.sampled_out:
        reasons = ("sampled_out",)
    elif applied != str(dmarc.disposition):
        reasons = ("local_policy",)
    auth = tuple([("dkim", r.domain, str(r.status), r.selector, "")
                  for r in verdict.dkim if r.domain])
    spf = verdict.spf
    if spf is not None:
        scope = "helo" if spf.identity == "helo" else "mfrom"
        auth += (("spf", spf.domain, spf.result, "", scope),)
    envelope = submission.envelope
    policy = (PublishedPolicy.of(dmarc.record) if published is None
              else published.of(dmarc.record))
    return (dmarc.policy_domain, dmarc.author_domain, envelope.client_ip,
            envelope.sender.rpartition("@")[2].lower(), applied,
            "pass" if dmarc.dkim_aligned else "fail", "pass" if dmarc.spf_aligned else "fail",
            reasons, auth, policy)


def evaluation_of(key: ReportKey) -> Evaluation:
    (policy_domain, header_from, source_ip, envelope_from, disposition, dkim, spf, reasons,
     auth, policy) = key
    return Evaluation(
        policy_domain=policy_domain, header_from=header_from, source_ip=source_ip,
        envelope_from=envelope_from, disposition=disposition, dkim=dkim, spf=spf,
        reasons=reasons, auth=tuple(AuthEntry(*entry) for entry in auth), policy=policy)


def report_facts(verdict: Verdict, submission: Submission) -> Evaluation | None:
    """The Evaluation of :func:`report_key`."""
    key = report_key(verdict, submission)
    return None if key is None else evaluation_of(key)


# The end of a line (as ``bytes.splitlines`` sees one) that no continuation follows.
_FIELD_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?![ \t])")


def _without_trace(head: bytes) -> bytes:
    """The header section without its first field (our ``Received:``)."""
    if head[:9].lower() != b"received:":
        return head
    end = _FIELD_END.search(head)
    return b"" if end is None else head[end.end():]


class _Observer:
    def __init__(self, hook: InboundChecks, submission: Submission) -> None:
        self._hook = hook
        self._submission = submission
        self._head: bytearray | None = bytearray()  # None once the header is complete
        self._checks: MessageChecks | None = None

    def feed(self, data: bytes) -> None:
        if self._checks is not None:
            self._checks.update(data)
            return
        head = self._head
        if head is None:
            return
        start = max(len(head) - 3, 0)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            self._header_done(bytes(head[:end + 2]), bytes(head[end + 4:]))
        elif len(head) > MAX_HEADER:  # checked as a header without a body
            self._header_done(bytes(head), b"")

    def _header_done(self, header: bytes, body: bytes) -> None:
        self._head = None
        self._checks = self._hook.checks(_without_trace(header), self._submission)
        self._checks.update(body)

    async def fields(self) -> bytes:
        if self._head is not None:  # a message without a body
            head = bytes(self._head)
            self._header_done(head if head.endswith(b"\r\n") else head + b"\r\n", b"")
        assert self._checks is not None
        verdict = await self._hook.verdict(self._checks, self._submission)
        dmarc = verdict.dmarc
        # Logged on the transaction's line (no line of their own: one per message).
        self._submission.log_fields.update(
            dkim=",".join([str(r.status) for r in verdict.dkim]) or "none",
            arc=str(verdict.arc.status), dmarc=str(dmarc.status) if dmarc else "",
            from_domain=dmarc.author_domain if dmarc else "",
            action=str(verdict.action().kind))
        self._hook.record(verdict, self._submission)
        return self._hook.fields(verdict)


class _Settings(Protocol):
    @property
    def dkim(self) -> DkimConfig: ...

    @property
    def dmarc(self) -> DmarcConfig: ...

    @property
    def auth_results(self) -> AuthResultsConfig: ...

    @property
    def delivery(self) -> DeliveryConfig: ...

    @property
    def data_dir(self) -> str: ...


def inbound_checks_for(config: _Settings) -> InboundChecks:
    """The checks as configured: ``[dkim] verify`` (off: no signature is looked at),
    ``max_signatures``, ``min_rsa_bits``; ``[dmarc]``; ``[auth_results] authserv_id``;
    DNS through ``delivery.dns_servers`` behind the cache, made on first use; at most
    four DNS timeouts (``delivery.dns_timeout``) for the lookups of one message."""
    from mailyard.dkim.hook import verify_policy_for
    from mailyard.dmarc.orgdomain import load_public_suffixes
    from mailyard.dns import make_resolver

    policy = verify_policy_for(config.dkim)
    if not config.dkim.verify:
        policy = replace(policy, max_signatures=0)
    delivery, psl = config.delivery, config.dmarc.public_suffix_list
    recorder = None
    if config.dmarc.enabled and config.dmarc.reports:
        recorder = EvaluationRecorder(EvaluationStore.in_data_dir(config.data_dir))
    return InboundChecks(lambda: make_resolver(delivery), lambda: load_public_suffixes(psl),
                         authserv_id=config.auth_results.authserv_id, policy=policy,
                         dmarc=config.dmarc, spf_of=spf_of,
                         time_budget=4 * delivery.dns_timeout, recorder=recorder)
