"""The embedded :class:`~mailyard.ingest.api.Ingest`: stages in front of a queue writer.

Each message is opened on the queue (``QueueWriter.open_message``), passes the stages
for its origin while its content streams through, and is committed with the fields
the at-commit hooks computed (the record's ``prepend`` section, see ``api``).

The stages, by origin:

============  ============  ====================  ==============================
origin        trace field   Date / Message-ID     size and Received-count checks
============  ============  ====================  ==============================
INBOUND       SMTP          no                    the SMTP core's, while streaming
SUBMISSION    SMTP          added when missing    the SMTP core's, while streaming
LOCAL         from user     added when missing    here (``submit``)
API/CAMPAIGN  none yet      no                    here (``submit``)
DSN           none          no                    none (our own, new content)
FORWARD       none          no                    Received count here (``submit``)
============  ============  ====================  ==============================

A forward is not held to the size limit: the message it copies was accepted at up to
that size and the forward adds fields to it.  Nothing here reads the body: the
fixes need only the header section, which the SMTP core hands over
(:meth:`IngestWriter.header`) or, for a message given whole, is found at commit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from mailyard.config import (
    AuthResultsConfig,
    DeliveryConfig,
    DkimConfig,
    DmarcConfig,
    ForwardingConfig,
)
from mailyard.daemon.secret import derive_key, load_server_secret
from mailyard.envelope import Envelope
from mailyard.ingest.api import (
    ContentObserver,
    DirectDelivery,
    HeaderRewrite,
    IngestHook,
    IngestRefused,
    IngestWriter,
    Origin,
    StreamingHook,
    Submission,
)
from mailyard.message.headerblock import EMPTY as EMPTY_SUMMARY
from mailyard.message.headerblock import HeaderSummary, inspect_header, submission_fields
from mailyard.message.trace import local_received, smtp_received
from mailyard.proto.smtp.replies import REPLY_LOOP, REPLY_MESSAGE_TOO_BIG
from mailyard.queue.api import MessageWriter
from mailyard.srs import Srs, is_srs

__all__ = ["QueueIngest", "QueueWriterLike", "header_end", "ingest_for", "srs_for"]

_SMTP = frozenset((Origin.INBOUND, Origin.SUBMISSION))
_FIXED = frozenset((Origin.SUBMISSION, Origin.LOCAL))  # Date and Message-ID when missing
_SIZE_CHECKED = frozenset((Origin.LOCAL, Origin.API, Origin.CAMPAIGN))
_LOOP_CHECKED = frozenset((Origin.LOCAL, Origin.API, Origin.CAMPAIGN, Origin.FORWARD))
_POOLED = frozenset((Origin.SUBMISSION, Origin.LOCAL, Origin.API, Origin.CAMPAIGN))

#: The pool configured for a sender and login user ("" the default pool).
PoolRouter = Callable[[str, str], str]
# Where a recipient may be an SRS address of ours: bounces from other hosts (accepted at
# RCPT TO for a local domain, see smtpd.policy) and our own DSNs of forwarded copies.
_SRS_REVERSED = frozenset((Origin.INBOUND, Origin.DSN))


class QueueWriterLike(Protocol):
    """The producer side of the queue that ingest writes to."""

    def open_message(self, envelope: Envelope) -> MessageWriter: ...


def header_end(content: bytes) -> int:
    """The length of the header section of a CRLF message, its final CRLF included
    (0 when the message starts with the empty line; all of it when there is none)."""
    if content.startswith(b"\r\n"):
        return 0
    end = content.find(b"\r\n\r\n")
    return len(content) if end < 0 else end + 2


def received_count(header: bytes) -> int:
    return sum(1 for line in header.split(b"\r\n") if line[:9].lower() == b"received:")


class _Writer:
    """One message on its way in.  With fixes to make or fields to remove, the content
    is held (the trace field first) until the header section is known and, for the
    removal, has arrived whole (the SMTP core reports the header section before the
    chunk that ends it); then it goes out rewritten, with the fixes after the trace
    field, and everything after that streams through."""

    def __init__(self, ingest: QueueIngest, submission: Submission,
                 writer: MessageWriter) -> None:
        self.submission = submission
        self.qid = writer.qid
        self.delivered = False
        self._ingest = ingest
        self._writer = writer
        self._header: bytes | None = None
        self._summary: HeaderSummary | None = None
        self._observers = ingest.observers(submission)
        trace = ingest.trace(submission, writer.qid)
        self._held: list[bytes] | None = None
        rewrite = ingest.rewrite
        self._rewrite = rewrite if rewrite is not None and rewrite.applies(submission) else None
        if submission.origin in _FIXED:
            self._held = [trace]
        else:
            # The trace field goes out at once (a spool that cannot take it fails the
            # DATA command, not the end of the message); a rewrite holds the rest.
            if self._rewrite is not None:
                self._held = [b""]
            if trace:
                try:
                    self._out(trace)
                except BaseException:
                    writer.abort()
                    raise

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            if self._summary is not None:
                self._release()
        elif self._observers:
            self._out(data)
        else:
            self._writer.write(data)

    def _out(self, data: bytes) -> None:
        """Content on its way to the queue, seen by the observers as stored."""
        self._writer.write(data)
        for observer in self._observers:
            observer.feed(data)

    def header(self, block: bytes, summary: HeaderSummary) -> None:
        self._header = block
        if self._held is not None:
            self._summary = summary
            self._release()

    def _release(self, *, final: bool = False) -> None:
        """Write the held content once the header section is complete in it."""
        held, block, summary = self._held, self._header, self._summary
        assert held is not None and block is not None and summary is not None
        content = b"".join(held[1:])
        if self._rewrite is not None and len(content) < len(block) and not final:
            held[1:] = [content]
            return
        self._held = None
        if self._rewrite is not None and content.startswith(block):
            content = self._rewrite.rewrite(self.submission, block) + content[len(block):]
        out = [held[0]]
        if self.submission.origin in _FIXED:
            out.append(submission_fields(summary, self._ingest.hostname, self._ingest.clock()))
        out.append(content)
        self._out(b"".join(out))

    async def commit(self) -> str:
        if self._held is not None and self._summary is not None:
            self._release(final=True)
        elif self._held is not None:  # given whole: find the header section now
            content = b"".join(self._held[1:])
            self._held = [self._held[0], content]
            block = content[:header_end(content)]
            # Only the origins that get Date and Message-ID fixes need the summary.
            self.header(block, inspect_header(block)
                        if self.submission.origin in _FIXED else EMPTY_SUMMARY)
        prepend = self._ingest.at_commit(self.submission, self._header or b"")
        if self._observers:
            prepend += b"".join([await observer.fields() for observer in self._observers])
        if await self._deliver_directly(prepend):
            return self.qid
        if prepend:
            return await self._writer.commit(prepend=prepend)
        return await self._writer.commit()

    async def _deliver_directly(self, prepend: bytes) -> bool:
        """Offer the message to the direct delivery service; True when it took it
        (the queue record is then discarded)."""
        direct = self._ingest.direct
        if direct is None or not direct.applies(self.submission):
            return False
        content = self._writer.held()
        if content is None:  # spilled to disk: a large message goes through the queue
            return False
        if not await direct.deliver(self.qid, self.submission.envelope, prepend + content):
            return False
        self._writer.abort()
        self.delivered = True
        return True

    def abort(self) -> None:
        self._held = None
        self._observers = ()
        self._writer.abort()


class QueueIngest:
    """Ingest over the queue's writer.  ``max_message_size`` and ``max_received`` are
    the limits for messages given whole (0: none); ``hooks`` run at every commit;
    ``streaming_hooks`` may watch a message's content while it streams; ``rewrite``
    removes fields only we may write from the header sections it applies to."""

    def __init__(self, queue: QueueWriterLike, hostname: str, *, max_message_size: int = 0,
                 max_received: int = 0, hooks: Sequence[IngestHook] = (),
                 streaming_hooks: Sequence[StreamingHook] = (),
                 rewrite: HeaderRewrite | None = None,
                 clock: Callable[[], float] = time.time,
                 pool_for: PoolRouter | None = None,
                 srs: Callable[[], Srs] | None = None,
                 direct: DirectDelivery | None = None) -> None:
        self._queue = queue
        self.direct = direct
        self._pool_for = pool_for
        self.srs = srs
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.max_received = max_received
        self._hooks = tuple(hooks)
        self._streaming = tuple(streaming_hooks)
        self.rewrite = rewrite
        self.clock = clock

    def prepare_hooks(self) -> None:
        """Let the hooks load what they would load on first use (the Public Suffix
        List, a resolver) now, at start, rather than while a message waits: those with
        a ``prepare`` method."""
        for hook in self._streaming:
            prepare = getattr(hook, "prepare", None)
            if prepare is not None:
                prepare()

    async def close_hooks(self) -> None:
        """Let the hooks that keep state write it out (at shutdown): those with an
        ``aclose`` coroutine method."""
        for hook in self._streaming:
            aclose = getattr(hook, "aclose", None)
            if aclose is not None:
                await aclose()

    def open(self, submission: Submission) -> IngestWriter:
        if (self.srs is not None and submission.origin in _SRS_REVERSED
                and any(is_srs(r.address) for r in submission.envelope.recipients)):
            submission = replace(submission, envelope=self.reverse_srs(submission.envelope))
        submission = self.assign_pool(submission)
        return _Writer(self, submission, self._queue.open_message(submission.envelope))

    def assign_pool(self, submission: Submission) -> Submission:
        """The submission with its envelope's delivery pool set (see ``api``)."""
        env = submission.envelope
        pool = submission.pool
        if not pool and self._pool_for is not None and submission.origin in _POOLED:
            pool = self._pool_for(env.sender, env.auth_user)
        if pool == env.pool:
            return submission
        return replace(submission, envelope=replace(env, pool=pool))

    def reverse_srs(self, envelope: Envelope) -> Envelope:
        """Recipients that are valid SRS addresses of ours (bounces of forwarded mail)
        become the original senders they encode; others stay as they are."""
        assert self.srs is not None
        srs, now = self.srs(), self.clock()
        recipients = []
        for r in envelope.recipients:
            back = srs.reverse(r.address, now) if is_srs(r.address) else None
            recipients.append(replace(r, address=back) if isinstance(back, str) else r)
        return replace(envelope, recipients=tuple(recipients))

    async def submit(self, submission: Submission, content: bytes) -> str:
        self.check(submission, content)
        writer = self.open(submission)
        try:
            writer.write(content)
            return await writer.commit()
        except BaseException:
            writer.abort()
            raise

    def check(self, submission: Submission, content: bytes) -> None:
        """The checks a message given whole gets (no SMTP core made them).  Raises
        IngestRefused."""
        origin = submission.origin
        if (origin in _SIZE_CHECKED and self.max_message_size
                and len(content) > self.max_message_size):
            raise IngestRefused(REPLY_MESSAGE_TOO_BIG)
        if origin in _LOOP_CHECKED and self.max_received:
            header = content[:header_end(content)]
            if received_count(header) > self.max_received:
                raise IngestRefused(REPLY_LOOP)

    def trace(self, submission: Submission, qid: str) -> bytes:
        """The ``Received:`` field this message gets (empty for none)."""
        origin = submission.origin
        envelope = submission.envelope
        if origin in _SMTP:
            return smtp_received(
                helo=envelope.client_helo, ip=envelope.client_ip, hostname=self.hostname,
                protocol=submission.protocol or "ESMTP", qid=qid,
                recipients=tuple(r.address for r in envelope.recipients), tls=submission.tls,
                now=envelope.received_at or None)
        if origin is Origin.LOCAL:
            return local_received(hostname=self.hostname,
                                  user=submission.local_user or envelope.auth_user,
                                  now=self.clock())
        return b""

    def observers(self, submission: Submission) -> tuple[ContentObserver, ...]:
        found = (hook.observe(submission) for hook in self._streaming)
        return tuple(o for o in found if o is not None)

    def at_commit(self, submission: Submission, header: bytes) -> bytes:
        return b"".join(hook.at_commit(submission, header) for hook in self._hooks)


