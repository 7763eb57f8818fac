"""Typed, frozen configuration loaded from TOML.

One :class:`Config` object is built at start-up and passed explicitly to every
component; nothing reads a module global.  Every key is declared once, here, as a
dataclass field; the loader walks the dataclasses, so an unknown key or a value of the
wrong type is reported with its full dotted name (``listen.smtp[0]``) instead of a
traceback.  ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import socket
import ssl
import tomllib
import types
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol, get_args, get_origin, get_type_hints, runtime_checkable

from mailyard.proto.smtp.client import TLS_LEVEL_ALIASES
from mailyard.sending.rate import parse_rate
from mailyard.sending.window import SendLimits
from mailyard.tls import VERIFYING_LEVELS, parse_fingerprint


# --- enumerated values (the loader converts and checks them once) -----------------------
class TlsLevel(enum.StrEnum):
    """An outbound TLS level (see docs/configuration.md)."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    VERIFY = "verify"
    SECURE = "secure"

    @classmethod
    def _missing_(cls, value: object) -> TlsLevel | None:
        alias = TLS_LEVEL_ALIASES.get(value) if isinstance(value, str) else None
        return cls(alias) if alias else None  # "require": the earlier name of "encrypt"


class TransportMode(enum.StrEnum):
    STORE_AND_FORWARD = "store-and-forward"
    END_TO_END = "end-to-end"


class ListenerKind(enum.StrEnum):
    SMTP = "smtp"  # port 25
    SUBMISSION = "submission"  # port 587, STARTTLS
    SUBMISSIONS = "submissions"  # port 465, implicit TLS
    POP3 = "pop3"  # port 110, STLS
    POP3S = "pop3s"  # port 995, implicit TLS
    IMAP = "imap"  # port 143, STARTTLS
    IMAPS = "imaps"  # port 993, implicit TLS
    HTTP = "http"  # the HTTP service (JSON API, public pages)
    HTTPS = "https"  # the same over TLS


class BareLineEndings(enum.StrEnum):
    REJECT = "reject"
    NORMALIZE = "normalize"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


#: What the loader says when a value is not one of an enumeration's.
_ALLOWED_TEXT: dict[type[enum.StrEnum], str] = {
    TlsLevel: ("must be 'none', 'may', 'encrypt', 'verify' or 'secure' "
               "('require' is accepted as the earlier name of 'encrypt')"),
}


def _allowed(tp: type[enum.StrEnum]) -> str:
    text = _ALLOWED_TEXT.get(tp)
    if text is not None:
        return text
    names = [f"'{m.value}'" for m in tp]
    return f"must be {', '.join(names[:-1])} or {names[-1]}"

__all__ = [
    "AuthConfig",
    "BareLineEndings",
    "BulkConfig",
    "HttpConfig",
    "ListenerKind",
    "LogFormat",
    "LogLevel",
    "TlsLevel",
    "TransportMode",
    "Config",
    "ConfigError",
    "DaneConfig",
    "MtaStsConfig",
    "TlsRptConfig",
    "DeliveryConfig",
    "DeliveryPool",
    "DkimConfig",
    "ImapConfig",
    "ListenConfig",
    "LogConfig",
    "MailboxConfig",
    "MetricsConfig",
    "Pop3Config",
    "SendingConfig",
    "SmtpdConfig",
    "SpfAction",
    "SpfConfig",
    "TlsConfig",
    "TransportRoute",
    "default_config",
    "default_listen",
    "find_config_path",
    "load_config",
    "parse_hostport",
]


@runtime_checkable
class _Section(Protocol):
    """A config section: a dataclass that checks its own values."""

    def validate(self, key: str) -> None: ...


