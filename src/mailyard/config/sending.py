"""Per-user and per-domain sending limits (``[sending]``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mailyard.config._parse import ConfigError
from mailyard.sending.window import SendLimits


@dataclass(frozen=True)
class SendingConfig:
    """Sending limits of regular users (submission, ``mailyard send``, the HTTP API):
    messages and recipients per hour and per 24 hours, per user (``mailyard user
    limits`` sets a user's own) and per domain of the user.  0: unlimited."""

    user_messages_per_hour: int = 0
    user_messages_per_day: int = 0
    user_recipients_per_hour: int = 0
    user_recipients_per_day: int = 0
    domain_messages_per_hour: int = 0
    domain_messages_per_day: int = 0
    domain_recipients_per_hour: int = 0
    domain_recipients_per_day: int = 0

    def validate(self, key: str) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"{key}.{f.name}", "must not be negative (0: unlimited)")

    def _limits(self, prefix: str) -> SendLimits:
        return SendLimits(*(getattr(self, f"{prefix}_{name}") for name in (
            "messages_per_hour", "messages_per_day", "recipients_per_hour",
            "recipients_per_day")))

    @property
    def user_limits(self) -> SendLimits:
        return self._limits("user")

    @property
    def domain_limits(self) -> SendLimits:
        return self._limits("domain")
