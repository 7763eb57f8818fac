"""Contacts, lists and campaigns (``[bulk]``): confirmation mail, VERP and unsubscribe
addresses, bounce suppression, rendering workers."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError


@dataclass(frozen=True)
class BulkConfig:
    """Contacts and lists (mailyard.bulk)."""

    # From: and envelope sender of confirmation mail; "": postmaster@ the first local
    # domain (else the host name).
    sender: str = ""
    confirm_ttl: float = 7 * 86400.0  # seconds a double opt-in link stays valid
    # The domain of the VERP envelope senders (bounce_prefix+<token>@) and of the mailto
    # unsubscribe addresses (unsubscribe_prefix+<token>@) of bulk and transactional mail;
    # "": the first local domain (else the host name).
    bounce_domain: str = ""
    bounce_prefix: str = "bounces"
    unsubscribe_prefix: str = "unsubscribe"
    # Soft bounces of one contact within soft_bounce_window_days that suppress them.
    soft_bounce_threshold: int = 3
    soft_bounce_window_days: int = 7
    # Where provider feedback loops send ARF complaint reports; "": fbl@<bounce_domain>.
    complaint_address: str = ""
    # Processes rendering and signing campaign messages beside the campaign worker;
    # -1 (default): one fewer than the CPUs, 0: the campaign worker renders itself.
    render_workers: int = -1

    def validate(self, key: str) -> None:
        if self.render_workers < -1:
            raise ConfigError(f"{key}.render_workers", "must be -1 (automatic) or more")
        if self.sender and ("@" not in self.sender or any(c in self.sender for c in " \r\n<>")):
            raise ConfigError(f"{key}.sender", "must be an address (local@domain)")
        if self.confirm_ttl <= 0:
            raise ConfigError(f"{key}.confirm_ttl", "must be positive")
        if any(c in self.bounce_domain for c in " \r\n<>@"):
            raise ConfigError(f"{key}.bounce_domain", "must be a domain name")
        for name in ("bounce_prefix", "unsubscribe_prefix"):
            value = getattr(self, name)
            if not value or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value):
                raise ConfigError(f"{key}.{name}", "must be letters, digits, '-', '_' or '.'")
        if self.complaint_address and (
                "@" not in self.complaint_address
                or any(c in self.complaint_address for c in " \r\n<>+")):
            raise ConfigError(f"{key}.complaint_address", "must be an address (local@domain)")
        if self.bounce_prefix.lower() == self.unsubscribe_prefix.lower():
            raise ConfigError(f"{key}.unsubscribe_prefix", "must differ from bounce_prefix")
        for name in ("soft_bounce_threshold", "soft_bounce_window_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