class ConfigError(Exception):
    """A configuration problem, with the dotted key it concerns."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``host`` (when a default port is given)."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {value!r}")
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            if default_port is None:
                raise ValueError(f"missing port in {value!r}")
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in {value!r}")
        port_s = rest[1:]
    elif value.count(":") == 1:
        host, port_s = value.split(":")
    elif default_port is not None and ":" not in value:
        return value, default_port
    else:
        raise ValueError(f"expected host:port, got {value!r}")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    if not host:
        raise ValueError(f"missing host in {value!r}")
    return host, int(port_s)


@dataclass(frozen=True)
class ListenConfig:
    smtp: tuple[str, ...] = ()
    submission: tuple[str, ...] = ()
    submissions: tuple[str, ...] = ()
    pop3: tuple[str, ...] = ()
    pop3s: tuple[str, ...] = ()
    imap: tuple[str, ...] = ()
    imaps: tuple[str, ...] = ()
    http: tuple[str, ...] = ()
    https: tuple[str, ...] = ()

    def validate(self, key: str) -> None:
        for kind in ListenerKind:
            name = kind.value
            for i, item in enumerate(getattr(self, name)):
                try:
                    parse_hostport(item)
                except ValueError as exc:
                    raise ConfigError(f"{key}.{name}[{i}]", str(exc)) from None


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


@dataclass(frozen=True)
class Pop3Config:
    """The POP3 listeners (``listen.pop3``, ``listen.pop3s``; mailyard.pop3d).  The
    AUTH guard's limits are the ``smtpd.auth_*`` keys: one guard for every protocol."""

    # USER/PASS and AUTH before STLS: off (RFC 8314, RFC 2595 3.1).  Only for a
    # listener that no one reaches over an untrusted network.
    allow_plaintext_login: bool = False
    max_connections: int = 1000  # per worker process
    max_connections_per_ip: int = 20  # per worker process
    # Seconds without a complete command before the session is closed; RFC 1939 3
    # asks for at least 10 minutes.
    idle_timeout: float = 600.0
    # Seconds one RETR/TOP may take to go out (a client that stops reading).
    command_timeout: float = 300.0
    tls_handshake_timeout: float = 10.0
    max_session_time: float = 3600.0

    def validate(self, key: str) -> None:
        for name in ("max_connections", "max_connections_per_ip", "idle_timeout",
                     "command_timeout", "tls_handshake_timeout", "max_session_time"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")


@dataclass(frozen=True)
class ImapConfig:
    """The IMAP listeners (``listen.imap``, ``listen.imaps``; mailyard.imapd).  The
    AUTH guard's limits are the ``smtpd.auth_*`` keys: one guard for every protocol."""

    # LOGIN and AUTHENTICATE before STARTTLS: off (RFC 9051 6.2.3, RFC 8314).
    allow_plaintext_login: bool = False
    max_connections: int = 2000  # per worker process
    max_connections_per_ip: int = 50  # per worker process (clients open several)
    # Seconds a connection may stay unauthenticated.
    login_timeout: float = 60.0
    # Seconds without a command (IDLE included) before an authenticated session is
    # closed; RFC 9051 5.4 asks for at least 30 minutes.
    idle_timeout: float = 1800.0
    # Seconds the server may spend on one command (a FETCH to a client that stops
    # reading).
    command_timeout: float = 300.0
    tls_handshake_timeout: float = 10.0
    max_line: int = 65_536  # octets of one command line (RFC 7162 4: at least 8192)
    max_literal: int = 65_536  # one literal in a command other than APPEND
    max_literal_unauthenticated: int = 4_096  # one literal before login
    appendlimit: int = 52_428_800  # APPEND message size (APPENDLIMIT, RFC 7889)
    search_time_budget: float = 10.0  # seconds one SEARCH/SORT/THREAD may run
    poll_interval: float = 0.25  # seconds between checks of a selected mailbox
    search_index_warm: bool = True  # index a selected folder in the background

    def validate(self, key: str) -> None:
        for name in ("max_connections", "max_connections_per_ip", "login_timeout",
                     "idle_timeout", "command_timeout", "tls_handshake_timeout",
                     "max_line", "max_literal", "max_literal_unauthenticated",
                     "appendlimit", "search_time_budget", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        if self.max_line < 8192:
            raise ConfigError(f"{key}.max_line", "must be at least 8192 (RFC 7162 4)")


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


@dataclass(frozen=True)
class LogConfig:
    format: LogFormat = LogFormat.TEXT
    level: LogLevel = LogLevel.INFO
    file: str = ""

    def validate(self, key: str) -> None:
        """Format and level are checked by the loader (enumerations)."""


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""
    file: str = ""

    def validate(self, key: str) -> None:
        if self.listen:
            try:
                parse_hostport(self.listen)
            except ValueError as exc:
                raise ConfigError(f"{key}.listen", str(exc)) from None


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP service (``listen.http``/``listen.https``; mailyard.http)."""

    # The base URL people and mail clients reach the service at: confirmation (and
    # later unsubscribe and tracking) links start with it.  "": the first HTTPS
    # listener, else the first HTTP one.
    public_url: str = ""
    workers: int = 1
    max_body_size: int = 1_048_576  # bytes of a request body; more: 413
    max_import_size: int = 104_857_600  # bytes of an import body (POST .../import)
    # Public subscribe form: attempts per client address (IPv6 by /64) per window,
    # counted per HTTP worker process.
    subscribe_rate: int = 10
    subscribe_window: float = 3600.0
    max_recipients: int = 50  # recipients of one POST /api/v1/messages

    def validate(self, key: str) -> None:
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.public_url", "must start with http:// or https://")
        for name in ("workers", "max_body_size", "max_import_size", "subscribe_rate",
                     "subscribe_window", "max_recipients"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")


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
class SpfAction(enum.StrEnum):
    """What an SPF result does at MAIL FROM (docs/configuration.md, [spf])."""

    REJECT = "reject"  # 550 5.7.23 (fail) / 550 5.7.24 (permerror)
    DEFER = "defer"  # 451 4.7.24
    MARK = "mark"  # accept: the result is only recorded (Authentication-Results)


@dataclass(frozen=True)
class SpfConfig:
    # Check SPF (RFC 7208) at MAIL FROM on the port 25 listeners (never on submission).
    enabled: bool = True
    # The action for each result that can refuse; the others are recorded only.
    fail: SpfAction = SpfAction.REJECT
    softfail: SpfAction = SpfAction.MARK
    permerror: SpfAction = SpfAction.MARK
    temperror: SpfAction = SpfAction.MARK
    # Seconds one evaluation may take in all (RFC 7208 4.6.4 allows 20).
    time_budget: float = 5.0
    # RFC 7208 4.6.4: DNS lookups that find nothing before the result is permerror.
    max_void_lookups: int = 2
    # Also check the HELO identity (RFC 7208 2.3); its fail refuses like a MAIL FROM
    # fail unless MAIL FROM passed.
    check_helo: bool = True
    # Clients not checked: the host itself (mail it hands to its own port 25).
    skip_addresses: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    def validate(self, key: str) -> None:
        if not 0.1 <= self.time_budget <= 60:
            raise ConfigError(f"{key}.time_budget", "must be between 0.1 and 60 seconds")
        if not 0 <= self.max_void_lookups <= 100:
            raise ConfigError(f"{key}.max_void_lookups", "must be between 0 and 100")
        for i, network in enumerate(self.skip_addresses):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{key}.skip_addresses[{i}]",
                                  f"not an address or network: {network!r}") from None
        if self.softfail is SpfAction.REJECT:
            raise ConfigError(f"{key}.softfail", "may be \"mark\" or \"defer\" "
                              "(RFC 7208 8.5: a softfail is not a refusal)")


# RFC 7677 4: at least 4096.  The upper bound keeps one SCRAM login (the client
# derives the key once, then may cache it) within about a second.
SCRAM_ITERATIONS_MIN = 4096
SCRAM_ITERATIONS_MAX = 10_000_000


@dataclass(frozen=True)
class AuthConfig:
    # PBKDF2-SHA256 iterations of the SCRAM-SHA-256 keys stored with each new password;
    # 0 stores no SCRAM keys (argon2id only) and does not offer SCRAM-SHA-256.
    scram_iterations: int = 100_000
    # The shortest password `mailyard user add` and `user passwd` accept.
    min_password_length: int = 10

    def validate(self, key: str) -> None:
        if not 1 <= self.min_password_length <= 1024:
            raise ConfigError(f"{key}.min_password_length", "must be between 1 and 1024")
        n = self.scram_iterations
        if n != 0 and not SCRAM_ITERATIONS_MIN <= n <= SCRAM_ITERATIONS_MAX:
            raise ConfigError(
                f"{key}.scram_iterations",
                f"must be 0 (no SCRAM-SHA-256) or between {SCRAM_ITERATIONS_MIN} "
                f"(RFC 7677) and {SCRAM_ITERATIONS_MAX}")


class DmarcQuarantine(enum.StrEnum):
    HEADER = "header"  # deliver, marked with X-Mailyard-Quarantine
    JUNK = "junk"  # marked, and delivered to the mailbox's \\Junk folder


@dataclass(frozen=True)
class DmarcConfig:
    # Check DMARC (RFC 7489) on mail received on port 25 and act on failures.
    enabled: bool = True
    # Refuse mail whose domain asks for p=reject (550 5.7.1); false: quarantine it.
    reject: bool = True
    quarantine: DmarcQuarantine = DmarcQuarantine.JUNK
    # A Public Suffix List file instead of the copy publicsuffixlist ships ("").
    public_suffix_list: str = ""
    # Aggregate reports we send (RFC 7489 7.2): record evaluations, mail them per period.
    reports: bool = False
    report_interval: float = 86400.0  # seconds; periods end at multiples of it
    report_sender: str = ""  # From and envelope sender; "": postmaster@hostname
    report_organization: str = ""  # org_name; "": the hostname
    report_contact: str = ""  # extra_contact_info; "": none
    # Mail to this local part of a local domain is imported as reports received ("": no).
    report_mailbox: str = "dmarc-reports"

    def validate(self, key: str) -> None:
        if self.public_suffix_list and not os.path.isabs(self.public_suffix_list):
            raise ConfigError(f"{key}.public_suffix_list", "must be an absolute path")
        if self.report_interval < 1:
            raise ConfigError(f"{key}.report_interval", "must be at least 1 (seconds)")
        if self.report_sender and "@" not in self.report_sender:
            raise ConfigError(f"{key}.report_sender", "must be a mail address")
        if "@" in self.report_mailbox or any(c.isspace() for c in self.report_mailbox):
            raise ConfigError(f"{key}.report_mailbox", "must be a local part (no @)")


@dataclass(frozen=True)
class AuthResultsConfig:
    # The authserv-id of our Authentication-Results fields (RFC 8601 2.5); "": hostname.
    authserv_id: str = ""

    def validate(self, key: str) -> None:
        if any(c.isspace() or c in '()<>@,;:\\"/[]?=' for c in self.authserv_id):
            raise ConfigError(f"{key}.authserv_id", "must be a host name (an RFC 2045 token)")
_DKIM_HEADERS = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "In-Reply-To", "References",
    "Message-ID", "Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Post", "List-Help",
    "List-Subscribe", "List-Owner", "List-Archive", "Resent-Date", "Resent-From",
    "Resent-To", "Resent-Cc")


@dataclass(frozen=True)
class DkimConfig:
    # Sign mail from local domains that have a key (see docs/configuration.md).
    enabled: bool = True
    selector: str = "mailyard"
    algorithms: tuple[str, ...] = ("rsa-sha256",)
    rsa_bits: int = 2048
    headers: tuple[str, ...] = _DKIM_HEADERS
    oversign: tuple[str, ...] = ("From",)
    expiry: int = 0
    # Verification (mail received on port 25 from unauthenticated clients).
    verify: bool = True
    max_signatures: int = 5
    min_rsa_bits: int = 1024

    def validate(self, key: str) -> None:
        if not self.algorithms or any(a not in ("rsa-sha256", "ed25519-sha256")
                                      for a in self.algorithms):
            raise ConfigError(f"{key}.algorithms",
                              "must list 'rsa-sha256' and/or 'ed25519-sha256'")
        if not self.selector or not all(c.isalnum() or c == "-" for c in self.selector):
            raise ConfigError(f"{key}.selector", "must be letters, digits and '-'")
        if not 1024 <= self.rsa_bits <= 8192:
            raise ConfigError(f"{key}.rsa_bits", "must be between 1024 and 8192")
        if not any(h.lower() == "from" for h in self.headers):
            raise ConfigError(f"{key}.headers", "must include From (RFC 6376 5.4)")
        if self.expiry < 0 or self.max_signatures < 0 or self.min_rsa_bits < 512:
            raise ConfigError(key, "expiry and max_signatures must be >= 0, "
                              "min_rsa_bits >= 512")


@dataclass(frozen=True)
class ForwardingConfig:
    # Alias forwards to external addresses are sent from an SRS address of the alias's
    # domain (mailyard.srs); bounces to such addresses go back to the original sender.
    srs: bool = True
    # Forwarded copies get an ARC Set (RFC 8617) signed with the alias domain's DKIM key.
    arc: bool = True

    def validate(self, key: str) -> None:
        return None


@dataclass(frozen=True)
class MailboxConfig:
    # The default quota of every user (RFC 9208 STORAGE in octets, MESSAGE in
    # messages; 0: unlimited); `mailyard user quota` sets a user's own.
    quota_storage: int = 0
    quota_messages: int = 0

    def validate(self, key: str) -> None:
        for name in ("quota_storage", "quota_messages"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative (0: unlimited)")


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


@dataclass(frozen=True)
class Config:
    hostname: str = ""
    data_dir: str = "./mailyard-data"
    local_domains: tuple[str, ...] = ()
    relay_domains: tuple[str, ...] = ()
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    smtpd: SmtpdConfig = field(default_factory=SmtpdConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    imap: ImapConfig = field(default_factory=ImapConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    bulk: BulkConfig = field(default_factory=BulkConfig)
    dmarc: DmarcConfig = field(default_factory=DmarcConfig)
    auth_results: AuthResultsConfig = field(default_factory=AuthResultsConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)
    sending: SendingConfig = field(default_factory=SendingConfig)
    mta_sts: MtaStsConfig = field(default_factory=MtaStsConfig)
    dane: DaneConfig = field(default_factory=DaneConfig)
    tls_rpt: TlsRptConfig = field(default_factory=TlsRptConfig)
    spf: SpfConfig = field(default_factory=SpfConfig)
    forwarding: ForwardingConfig = field(default_factory=ForwardingConfig)
    # The identity ``mailyard serve`` switches to when started as root (ignored
    # otherwise): a user name or uid, and a group name or gid ("": the user's group).
    user: str = "mailyard"
    group: str = ""
    # Let the server keep running as root (user = "root"); refused unless set.
    allow_root: bool = False
    # Where this object came from (a file path, or "" for the embedded default).
    source: str = ""
    # True when the file has no [listen] table and the default listeners are used.
    listen_defaulted: bool = False

    def validate(self, key: str = "") -> None:
        if not self.hostname or any(c in self.hostname for c in " \t\r\n"):
            raise ConfigError("hostname", "must be a host name without spaces")
        for i, dom in enumerate(self.local_domains):
            if not dom or "@" in dom or " " in dom:
                raise ConfigError(f"local_domains[{i}]", f"not a domain: {dom!r}")
        for i, dom in enumerate(self.relay_domains):
            if not dom or "@" in dom or " " in dom:
                raise ConfigError(f"relay_domains[{i}]", f"not a domain: {dom!r}")
        for name in ("user", "group"):
            value = getattr(self, name)
            if any(c.isspace() or c in ":/" for c in value) or (name == "user" and not value):
                raise ConfigError(name, "must be a user/group name or a numeric id")
        for f in fields(self):
            value = getattr(self, f.name)
            if is_dataclass(value) and isinstance(value, _Section):
                value.validate(f.name)

    def is_relay_domain(self, domain: str) -> bool:
        """Port 25 accepts mail for these (not local) domains and forwards it: an entry
        "example.org" matches that domain, ".example.org" its subdomains."""
        domain = domain.lower().rstrip(".")
        for entry in self.relay_domains:
            if entry.startswith("."):
                if domain.endswith(entry):
                    return True
            elif domain == entry:
                return True
        return False

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


_NOT_IN_FILE = {"source", "listen_defaulted"}


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, types.UnionType):  # "X | None": None only from a round trip
        inner = [t for t in get_args(tp) if t is not type(None)]
        return None if value is None else _convert(inner[0], value, key)
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(key, _allowed(tp)) from None
    if isinstance(tp, type) and is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        value_tp = get_args(tp)[1]
        return {str(k): _convert(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        item_tp = get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, "must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value
    raise ConfigError(key, f"unsupported type {tp!r}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)} - _NOT_IN_FILE
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in known:
            close = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(key, f"unknown key{hint}")
        kwargs[k] = _convert(hints[k], v, key)
    return cls(**kwargs)


def _default_hostname() -> str:
    name = socket.getfqdn()
    return name if name and "." in name else "localhost.localdomain"


def _finish(cfg: Config) -> Config:
    updates: dict[str, Any] = {}
    if not cfg.hostname:
        updates["hostname"] = _default_hostname()
    if not cfg.local_domains:
        updates["local_domains"] = ()
    updates["local_domains"] = tuple(d.lower().rstrip(".") for d in cfg.local_domains)
    updates["relay_domains"] = tuple(d.lower().rstrip(".") for d in cfg.relay_domains)
    if not cfg.auth_results.authserv_id:
        hostname = updates.get("hostname", cfg.hostname)
        updates["auth_results"] = replace(cfg.auth_results, authserv_id=hostname)
    cfg = replace(cfg, **updates)
    cfg.validate()
    return cfg


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source}: not valid TOML: {exc}") from None
    cfg = _build(Config, data, "")
    if "listen" not in data:
        # Never serve nothing silently: without [listen], the embedded default's
        # listeners (``mailyard serve`` says so when it starts).
        cfg = replace(cfg, listen=default_listen(), listen_defaulted=True)
    return _finish(replace(cfg, source=source))


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror}") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("", f"{p}: not UTF-8 (line {line}, byte {exc.start}): "
                              "save the file as UTF-8") from None
    cfg = parse_config(text, str(p))
    # A relative data_dir is relative to the config file's directory.
    if not os.path.isabs(cfg.data_dir):
        cfg = replace(cfg, data_dir=str((p.parent / cfg.data_dir).resolve()))
    return cfg


def default_listen() -> ListenConfig:
    """The embedded default's listeners: 127.0.0.1 only; the standard ports as root,
    unprivileged ones otherwise."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    ports = (25, 587, 465, 110, 995, 143, 993) if root \
        else (2525, 5587, 5465, 5110, 5995, 5143, 5993)
    return ListenConfig(
        smtp=(f"127.0.0.1:{ports[0]}",),
        submission=(f"127.0.0.1:{ports[1]}",),
        submissions=(f"127.0.0.1:{ports[2]}",),
        pop3=(f"127.0.0.1:{ports[3]}",),
        pop3s=(f"127.0.0.1:{ports[4]}",),
        imap=(f"127.0.0.1:{ports[5]}",),
        imaps=(f"127.0.0.1:{ports[6]}",),
        http=("127.0.0.1:8025",),  # unprivileged even as root: a web port is not standard
    )


def default_config(data_dir: str = "./mailyard-data") -> Config:
    """The embedded default: everything under ./mailyard-data, unprivileged ports
    unless running as root."""
    cfg = Config(data_dir=str(Path(data_dir).resolve()), listen=default_listen(),
                 local_domains=("localhost",))
    return _finish(cfg)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """A plain dict (TOML/JSON-able) that :func:`config_from_dict` turns back into ``cfg``."""
    def plain(value: Any) -> Any:
        if is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)
                    if f.name not in _NOT_IN_FILE}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return plain(cfg)


def config_from_dict(data: dict[str, Any], source: str = "") -> Config:
    return replace(_finish(_build(Config, data, "")), source=source)


def find_config_path(explicit: str | None) -> str | None:
    """--config, then $MAILYARD_CONFIG, then ./mailyard.toml; None: embedded default."""
    if explicit:
        return explicit
    env = os.environ.get("MAILYARD_CONFIG")
    if env:
        return env
    if os.path.isfile("mailyard.toml"):
        return "mailyard.toml"
    return None


def resolve_config(explicit: str | None) -> Config:
    path = find_config_path(explicit)
    return load_config(path) if path else default_config()
