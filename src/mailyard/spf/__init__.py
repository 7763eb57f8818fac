"""SPF (RFC 7208): may this IP address send mail for this domain?

Pure evaluation over an injected :class:`mailyard.dns.Resolver` (normally the caching
one): :func:`check_mail_from` and :func:`check_helo` for the two SMTP identities,
:func:`check_host` for the RFC's function itself.  Every outcome, ``permerror`` and
``temperror`` included, is an :class:`SpfResult` value.
"""

from __future__ import annotations

from mailyard.spf.check import (
    DEFAULT_LIMITS,
    SpfLimits,
    check_helo,
    check_host,
    check_mail_from,
    client_address,
    remembered,
)
from mailyard.spf.memo import SpfMemo
from mailyard.spf.result import Identity, SpfResult, SpfStatus

__all__ = [
    "DEFAULT_LIMITS",
    "Identity",
    "SpfLimits",
    "SpfMemo",
    "SpfResult",
    "SpfStatus",
    "check_helo",
    "check_host",
    "check_mail_from",
    "client_address",
    "remembered",
]
