"""The SMTP server's limits and policies (``[smtpd]``), the AUTH guard's included."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError
from mailyard.config.enums import BareLineEndings, CpuAffinity


@dataclass(frozen=True)
class SmtpdConfig:
    max_message_size: int = 52_428_800
    max_recipients: int = 1000
    max_connections: int = 2000
    max_connections_per_ip: int = 20
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    min_data_rate: int = 1024
    max_auth_failures: int = 3
    max_errors: int = 20
    max_received_headers: int = 50
    bare_line_endings: BareLineEndings = BareLineEndings.REJECT
    vrfy: bool = False
    min_free_disk: int = 104_857_600
    workers: int = 0
    cpu_affinity: CpuAffinity = CpuAffinity.AUTO
    banner: str = ""
    max_line_length: int = 1000
    data_rate_grace: float = 30.0
    # AUTH guard (mailyard.smtpd.authguard): password verifications at once per worker,
    # how many more may wait for a slot, and the failure limits shared by the workers.
    auth_concurrency: int = 2
    auth_queue: int = 8
    auth_failure_window: float = 600.0
    auth_max_failures_per_ip: int = 10
    auth_max_failures_per_user: int = 5
    auth_failure_delay: float = 0.5
    auth_failure_delay_max: float = 8.0
    tls_handshake_timeout: float = 10.0
    max_session_time: float = 3600.0
    # Submission (587/465) only: recipients at address literals (user@[192.0.2.1]).
    # Off: all refused.  On: literals of public addresses only; loopback, private,
    # link-local and other non-global ranges are always refused (no SSRF into the LAN).
    submission_allow_address_literals: bool = False
    # Submission only: every address in header From must be owned by the login user
    # (same rule as the envelope sender).  Off by default: list managers, "on behalf of"
    # and shared-mailbox clients legitimately send with a From they do not own.
    require_header_from_match: bool = False

    def validate(self, key: str) -> None:
        if self.max_line_length < 1000:
            raise ConfigError(f"{key}.max_line_length",
                              "must be at least 1000 (RFC 5321 4.5.3.1.6)")
        if self.data_rate_grace < 0:
            raise ConfigError(f"{key}.data_rate_grace", "must not be negative")
        if self.max_recipients < 100:
            raise ConfigError(f"{key}.max_recipients", "must be at least 100 (RFC 5321 4.5.3.1.8)")
        for name in ("max_message_size", "max_connections", "max_connections_per_ip",
                     "max_auth_failures", "max_errors", "max_received_headers"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        for name in ("command_timeout", "data_timeout", "tls_handshake_timeout",
                     "max_session_time"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        for name in ("min_data_rate", "min_free_disk", "workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative")
        self._validate_auth_guard(key)

    def _validate_auth_guard(self, key: str) -> None:
        if self.auth_concurrency <= 0:
            raise ConfigError(f"{key}.auth_concurrency", "must be positive")
        if self.auth_failure_window <= 0:
            raise ConfigError(f"{key}.auth_failure_window", "must be positive")
        for name in ("auth_queue", "auth_max_failures_per_ip", "auth_max_failures_per_user",
                     "auth_failure_delay", "auth_failure_delay_max"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative")
        if self.auth_failure_delay_max < self.auth_failure_delay:
            raise ConfigError(f"{key}.auth_failure_delay_max",
                              "must be at least smtpd.auth_failure_delay")