class _Limits(Protocol):
    @property
    def max_message_size(self) -> int: ...

    @property
    def max_received_headers(self) -> int: ...


class _Settings(Protocol):
    """The part of :class:`mailyard.config.Config` ingest reads."""

    @property
    def hostname(self) -> str: ...

    @property
    def smtpd(self) -> _Limits: ...

    @property
    def data_dir(self) -> str: ...

    @property
    def dkim(self) -> DkimConfig: ...

    @property
    def dmarc(self) -> DmarcConfig: ...

    @property
    def auth_results(self) -> AuthResultsConfig: ...

    @property
    def delivery(self) -> DeliveryConfig: ...

    @property
    def forwarding(self) -> ForwardingConfig: ...


def srs_for(config: _Settings) -> Callable[[], Srs] | None:
    """The SRS rewriting of forwards (``[forwarding] srs``), keyed from the server
    secret, so every process and every restart agree; None when it is off.  The
    secret is read the first time an SRS address is made or read."""
    if not config.forwarding.srs:
        return None
    data_dir = Path(config.data_dir)
    return functools.cache(lambda: Srs(derive_key(load_server_secret(data_dir), "srs")))


def ingest_for(config: _Settings, queue: QueueWriterLike, *,
               direct: DirectDelivery | None = None) -> QueueIngest:
    """Ingest over ``queue`` with the configured limits (``smtpd.max_message_size``,
    ``smtpd.max_received_headers``), DKIM signing (``[dkim]``), the inbound checks
    (``[dkim] verify``, ``[dmarc]``, ``[auth_results]``) and the removal of fields only
    we may write, as every producer uses it; ``direct``: the SMTP workers' direct
    local delivery."""
    from mailyard.dkim.hook import signing_for
    from mailyard.senderauth.hook import OwnFields, inbound_checks_for

    streaming: list[StreamingHook] = []
    if config.dkim.enabled:
        streaming.append(signing_for(config.dkim, config.data_dir))
    if config.dkim.verify or config.dmarc.enabled:
        streaming.append(inbound_checks_for(config))
    return QueueIngest(queue, config.hostname, max_message_size=config.smtpd.max_message_size,
                       max_received=config.smtpd.max_received_headers,
                       streaming_hooks=streaming, pool_for=config.delivery.pool_for,
                       srs=srs_for(config), direct=direct,
                       rewrite=OwnFields((config.auth_results.authserv_id,)))
