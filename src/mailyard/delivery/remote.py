"""Remote delivery: one message to some recipients over SMTP, trying the next hops in
order, with idle connections kept for reuse.

Hop by hop (RFC 5321 5.1 order, as given by routing):

* connection refused or timed out, a TLS handshake failure, a 4xx (or 5xx) greeting,
  EHLO/HELO refusal, a 4xx to MAIL, a 421 or a dropped connection before the content
  was complete: those recipients go on to the next hop;
* a 5xx to MAIL, DATA or the end of data fails the recipients it concerns; a 4xx to
  DATA or the end of data defers them; RCPT replies count per recipient;
* a dropped connection after the final "." defers: a message is delivered only on the
  server's final 2xx.

With TLS level "may", a failed handshake is retried once on the same host in clear
(RFC 3207 practice: opportunistic TLS must not make mail undeliverable), never with
credentials; "encrypt", "verify" and "secure" treat it, and a certificate that does
not pass the level's check, like any other temporary failure.

:class:`ConnectionPool` keeps sessions idle for a short time, keyed by (address, port,
TLS settings, credentials), so several messages to one destination share a connection,
and retires them after ``delivery.max_messages_per_connection`` messages.  A session
idle for longer than ``probe_after`` seconds is probed with RSET before reuse; one used
moments ago goes straight to MAIL (the client core still sends RSET first when the last
transaction was left open, RFC 5321 4.1.1.5), which saves a round trip per message.  If
such a session turns out to be gone (EOF or 421 before the MAIL reply), the message is
tried once more on a new connection to the same hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from mailyard.config import Config
from mailyard.delivery.routing import SmtpAuth
from mailyard.delivery.smtp_session import SessionError, SmtpSession, Timeouts
from mailyard.envelope import Envelope, Recipient
from mailyard.obs import log_event
from mailyard.proto.smtp.client import RecipientResult, SessionFailed, TransactionResult, describe
from mailyard.proto.smtp.replies import (
    REPLY_REMOTE_LOST,
    REPLY_REMOTE_NO_HOPS,
    REPLY_REMOTE_NO_TLS,
    REPLY_REMOTE_PROTOCOL,
    REPLY_REMOTE_TIMEOUT,
    REPLY_REMOTE_TLS_FAILED,
    REPLY_REMOTE_UNREACHABLE,
    Reply,
)
from mailyard.queue.api import AttemptStatus, DeliveryReply, RecipientState
from mailyard.tls import VERIFYING_LEVELS
from mailyard.tlsrpt.results import PolicyTag, ResultType
from mailyard.tlsrpt.store import TlsOutcomes

log = logging.getLogger("mailyard.delivery.smtp")

#: Recipients per transaction: every server must take 100 (RFC 5321 4.5.3.1.8).
MAX_RECIPIENTS_PER_TRANSACTION = 100
IDLE_SECONDS = 5.0
PROBE_AFTER = 2.0  # seconds idle before a session is probed with RSET on reuse


class HopLike(Protocol):
    """What delivery reads from a next hop (routing's ``NextHop`` fits)."""

    @property
    def host(self) -> str: ...

    @property
    def ip(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def tls_policy(self) -> str:
        """A TLS level: "none", "may", "encrypt" ("require"), "verify", "secure"."""
        ...

    @property
    def auth(self) -> SmtpAuth | tuple[str, str] | None: ...

    @property
    def tls_ca_file(self) -> str:
        """"verify"/"secure": CA file instead of the system store."""
        ...

    @property
    def tls_fingerprints(self) -> tuple[str, ...]:
        """"verify"/"secure": leaf certificate pins."""
        ...

    @property
    def tls_tlsa(self) -> tuple[str, ...]:
        """DANE: validated TLSA records the certificate chain must match."""
        ...

    @property
    def tls_names(self) -> tuple[str, ...]:
        """DANE-TA: the names the certificate may carry."""
        ...

    @property
    def tls_report(self) -> PolicyTag | None:
        """TLS-RPT: the policy this hop's sessions are counted under; None: not counted."""
        ...


class SourcePicker(Protocol):
    """A delivery pool's source addresses (:class:`mailyard.delivery.pools.SourceAddresses`)."""

    def __bool__(self) -> bool: ...

    def pick(self, destination: str) -> str | None: ...


@dataclass(frozen=True)
class RemoteResult:
    index: int  # the recipient's index in the envelope
    status: AttemptStatus  # DELIVERED, DEFERRED or FAILED
    reply: DeliveryReply  # the server's words (remote origin), or what went wrong (local)
    remote_host: str  # the hop tried, for logs and DSN Remote-MTA; "" if none was
    # The accepting server offers DSN, so NOTIFY went on with RCPT and success reports
    # are its to give (RFC 3461 5.2.1).
    dsn_passed_on: bool = False

    @property
    def state(self) -> RecipientState:
        return self.status.state

    @property
    def answered(self) -> bool:
        """The reply is the remote server's own word, not a local note that it could not
        be reached or the session broke (end-to-end relaying falls back to queueing)."""
        return self.reply.remote_host != ""


#: Replies the client synthesises when a session breaks or our TLS policy refuses the
#: host (no STARTTLS where TLS is required): never a server's own word.
_LOCAL_FAILURES = {(r.code, r.status) for r in (
    REPLY_REMOTE_UNREACHABLE, REPLY_REMOTE_TIMEOUT, REPLY_REMOTE_LOST, REPLY_REMOTE_PROTOCOL,
    REPLY_REMOTE_TLS_FAILED, REPLY_REMOTE_NO_TLS, REPLY_REMOTE_NO_HOPS)}


def _said_by(reply: Reply, host: str) -> DeliveryReply:
    """The reply with its origin, decided once where it is received: a session
    failure the client core reports is ours, anything else the host's."""
    if not host or (reply.code, reply.status) in _LOCAL_FAILURES:
        return DeliveryReply(reply)
    return DeliveryReply(reply, host)


def credentials(auth: SmtpAuth | tuple[str, str] | None) -> tuple[str, str] | None:
    if auth is None:
        return None
    if isinstance(auth, tuple):
        return (str(auth[0]), str(auth[1]))
    return (auth.username, auth.password)


def auth_unverified(auth: SmtpAuth | tuple[str, str] | None) -> bool:
    """The operator allowed these credentials over a session whose certificate was not
    verified (``delivery.relayhost_auth_unverified``)."""
    return isinstance(auth, SmtpAuth) and auth.unverified_ok


PoolKey = tuple[str, int, str, str, str, "tuple[str, ...]", "tuple[str, str] | None", bool,
                "tuple[str, ...]"]


def pool_key(hop: HopLike) -> PoolKey:
    """Sessions are shared between hops with the same address, TLS settings and
    credentials, and, when the level checks the certificate against the name, name."""
    checked_name = hop.host if hop.tls_policy in VERIFYING_LEVELS else ""
    return (hop.ip or hop.host, hop.port, checked_name, hop.tls_policy, hop.tls_ca_file,
            tuple(hop.tls_fingerprints), credentials(hop.auth), auth_unverified(hop.auth),
            tuple(hop.tls_tlsa))


class ConnectionPool:
    """Open sessions to next hops, kept idle for ``idle_seconds`` between messages."""

    def __init__(self, config: Config, idle_seconds: float = IDLE_SECONDS,
                 probe_after: float = PROBE_AFTER,
                 tls_outcomes: TlsOutcomes | None = None, *, helo_name: str = "",
                 sources: SourcePicker | None = None) -> None:
        self.config = config
        self.helo_name = helo_name or config.hostname
        self.sources = sources  # a delivery pool's source addresses
        self.timeouts = Timeouts.from_config(config.delivery)
        self.idle_seconds = idle_seconds
        self.probe_after = probe_after
        self.max_messages = config.delivery.max_messages_per_connection
        self.tls_outcomes = tls_outcomes
        self.opened = 0  # connections set up (for metrics and tests)
        self.reused = 0  # sessions taken from the idle list
        self._idle: dict[PoolKey, list[SmtpSession]] = {}
        self._timers: dict[SmtpSession, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def acquire(self, hop: HopLike, *, fresh: bool = False) -> SmtpSession:
        """The most recently used idle session (probed with RSET if it was idle for
        long), else a new one; ``fresh`` always opens a new one.  Raises SessionError."""
        idle = [] if fresh else self._idle.get(pool_key(hop), [])
        now = asyncio.get_running_loop().time()
        while idle:
            session = idle.pop()
            timer = self._timers.pop(session, None)
            if timer is not None:
                timer.cancel()
            recent = session.last_used is not None and now - session.last_used < self.probe_after
            if (recent and session.usable) or await session.probe():
                self.reused += 1
                return session
        return await self._open(hop)

    def _source(self, hop: HopLike) -> str:
        if not self.sources:
            return ""
        source = self.sources.pick(hop.ip or hop.host)
        if source is None:
            reply = REPLY_REMOTE_UNREACHABLE.with_text(
                f"no source address of the address family of {hop.host}[{hop.ip}] "
                "in this delivery pool")
            raise SessionError(SessionFailed(reply, "connect"))
        return source

    async def _open(self, hop: HopLike) -> SmtpSession:
        auth = credentials(hop.auth)
        source = self._source(hop)
        try:
            session = await SmtpSession.open(
                hop.host, hop.ip, hop.port, self.helo_name, tls=hop.tls_policy, auth=auth,
                auth_unverified=auth_unverified(hop.auth), ca_file=hop.tls_ca_file,
                fingerprints=tuple(hop.tls_fingerprints), tlsa=tuple(hop.tls_tlsa),
                dane_names=tuple(hop.tls_names), timeouts=self.timeouts, source=source)
        except SessionError as exc:
            self._count_tls(hop, exc)
            if not (exc.failure.tls_failure and hop.tls_policy == "may"):
                raise
            log_event(log, "TLS failed, retrying without TLS", host=hop.host, ip=hop.ip,
                      reply=describe(exc.failure.reply))
            # In clear: credentials, if any, are refused by the client core.
            session = await SmtpSession.open(hop.host, hop.ip, hop.port, self.helo_name,
                                             tls="none", auth=auth, timeouts=self.timeouts,
                                             source=source)
        else:
            self._count_tls(hop, None, session.client.tls_active)
        self.opened += 1
        return session

    def _count_tls(self, hop: HopLike, error: SessionError | None,
                   tls_active: bool = False) -> None:
        """TLS-RPT: one session's TLS outcome, under the hop's policy."""
        tag = hop.tls_report
        if self.tls_outcomes is None or tag is None:
            return
        if error is None:
            result = None if tls_active else ResultType.STARTTLS_NOT_SUPPORTED
            self.tls_outcomes.record(tag, hop.host, hop.ip, result)
        elif error.failure.stage == "starttls":
            self.tls_outcomes.record(tag, hop.host, hop.ip, ResultType.STARTTLS_NOT_SUPPORTED,
                                     describe(error.failure.reply))
        elif error.failure.stage == "tls":
            result = ResultType(error.tls_result or ResultType.VALIDATION_FAILURE)
            self.tls_outcomes.record(tag, hop.host, hop.ip, result,
                                     describe(error.failure.reply))

    def release(self, hop: HopLike, session: SmtpSession) -> None:
        """Keep the session for the next message, or close it when it is spent."""
        if not session.usable or session.transactions >= self.max_messages:
            self._close_later(session)
            return
        key = pool_key(hop)
        self._idle.setdefault(key, []).append(session)
        loop = asyncio.get_running_loop()
        self._timers[session] = loop.call_later(self.idle_seconds, self._expire, key, session)

    def _expire(self, key: PoolKey, session: SmtpSession) -> None:
        self._timers.pop(session, None)
        idle = self._idle.get(key, [])
        if session in idle:
            idle.remove(session)
            self._close_later(session)

    def _close_later(self, session: SmtpSession) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """QUIT every idle session (at shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        sessions = [s for idle in self._idle.values() for s in idle]
        self._idle.clear()
        for session in sessions:
            self._close_later(session)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)


@dataclass
class _Attempt:
    """What one hop said about one recipient."""

    reply: Reply
    host: str
    final: bool  # False: another hop may still take it
    status: AttemptStatus
    dsn: bool = False  # the hop offered the DSN extension


async def deliver_remote(hops: Sequence[HopLike], envelope: Envelope,
                         recipients: Sequence[tuple[int, Recipient]],
                         open_content: Callable[[], BinaryIO], size: int, config: Config,
                         connection_pool: ConnectionPool | None = None) -> list[RemoteResult]:
    """Deliver to ``recipients`` through the first hop that takes them; one result per
    recipient, in the order given."""
    pool = connection_pool if connection_pool is not None else ConnectionPool(config)
    try:
        history: dict[int, list[_Attempt]] = {index: [] for index, _ in recipients}
        pending = list(recipients)
        for hop in hops:
            if not pending:
                break
            attempts = await _deliver_via(pool, hop, envelope, pending, open_content, size)
            for (index, _), attempt in zip(pending, attempts, strict=True):
                history[index].append(attempt)
            pending = [p for p, a in zip(pending, attempts, strict=True) if not a.final]
        return [_conclude(index, history[index]) for index, _ in recipients]
    finally:
        if connection_pool is None:
            await pool.close()


def _conclude(index: int, attempts: list[_Attempt]) -> RemoteResult:
    """The last hop's word, except that a refusal only counts as permanent when no hop
    failed temporarily (a backup MX saying 554 must not bounce mail the primary would
    have taken once it is back)."""
    if not attempts:
        return RemoteResult(index, AttemptStatus.DEFERRED, DeliveryReply(REPLY_REMOTE_NO_HOPS),
                            "")
    last = attempts[-1]
    if last.final or last.status is not AttemptStatus.FAILED:
        return RemoteResult(index, last.status, _said_by(last.reply, last.host), last.host,
                            last.dsn)
    deferred = [a for a in attempts if a.status is AttemptStatus.DEFERRED]
    if deferred:
        return RemoteResult(index, AttemptStatus.DEFERRED,
                            _said_by(deferred[-1].reply, deferred[-1].host), deferred[-1].host)
    return RemoteResult(index, AttemptStatus.FAILED, _said_by(last.reply, last.host), last.host)


async def _deliver_via(pool: ConnectionPool, hop: HopLike, envelope: Envelope,
                       pending: list[tuple[int, Recipient]], open_content: Callable[[], BinaryIO],
                       size: int) -> list[_Attempt]:
    host = hop.host or hop.ip
    results: dict[int, RecipientResult] = {}
    for fresh in (False, True):
        try:
            session = await pool.acquire(hop, fresh=fresh)
        except SessionError as exc:
            failure = exc.failure
            status = AttemptStatus.FAILED if failure.permanent else AttemptStatus.DEFERRED
            log_event(log, "next hop failed", host=host, ip=hop.ip, port=hop.port,
                      stage=failure.stage, reply=describe(failure.reply))
            return [_Attempt(failure.reply, host, False, status) for _ in pending]
        reused = session.last_used is not None
        dsn = "DSN" in session.client.extensions
        try:
            stale = await _transactions(session, envelope, pending, open_content, size,
                                        results, reused)
        finally:
            pool.release(hop, session)
        if not stale:
            break
        log_event(log, "reused connection was closed; reconnecting", host=host, ip=hop.ip,
                  port=hop.port)
    out = []
    for index, _ in pending:
        res = results[index]
        final = not (res.retry_elsewhere and not res.reply.is_positive)
        out.append(_Attempt(res.reply, host, final,
                            AttemptStatus.of_reply(res.reply), dsn))
    return out


async def _transactions(session: SmtpSession, envelope: Envelope,
                        pending: list[tuple[int, Recipient]], open_content: Callable[[], BinaryIO],
                        size: int, results: dict[int, RecipientResult],
                        reused: bool = False) -> bool:
    """Send the message in batches of at most 100 recipients over one session; recipients
    refused with 452 "too many recipients" go again in the next transaction
    (RFC 5321 4.5.3.1.10) as long as each round delivers to someone.  True (and no
    results) when ``reused`` and the session was found closed before the MAIL reply."""
    todo = list(pending)
    last = REPLY_REMOTE_LOST
    first = True
    while todo:
        batch, todo = todo[:MAX_RECIPIENTS_PER_TRANSACTION], todo[MAX_RECIPIENTS_PER_TRANSACTION:]
        if not session.usable:  # the previous transaction ended the session (421, lost)
            for index, rcpt in batch + todo:
                results[index] = RecipientResult(rcpt, last, retry_elsewhere=True)
            return False
        done = await session.send_message(envelope, [r for _, r in batch], open_content, size)
        if first and reused and _found_closed(session, done):
            return True
        first = False
        last = done.reply if not done.reply.is_positive else REPLY_REMOTE_LOST
        again = []
        for (index, rcpt), res in zip(batch, done.recipients, strict=False):
            results[index] = res
            if res.reply.code == 452 and done.reply.is_positive:
                again.append((index, rcpt))
        todo = again + todo
    return False


def _found_closed(session: SmtpSession, done: TransactionResult) -> bool:
    """The session ended (EOF, reset, 421) before the message was complete: nothing
    was delivered, so it is safe to try a new connection."""
    return (not session.usable and not done.content_sent
            and done.reply.code in (421, REPLY_REMOTE_LOST.code)
            and all(r.retry_elsewhere for r in done.recipients))
