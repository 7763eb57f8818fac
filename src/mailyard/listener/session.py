"""The connection half of an IMAP or POP3 session: an ``asyncio.Protocol`` that
reads, feeds a sans-IO core, writes what the core emits and spawns one task per
decision.  The protocol sessions subclass it and answer the decisions.

Here: admission (the server's caps), back-pressure both ways (reading pauses while
a decision waits on pipelined input, during a TLS handshake, or while the client
does not read its replies; writers wait on :attr:`StreamSession.writable`), the
timer plumbing, STARTTLS and implicit TLS, and the end of a connection.  What
differs by protocol is a hook: how a refusal is said, what ends a session on error,
what is released when the connection is lost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Protocol, cast

from mailyard.obs import log_event
from mailyard.proto.sentinels import CLOSED, NEED_DATA, PAUSED

__all__ = ["ReadingControl", "StreamSession", "replay_early_input"]

PAUSE_BUFFER = 64 * 1024  # stop reading while this much pipelined input waits


class Core(Protocol):
    """The sans-IO server connection, as the adapter drives it."""

    @property
    def closed(self) -> bool: ...
    @property
    def tls_pending(self) -> bool: ...
    @property
    def buffered(self) -> int: ...
    @property
    def pending(self) -> object | None: ...

    def receive_data(self, data: bytes) -> None: ...
    def data_to_send(self) -> bytes: ...
    def next_event(self) -> object: ...
    def greet(self) -> None: ...
    def tls_established(self) -> None: ...
    def close(self) -> None: ...


class Timers(Protocol):
    @property
    def tls_handshake(self) -> float: ...


class Listener(Protocol):
    """What one listening socket serves."""

    @property
    def kind(self) -> str: ...
    @property
    def tls_context(self) -> ssl.SSLContext | None: ...
    @property
    def implicit_tls(self) -> bool: ...
    @property
    def timers(self) -> Timers: ...


class Host(Protocol):
    """The server as the connection half sees it."""

    shutting_down: bool

    def admit(self, session: Any, ip: str) -> Any: ...
    def release(self, session: Any, ip: str) -> None: ...


class ReadingControl:
    """Reading paused for one or more reasons (a decision pending on pipelined input,
    a TLS handshake, a slow writer) and resumed when the last is gone; shared with
    the SMTP session."""

    transport: asyncio.Transport | None
    reading_paused: set[str]

    def _pause_reading(self, reason: str) -> None:
        transport = self.transport
        if not self.reading_paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self.reading_paused.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self.reading_paused:
            return
        self.reading_paused.discard(reason)
        transport = self.transport
        if not self.reading_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()


class StreamSession(ReadingControl, asyncio.Protocol):
    protocol: ClassVar[str]  # "imap", "pop3": names the log events
    log: ClassVar[logging.Logger]
    shutting_down_refusal: ClassVar[Any]

    def __init__(self, listener: Listener, host: Host, conn: Core) -> None:
        self.listener = listener
        self.host = host
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.task: asyncio.Task[None] | None = None
        self.task_started = 0.0
        self.started = self.loop.time()
        self.last_activity = self.started
        self.timer: asyncio.TimerHandle | None = None
        self.handshaking = False
        self.tls_started = False
        self.early_input = b""
        self.lost = False
        self.reading_paused: set[str] = set()
        self.writable = asyncio.Event()
        self.writable.set()

    # --- what each protocol says --------------------------------------------------

    def _greet_refused(self, refusal: Any) -> None:
        """Greet with ``refusal`` (over a cap, shutting down) instead of a welcome."""
        raise NotImplementedError

    def _close_on_error(self) -> None:
        """Close the core with the protocol's internal-error status."""
        raise NotImplementedError

    def _handle(self, event: Any) -> None:
        raise NotImplementedError

    def _next_check(self) -> float:
        """When the timer should look again."""
        raise NotImplementedError

    def _on_timer(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Server shutdown: end the session (see :meth:`_shutdown_early`)."""
        raise NotImplementedError

    def _release(self) -> None:
        """The connection is gone: give back what the session holds."""

    def _implicit_tls_ready(self) -> None:
        """The handshake of an implicit-TLS listener completed, before the greeting."""

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        refusal = self.host.admit(self, self.ip)
        if refusal is not None:
            log_event(self.log, "connection refused", client=self.ip, response=str(refusal),
                      listener=self.listener.kind)
            if self.listener.implicit_tls:  # no TLS yet to carry the refusal
                self.conn.close()
                self._close_transport()
                return
            self._greet_refused(refusal)
        elif self.listener.implicit_tls:
            self.handshaking = True
            self._begin_tls()
        else:
            self.conn.greet()
        self._pump()
        if not self.conn.closed:
            self._arm(self._next_check())

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self._early_tls_input(data)
            return
        self.last_activity = self.loop.time()
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.writable.set()
        if self.timer is not None:
            self.timer.cancel()
        self.conn.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._release()
        self.host.release(self, self.ip)

    def pause_writing(self) -> None:
        # A client that sends commands but never reads their replies: stop reading
        # too, or the replies pile up in memory without bound.
        self.writable.clear()
        self._pause_reading("writing")

    def resume_writing(self) -> None:
        self.writable.set()
        self._resume_reading("writing")

    # --- driving the core ---------------------------------------------------------

    def _pump(self) -> None:
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is PAUSED:
                    if conn.tls_pending and not self.tls_started:
                        self._flush()
                        self._begin_tls()
                        return
                    break
                if event is CLOSED:
                    self._flush()
                    self._close_transport()
                    return
                self._handle(event)
        except Exception:  # a bug here: log it, keep the other sessions going
            self.log.exception(f"{self.protocol} session failed",
                               extra={"fields": {"client": self.ip}})
            self._fail()
            return
        self._flush()
        if conn.pending is not None and conn.buffered > PAUSE_BUFFER:
            self._pause_reading("decision")
        else:
            self._resume_reading("decision")

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _close_transport(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def _fail(self) -> None:
        self._close_on_error()
        self._flush()
        self._close_transport()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = self.loop.create_task(coro)
        self.task_started = self.loop.time()
        self.task.add_done_callback(self._task_done)
        if self.timer is not None:
            self._arm(self._next_check())

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task is self.task:
            self.task = None
            self.last_activity = self.loop.time()
            if self.timer is not None:
                self._arm(self._next_check())
        if task.cancelled() or task.exception() is None:
            return
        self.log.error(f"{self.protocol} session task failed", exc_info=task.exception(),
                       extra={"fields": {"client": self.ip}})
        if not self.lost:
            self._fail()

    def _answered(self, event: object) -> bool:
        """Is ``event`` still the decision the core waits for (the client may be gone)?"""
        return not self.lost and self.conn.pending is event

    # --- timers and shutdown ------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if self.lost else self.loop.call_at(when, self._on_timer)

    def _time_out(self, close: Callable[[], None]) -> None:
        """End a session whose timer ran out: ``close`` says why to the core."""
        stuck = not self.writable.is_set()  # a client that stopped reading
        if self.task is not None:
            self.task.cancel()
        close()
        self._pump()
        if stuck and self.transport is not None:
            self.transport.abort()  # nothing would flush: close() would wait for ever

    def _shutdown_early(self) -> bool:
        """Server shutdown before there is a session to close: True when done (gone
        already, or still in the TLS handshake of port 993 or 995: aborted)."""
        if self.lost:
            return True
        if self.handshaking:
            if self.transport is not None:
                self.transport.abort()
            return True
        return False

    # --- TLS ----------------------------------------------------------------------

    def _begin_tls(self) -> None:
        self.tls_started = True
        self._pause_reading("tls")
        self._spawn(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.transport is not None and self.listener.tls_context is not None
        try:
            transport = await self.loop.start_tls(
                self.transport, self, self.listener.tls_context, server_side=True,
                ssl_handshake_timeout=self.listener.timers.tls_handshake)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log_event(self.log, "tls handshake failed", level=logging.INFO, client=self.ip,
                      error=str(exc) or type(exc).__name__)
            if self.transport is not None:
                self.transport.abort()
            self.loop.call_soon(self.connection_lost, exc)
            return
        if transport is None or self.lost:
            return
        self.transport = transport
        self.reading_paused.clear()
        self.tls_started = False
        if self.handshaking:
            self.handshaking = False
            self._implicit_tls_ready()
            if self.host.shutting_down:
                self._greet_refused(self.shutting_down_refusal)
            else:
                self.conn.greet()
        else:
            self.conn.tls_established()
        self.last_activity = self.loop.time()
        self.loop.call_soon(self._pump)

    def _early_tls_input(self, data: bytes) -> None:
        """TLS octets that reached us before ``start_tls`` took the transport over
        (uvloop may read before the handshake task runs): hand them to the TLS
        protocol once it is set up (see mailyard.smtpd.session, which does the same)."""
        raw = self.transport
        if raw is None:
            return
        self.early_input += data
        self.loop.call_soon(self.loop.call_soon, self._replay_early_input, raw)

    def _replay_early_input(self, raw: asyncio.Transport) -> None:
        data, self.early_input = self.early_input, b""
        replay_early_input(self, raw, data)


def replay_early_input(session: asyncio.Protocol, raw: asyncio.Transport,
                       data: bytes) -> None:
    """Hand ``data``, read by ``session`` while its transport ``raw`` was being taken
    over by ``start_tls``, to the TLS protocol now on ``raw``."""
    tls = raw.get_protocol()
    if not data or tls is session or raw.is_closing():
        return
    # uvloop's TLS protocol is buffered without subclassing BufferedProtocol.
    if isinstance(tls, asyncio.BufferedProtocol) or hasattr(tls, "get_buffer"):
        view = memoryview(data)
        while view:
            buf = tls.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            tls.buffer_updated(n)  # type: ignore[attr-defined]
            view = view[n:]
    else:
        cast(asyncio.Protocol, tls).data_received(data)
