"""TLS: the certificate the listeners present (``[tls]``) and the outbound transport
security policies (``[mta_sts]``, ``[dane]``, ``[tls_rpt]``).  Per-hop TLS levels
belong to ``[delivery]`` (mailyard.config.delivery)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mailyard.config._parse import ConfigError, parse_hostport


@dataclass(frozen=True)
class TlsConfig:
    cert: str = ""
    key: str = ""

    def validate(self, key: str) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError(key, "set both 'cert' and 'key', or neither")
        for name in ("cert", "key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{key}.{name}", f"file not found: {path}")


@dataclass(frozen=True)
class MtaStsConfig:
    """MTA-STS (RFC 8461) for MX delivery (mailyard.mtasts)."""

    enabled: bool = True
    fetch_timeout: float = 10.0  # the whole policy fetch: connect, TLS, answer
    cache: bool = True  # keep policies in data_dir/mta-sts.db across restarts
    # CA certificates (PEM) for policy hosts and for MX hosts under a policy instead of
    # the system store: a private PKI, or tests.
    ca_file: str = ""

    def validate(self, key: str) -> None:
        if self.fetch_timeout <= 0:
            raise ConfigError(f"{key}.fetch_timeout", "must be positive")
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise ConfigError(f"{key}.ca_file", f"file not found: {self.ca_file}")


@dataclass(frozen=True)
class DaneConfig:
    """DANE (RFC 7672) for MX delivery (mailyard.dane): needs a validating resolver."""

    enabled: bool = False
    # Validating resolvers whose AD bit is trusted ("ip" or "ip:port"); empty: the
    # delivery.dns_servers (or the system's).  Use one on this host (RFC 6698 / 4033).
    dns_servers: tuple[str, ...] = ()

    def validate(self, key: str) -> None:
        for i, item in enumerate(self.dns_servers):
            try:
                parse_hostport(item, 53)
            except ValueError as exc:
                raise ConfigError(f"{key}.dns_servers[{i}]", str(exc)) from None


@dataclass(frozen=True)
class TlsRptConfig:
    """SMTP TLS reporting (RFC 8460, mailyard.tlsrpt)."""

    enabled: bool = True  # count outbound TLS outcomes in data_dir/tls-rpt.db
    send_reports: bool = False  # mail the daily reports to domains that publish rua
    organization: str = ""  # organization-name in reports; "": the hostname
    contact: str = ""  # contact-info; "": postmaster@hostname
    sender: str = ""  # the reports' From and envelope sender; "": postmaster@hostname

    def validate(self, key: str) -> None:
        for name in ("contact", "sender"):
            value = getattr(self, name)
            if value and "@" not in value:
                raise ConfigError(f"{key}.{name}", "must be a mail address")
