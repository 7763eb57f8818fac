"""One outbound SMTP connection: the asyncio adapter around the sans-IO client.

It only moves bytes: read when the core needs a reply (with the RFC 5321 4.5.3.2
timeout the core names), write what the core emits, run the TLS handshake when asked,
and stream message content from the spool file in chunks.  Every protocol decision is
in :mod:`mailyard.proto.smtp.client`.

Two things belong to the handshake and so live here:

* the certificate check of the hop's TLS level (:class:`mailyard.tls.PeerCheck`),
  reported to the core as ``verified`` (it decides whether credentials may go out);
* the STARTTLS upgrade boundary.  From the 220 to STARTTLS until the handshake is
  over, the connection's reader is sealed (:class:`UpgradeGuardReader`): a byte that
  arrives then came in clear, whatever the event loop does with it (uvloop hands bytes
  read just before the switch to the old protocol, where they would otherwise be read
  after the handshake as if they had come over TLS).  Any such byte fails the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from mailyard.config import DeliveryConfig
from mailyard.envelope import Envelope, Recipient
from mailyard.obs import log_event
from mailyard.proto.smtp.client import (
    Event,
    NeedContent,
    NeedData,
    Phase,
    Send,
    SessionFailed,
    SessionReady,
    SmtpClient,
    StartTls,
    TransactionDone,
    TransactionResult,
)
from mailyard.proto.smtp.replies import (
    REPLY_REMOTE_LOST,
    REPLY_REMOTE_TIMEOUT,
    REPLY_REMOTE_UNREACHABLE,
    Reply,
)
from mailyard.tls import PeerCheck, certificate_fingerprint, peer_chain
from mailyard.tlsrpt.results import ResultType, certificate_failure

log = logging.getLogger("mailyard.delivery.smtp")

CONTENT_CHUNK = 65536
READ_SIZE = 65536
WRITE_HIGH_WATER = 65536
QUIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Timeouts:
    """RFC 5321 4.5.3.2 waits, from ``delivery.*_timeout``: ``command`` for the greeting,
    EHLO, MAIL, RCPT, DATA and each block of content; ``data`` for the final reply."""

    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0

    @classmethod
    def from_config(cls, delivery: DeliveryConfig) -> Timeouts:
        return cls(delivery.connect_timeout, delivery.command_timeout, delivery.data_timeout)


class SessionError(Exception):
    """The session could not be set up; ``failure`` says at which stage and why."""

    def __init__(self, failure: SessionFailed, tls_result: str = "") -> None:
        self.failure = failure
        # The TLS-RPT result type (RFC 8460 4.3) when the TLS handshake or the
        # certificate check failed; "" otherwise.
        self.tls_result = tls_result
        super().__init__(f"{failure.stage}: {failure.reply}")


def _connect_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class UpgradeGuardReader(asyncio.StreamReader):
    """A StreamReader that counts what it holds, and can be sealed for a TLS upgrade:
    while sealed, bytes fed to it are counted and dropped, never read."""

    def __init__(self, limit: int = READ_SIZE) -> None:
        super().__init__(limit=limit)
        self.unread = 0  # bytes fed and not yet read
        self.sealed = False
        self.cleartext = 0  # bytes unread at sealing time, plus any fed while sealed

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # transports feed bytes
        if self.sealed:
            self.cleartext += len(data)
            return
        self.unread += len(data)
        super().feed_data(data)

    async def read(self, n: int = -1) -> bytes:
        if n < 0:  # StreamReader would read to EOF in blocks, each counted here again
            raise ValueError("UpgradeGuardReader reads blocks of n >= 0 bytes")
        data = await super().read(n)
        self.unread -= len(data)
        return data

    def seal(self) -> None:
        self.sealed = True
        self.cleartext = self.unread

    def unseal(self) -> int:
        """Open again; returns how many bytes came in clear while sealed (including
        any that were waiting unread at sealing time)."""
        self.sealed = False
        return self.cleartext


async def _connect(address: str, port: int,
                   source: str = "") -> tuple[UpgradeGuardReader, asyncio.StreamWriter]:
    """asyncio.open_connection, with the guarded reader; bound to ``source`` if given."""
    loop = asyncio.get_running_loop()
    reader = UpgradeGuardReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(
        lambda: protocol, address, port, local_addr=(source, 0) if source else None)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _sni(host: str) -> str | None:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.rstrip(".") or None
    return None  # RFC 6066 3: no IP literals in server_name


class SmtpSession:
    """An open, greeted (and possibly TLS-protected and authenticated) connection."""

    def __init__(self, client: SmtpClient, reader: UpgradeGuardReader,
                 writer: asyncio.StreamWriter, timeouts: Timeouts, host: str,
                 peer_check: PeerCheck | None = None) -> None:
        self.client = client
        self.reader, self.writer = reader, writer
        self.timeouts = timeouts
        self.host = host
        self.peer_check = peer_check or PeerCheck(client.tls_policy)
        self._content: BinaryIO | None = None
        self._wait: tuple[int, float] | None = None  # (replies seen, deadline) of this wait
        self._open_content: Callable[[], BinaryIO] | None = None
        self.last_used: float | None = None  # loop time the last transaction ended
        self.tls_result = ""  # the TLS-RPT result type of a failed handshake or check

    @classmethod
    async def open(cls, host: str, ip: str, port: int, helo_name: str, *, tls: str = "may",
                   auth: tuple[str, str] | None = None, auth_unverified: bool = False,
                   ca_file: str = "", fingerprints: tuple[str, ...] = (),
                   tlsa: tuple[str, ...] = (), dane_names: tuple[str, ...] = (),
                   timeouts: Timeouts = Timeouts(), source: str = "") -> SmtpSession:
        """Connect, read the greeting, EHLO, STARTTLS, AUTH.  Raises SessionError.

        ``tls`` is the hop's level; with "verify" or "secure" the certificate must
        match one of ``fingerprints`` if any are given, else chain up to ``ca_file`` (or
        the system CA store) and name ``host``; with ``tlsa`` (DANE) the certificate
        chain must match those records instead.  ``source``: the local address to
        connect from (a delivery pool's)."""
        address = ip or host
        client = SmtpClient(helo_name, tls, auth, auth_unverified=auth_unverified)
        check = PeerCheck(client.tls_policy, ca_file, fingerprints, tlsa, dane_names)
        try:
            reader, writer = await asyncio.wait_for(_connect(address, port, source),
                                                    timeouts.connect)
        except (TimeoutError, OSError) as exc:
            reason = _connect_error(exc)
            via = f" from {source}" if source else ""
            reply = REPLY_REMOTE_UNREACHABLE.with_text(
                f"connect to {host}[{address}]:{port}{via}: {reason}")
            raise SessionError(SessionFailed(reply, "connect")) from None
        session = cls(client, reader, writer, timeouts, host, check)
        try:
            event = await session._pump()
        except BaseException:
            session.abort()
            raise
        if isinstance(event, SessionReady):
            return session
        await session.close()
        if isinstance(event, SessionFailed):
            raise SessionError(event, session.tls_result)
        raise SessionError(SessionFailed(REPLY_REMOTE_LOST, "greeting"))

    @property
    def usable(self) -> bool:
        return self.client.usable

    @property
    def transactions(self) -> int:
        return self.client.transactions

    async def send_message(self, envelope: Envelope, recipients: Sequence[Recipient],
                           open_content: Callable[[], BinaryIO], size: int) -> TransactionResult:
        """One transaction.  The content file is opened only once the server is ready for
        it, and read in chunks."""
        self.client.start_transaction(envelope, recipients, size)
        self._open_content = open_content
        try:
            event = await self._pump()
        except BaseException:
            self.abort()
            raise
        finally:
            if self._content is not None:
                self._content.close()
            self._content = self._open_content = None
        if not isinstance(event, TransactionDone):
            raise RuntimeError(f"SMTP client ended a transaction with {event!r}")
        self.last_used = asyncio.get_running_loop().time()
        if not self.usable:
            await self.close()
        return event.result

    async def probe(self) -> bool:
        """RSET before reusing an idle connection; False if it is no longer usable."""
        if not self.usable:
            return False
        self.client.reset()
        event = await self._pump()
        if isinstance(event, SessionReady):
            return True
        await self.close()
        return False

    async def close(self) -> None:
        """QUIT politely when the protocol allows, then close the socket."""
        if self.client.can_quit:
            self.client.quit()
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._pump(), QUIT_TIMEOUT)
        self.abort()
        with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), QUIT_TIMEOUT)

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    # --- the pump -------------------------------------------------------------------
    async def _pump(self) -> Event:
        """Do what the client asks until it reports a result."""
        while True:
            event = self.client.next_event()
            if isinstance(event, Send):
                await self._write(event.data)
            elif isinstance(event, NeedData):
                await self._read(event.phase)
            elif isinstance(event, NeedContent):
                self._feed_content()
            elif isinstance(event, StartTls):
                await self._start_tls()
            else:
                return event

    async def _write(self, data: bytes) -> None:
        """Write; wait for the buffer to drain only once it is above the high-water
        mark (a lost connection shows up at the next read)."""
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                async with asyncio.timeout(self.timeouts.command):
                    await self.writer.drain()
        except TimeoutError:
            self._lost(REPLY_REMOTE_TIMEOUT.with_text(
                f"{REPLY_REMOTE_TIMEOUT.text} ({self.host}) while sending"))
        except (OSError, ssl.SSLError) as exc:
            self._lost(REPLY_REMOTE_LOST.with_text(
                f"{REPLY_REMOTE_LOST.text} ({self.host}) while sending: {exc}"))

    async def _read(self, phase: Phase) -> None:
        """Read with the timeout for the awaited reply as a whole, so a server that drips
        one byte at a time cannot hold the session beyond it."""
        timeout = self.timeouts.data if phase is Phase.DATA_END else self.timeouts.command
        now = asyncio.get_running_loop().time()
        if self._wait is None or self._wait[0] != self.client.replies_seen:
            self._wait = (self.client.replies_seen, now + timeout)
        try:
            async with asyncio.timeout_at(self._wait[1]):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            self._lost(REPLY_REMOTE_TIMEOUT.with_text(
                f"{REPLY_REMOTE_TIMEOUT.text} ({self.host}) after {timeout:g}s"))
            return
        except (OSError, ssl.SSLError) as exc:
            self._lost(REPLY_REMOTE_LOST.with_text(
                f"{REPLY_REMOTE_LOST.text} ({self.host}): {exc}"))
            return
        self.client.receive_data(data)

    def _lost(self, reply: Reply) -> None:
        self.client.connection_lost(reply)
        self.abort()

    def _feed_content(self) -> None:
        if self._content is None:
            if self._open_content is None:
                raise RuntimeError("SMTP client asked for content outside a transaction")
            self._content = self._open_content()
        chunk = self._content.read(CONTENT_CHUNK)
        if len(chunk) == CONTENT_CHUNK:
            self.client.send_content(chunk)
            return
        # A short read is usually the end: then the last chunk and "." share one write.
        rest = self._content.read(CONTENT_CHUNK) if chunk else b""
        if chunk:
            self.client.send_content(chunk)
        if rest:
            self.client.send_content(rest)
        else:
            self.client.end_content()

    async def _start_tls(self) -> None:
        check = self.peer_check
        self.reader.seal()
        if self.reader.cleartext:  # already there before the handshake began
            self._cleartext_injected(self.reader.unseal())
            return
        try:
            ctx = check.context()
        except (OSError, ssl.SSLError) as exc:  # ca_file gone or unreadable since start
            self._tls_failed(f"cannot load CA file {check.ca_file}: {exc}", certificate=True)
            return
        # With a chain check the host name is checked too (an IP matches an IP SAN).
        name = self.host.strip("[]") if ctx.check_hostname else _sni(self.host)
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=name),
                                   self.timeouts.command)
        except (TimeoutError, ssl.SSLError, OSError, EOFError) as exc:
            if self.reader.unseal():
                self._cleartext_injected(self.reader.cleartext)
                return
            certificate = isinstance(exc, ssl.SSLCertVerificationError)
            if isinstance(exc, asyncio.TimeoutError):
                reason = "timed out"
            elif isinstance(exc, ssl.SSLCertVerificationError):
                reason = exc.verify_message or str(exc)
            else:
                reason = str(exc) or type(exc).__name__
            self._tls_failed(reason, certificate=certificate)
            return
        injected = self.reader.unseal()
        if injected:
            self._cleartext_injected(injected)
            return
        if check.dane:
            verdict = check.dane_check(peer_chain(self.writer.get_extra_info("ssl_object")))
            if not verdict.ok:
                self._tls_failed(f"DANE: {verdict.reason}", certificate=True,
                                 result=verdict.failure)
                return
        elif check.pinned:
            ssl_object = self.writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not check.fingerprint_matches(der):
                seen = certificate_fingerprint(der) if der else "none"
                self._tls_failed(f"certificate fingerprint {seen} is not one of "
                                 "the configured tls_fingerprints", certificate=True)
                return
        self.client.tls_established(verified=check.verifies)

    def _tls_failed(self, reason: str, *, certificate: bool, result: str = "") -> None:
        self.tls_result = result or (certificate_failure(reason).value if certificate
                                     else ResultType.VALIDATION_FAILURE.value)
        log_event(log, "TLS certificate not verified" if certificate else "TLS handshake failed",
                  level=logging.INFO, host=self.host, tls_level=self.peer_check.level,
                  error=reason)
        self.client.tls_failed(reason, certificate=certificate)
        self.abort()

    def _cleartext_injected(self, size: int) -> None:
        log_event(log, "cleartext received during STARTTLS handshake", level=logging.WARNING,
                  host=self.host, bytes=size)
        self.client.cleartext_in_handshake(size)
        self.abort()
