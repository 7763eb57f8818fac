"""Outbound delivery (``[delivery]``): the relay host, timeouts and concurrency, the
per-domain transport routes and the sending pools, with each next hop's TLS settings."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field

from mailyard.config._parse import ConfigError, parse_hostport
from mailyard.config.enums import TlsLevel, TransportMode
from mailyard.sending.rate import parse_rate
from mailyard.tls import VERIFYING_LEVELS, parse_fingerprint


def _validate_outbound_tls(key: str, level_key: str, level: TlsLevel, ca_key: str,
                           ca_file: str, pins_key: str, fingerprints: tuple[str, ...]) -> None:
    """One next hop's TLS settings (the level is checked by the loader): a CA file and
    pins only where the level checks certificates, the CA file loadable, the pins
    SHA-256 digests."""
    verifying = level in VERIFYING_LEVELS
    for name, value in ((ca_key, ca_file), (pins_key, fingerprints)):
        if value and not verifying:
            raise ConfigError(f"{key}.{name}",
                              f"only used with {level_key} = 'verify' or 'secure'")
    for i, pin in enumerate(fingerprints):
        try:
            parse_fingerprint(pin)
        except ValueError as exc:
            raise ConfigError(f"{key}.{pins_key}[{i}]", str(exc)) from None
    if ca_file:
        try:
            ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{key}.{ca_key}",
                              f"cannot load CA certificates from {ca_file!r}: {exc}") from None


@dataclass(frozen=True)
class TransportRoute:
    """Where mail for one domain goes instead of its MX hosts."""

    domain: str = ""
    nexthop: str = ""
    tls: TlsLevel = TlsLevel.MAY
    mode: TransportMode = TransportMode.STORE_AND_FORWARD
    tls_ca_file: str = ""
    tls_fingerprints: tuple[str, ...] = ()

    def validate(self, key: str) -> None:
        if not self.domain:
            raise ConfigError(f"{key}.domain", "required")
        if self.nexthop:
            try:
                parse_hostport(self.nexthop, 25)
            except ValueError as exc:
                raise ConfigError(f"{key}.nexthop", str(exc)) from None
        _validate_outbound_tls(key, "tls", self.tls, "tls_ca_file", self.tls_ca_file,
                               "tls_fingerprints", self.tls_fingerprints)


@dataclass(frozen=True)
class DeliveryPool:
    """A dedicated sending pool: its own source addresses, HELO name, connection slots
    and per-destination rates (mailyard.delivery.pools)."""

    name: str = ""
    source_addresses: tuple[str, ...] = ()  # bound round-robin per address family
    helo_name: str = ""  # "": hostname
    max_concurrency: int = 20
    max_per_destination: int = 0  # 0: delivery.max_per_destination
    rate_limits: dict[str, str] = field(default_factory=dict)  # {"gmail.com" = "300/h"}
    senders: tuple[str, ...] = ()  # sender domains, addresses or login users routed here

    def validate(self, key: str) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{key}.name", "required: letters, digits, '-' and '_'")
        if self.name == "default":
            raise ConfigError(f"{key}.name", "'default' is the pool of all other mail")
        for i, address in enumerate(self.source_addresses):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"{key}.source_addresses[{i}]",
                                  f"not an IP address: {address!r}") from None
        if self.max_concurrency <= 0:
            raise ConfigError(f"{key}.max_concurrency", "must be positive")
        if self.max_per_destination < 0:
            raise ConfigError(f"{key}.max_per_destination", "must not be negative")
        for domain, rate in self.rate_limits.items():
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise ConfigError(f"{key}.rate_limits.{domain}", str(exc)) from None
        for i, sender in enumerate(self.senders):
            if not sender or " " in sender:
                raise ConfigError(f"{key}.senders[{i}]", f"not a domain or address: {sender!r}")


@dataclass(frozen=True)
class DeliveryConfig:
    relayhost: str = ""
    relayhost_username: str = ""
    relayhost_password: str = ""
    # Unset: "verify" with credentials, a CA file or pins, else "may".
    relayhost_tls: TlsLevel | None = None
    smtp_port: int = 25
    dns_servers: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    tls: TlsLevel = TlsLevel.MAY
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_concurrency: int = 100
    max_per_destination: int = 10
    max_messages_per_connection: int = 100
    active_window: int = 10_000
    retry_schedule: tuple[int, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
    max_lifetime: int = 5 * 86400
    delay_warning: int = 4 * 3600
    defer_all: bool = False
    # Mail for one local mailbox is written into it while the sender waits (the
    # queue only when that fails): mailyard.delivery.direct.
    direct_local: bool = True
    transports: tuple[TransportRoute, ...] = ()
    relayhost_tls_ca_file: str = ""
    relayhost_tls_fingerprints: tuple[str, ...] = ()
    relayhost_auth_unverified: bool = False
    pools: tuple[DeliveryPool, ...] = ()

    @property
    def relayhost_tls_level(self) -> TlsLevel:
        """The relay host's TLS level; unset, it checks the certificate whenever there
        are credentials to protect or a CA file or pins to check against."""
        if self.relayhost_tls:
            return TlsLevel(self.relayhost_tls)  # also a plain string given in code
        checked = (self.relayhost_username or self.relayhost_tls_ca_file
                   or self.relayhost_tls_fingerprints)
        return TlsLevel.VERIFY if checked else TlsLevel.MAY

    def _validate_relayhost_tls(self, key: str) -> None:
        _validate_outbound_tls(key, "relayhost_tls", self.relayhost_tls_level,
                               "relayhost_tls_ca_file", self.relayhost_tls_ca_file,
                               "relayhost_tls_fingerprints", self.relayhost_tls_fingerprints)
        level = self.relayhost_tls_level
        alias = " (written 'require' too)" if level == "encrypt" else ""
        if (self.relayhost_username and level not in VERIFYING_LEVELS
                and not self.relayhost_auth_unverified):
            raise ConfigError(
                f"{key}.relayhost_tls",
                f"is '{level}'{alias}, which does not verify the relay host's "
                "certificate, but relayhost_username is set: credentials are only sent to "
                "a verified server.  Use 'verify' or 'secure' (with relayhost_tls_ca_file "
                "or relayhost_tls_fingerprints for a private server), or set "
                "relayhost_auth_unverified = true to send them without that check")

    def validate(self, key: str) -> None:
        if self.relayhost:
            try:
                parse_hostport(self.relayhost, 25)
            except ValueError as exc:
                raise ConfigError(f"{key}.relayhost", str(exc)) from None
        for i, item in enumerate(self.dns_servers):
            try:
                parse_hostport(item, 53)
            except ValueError as exc:
                raise ConfigError(f"{key}.dns_servers[{i}]", str(exc)) from None
        if not 0 < self.smtp_port < 65536:
            raise ConfigError(f"{key}.smtp_port", "must be a TCP port (1-65535)")
        self._validate_relayhost_tls(key)
        for name in ("max_concurrency", "max_per_destination", "max_messages_per_connection",
                     "active_window", "max_lifetime"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        if not self.retry_schedule or any(s <= 0 for s in self.retry_schedule):
            raise ConfigError(f"{key}.retry_schedule",
                              "must be a non-empty list of positive seconds")
        for i, route in enumerate(self.transports):
            route.validate(f"{key}.transports[{i}]")
        names: set[str] = set()
        for i, pool in enumerate(self.pools):
            pool.validate(f"{key}.pools[{i}]")
            if pool.name in names:
                raise ConfigError(f"{key}.pools[{i}].name", f"pool {pool.name!r} twice")
            names.add(pool.name)

    def pool_for(self, sender: str, auth_user: str = "") -> str:
        """The pool configured for mail from ``sender`` (or the login ``auth_user``):
        a pool listing the address or user wins over one listing the sender's
        domain; "" for the default pool."""
        sender, user = sender.lower(), auth_user.lower()
        domain = sender.rpartition("@")[2].rstrip(".")
        by_domain = ""
        for pool in self.pools:
            for entry in pool.senders:
                entry = entry.lower()
                if "@" in entry and entry in (sender, user):
                    return pool.name
                if "@" not in entry and entry == domain and not by_domain:
                    by_domain = pool.name
        return by_domain
