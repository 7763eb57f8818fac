"""What an SMTP session depends on, declared here so that the session needs nothing
else: ``server.py -> session.py -> context.py`` and nothing back.

* :class:`ListenerSpec`: what one listening socket serves (kind, core settings,
  policy, TLS);
* :class:`SessionTimers`: the ``smtpd`` timeouts, read from the configuration once;
* :class:`SessionHost`: the server, as a session sees it (admission against the
  connection caps, release, the "queued" notice, shutdown);
* :class:`InboundServices`: what a transaction needs (ingest, metrics, the
  deliver-now service for end-to-end transports).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

from mailyard.config import SmtpdConfig
from mailyard.ingest.api import DeliverNow, Ingest
from mailyard.obs import Metrics
from mailyard.proto.smtp.replies import Reply
from mailyard.proto.smtp.session import ServerSettings
from mailyard.smtpd.policy import Policy

__all__ = ["InboundServices", "ListenerSpec", "SessionHost", "SessionTimers"]


@dataclass(frozen=True)
class ListenerSpec:
    """What one listening socket serves: its kind, core settings and policy."""

    kind: str
    settings: ServerSettings
    policy: Policy
    tls_context: ssl.SSLContext | None


@dataclass(frozen=True)
class SessionTimers:
    """The session's timeouts, in seconds (``min_rate`` in octets per second; 0: no
    rate check)."""

    command: float
    data: float
    min_rate: int
    rate_grace: float
    tls_handshake: float
    max_session: float

    @classmethod
    def from_config(cls, smtpd: SmtpdConfig) -> SessionTimers:
        return cls(command=smtpd.command_timeout, data=smtpd.data_timeout,
                   min_rate=smtpd.min_data_rate, rate_grace=smtpd.data_rate_grace,
                   tls_handshake=min(smtpd.command_timeout, smtpd.tls_handshake_timeout),
                   max_session=smtpd.max_session_time)


class SessionHost(Protocol):
    """The server, as seen by its sessions."""

    @property
    def shutting_down(self) -> bool: ...

    def admit(self, session: object, ip: str) -> Reply | None:
        """Register a new connection; the refusal when it is over a cap or the server
        is shutting down (the session is registered either way)."""
        ...

    def release(self, session: object, ip: str) -> None:
        """The connection ended: unregister it and give back its place in the caps."""
        ...

    def queued(self, qid: str) -> None:
        """A message was committed to the queue (wake delivery)."""
        ...


@dataclass(frozen=True)
class InboundServices:
    """What a transaction needs beyond its listener."""

    ingest: Ingest
    metrics: Metrics
    hostname: str
    deliver_now: DeliverNow | None = None  # None: every message is only queued
