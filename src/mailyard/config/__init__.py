"""Typed, frozen configuration loaded from TOML.

One :class:`Config` object is built at start-up and passed explicitly to every
component; nothing reads a module global.  Every key is declared once, here, as a
dataclass field; the loader walks the dataclasses, so an unknown key or a value of the
wrong type is reported with its full dotted name (``listen.smtp[0]``) instead of a
traceback.  ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

__all__ = [
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "ListenConfig",
    "LogConfig",
    "MetricsConfig",
    "SmtpdConfig",
    "TlsConfig",
    "TransportRoute",
    "default_config",
    "find_config_path",
    "load_config",
    "parse_hostport",
]


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

    def validate(self, key: str) -> None:
        for name in ("smtp", "submission", "submissions"):
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
    max_connections_per_ip: int = 50
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    min_data_rate: int = 1024
    max_auth_failures: int = 3
    max_errors: int = 20
    max_received_headers: int = 50
    bare_line_endings: str = "reject"
    vrfy: bool = False
    min_free_disk: int = 104_857_600
    workers: int = 0
    banner: str = ""
    max_line_length: int = 1000
    data_rate_grace: float = 30.0
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
            raise ConfigError(f"{key}.max_line_length", "must be at least 1000 (RFC 5321 4.5.3.1.6)")
        if self.data_rate_grace < 0:
            raise ConfigError(f"{key}.data_rate_grace", "must not be negative")
        if self.max_recipients < 100:
            raise ConfigError(f"{key}.max_recipients", "must be at least 100 (RFC 5321 4.5.3.1.8)")
        if self.bare_line_endings not in ("reject", "normalize"):
            raise ConfigError(f"{key}.bare_line_endings", "must be 'reject' or 'normalize'")
        for name in ("max_message_size", "max_connections", "max_connections_per_ip",
                     "max_auth_failures", "max_errors", "max_received_headers"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        for name in ("command_timeout", "data_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        for name in ("min_data_rate", "min_free_disk", "workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative")


@dataclass(frozen=True)
class TransportRoute:
    """Where mail for one domain goes instead of its MX hosts."""

    domain: str = ""
    nexthop: str = ""
    tls: str = "may"
    mode: str = "store-and-forward"

    def validate(self, key: str) -> None:
        if not self.domain:
            raise ConfigError(f"{key}.domain", "required")
        if self.nexthop:
            try:
                parse_hostport(self.nexthop, 25)
            except ValueError as exc:
                raise ConfigError(f"{key}.nexthop", str(exc)) from None
        if self.tls not in ("none", "may", "require"):
            raise ConfigError(f"{key}.tls", "must be 'none', 'may' or 'require'")
        if self.mode not in ("store-and-forward", "end-to-end"):
            raise ConfigError(f"{key}.mode", "must be 'store-and-forward' or 'end-to-end'")


@dataclass(frozen=True)
class DeliveryConfig:
    relayhost: str = ""
    relayhost_username: str = ""
    relayhost_password: str = ""
    relayhost_tls: str = "may"
    smtp_port: int = 25
    dns_servers: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    tls: str = "may"
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
        for name in ("tls", "relayhost_tls"):
            if getattr(self, name) not in ("none", "may", "require"):
                raise ConfigError(f"{key}.{name}", "must be 'none', 'may' or 'require'")
        for name in ("max_concurrency", "max_per_destination", "max_messages_per_connection",
                     "active_window", "max_lifetime"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        if not self.retry_schedule or any(s <= 0 for s in self.retry_schedule):
            raise ConfigError(f"{key}.retry_schedule", "must be a non-empty list of positive seconds")
        for i, route in enumerate(self.transports):
            route.validate(f"{key}.transports[{i}]")


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"
    level: str = "info"
    file: str = ""

    def validate(self, key: str) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"{key}.format", "must be 'text' or 'json'")
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{key}.level", "must be debug, info, warning or error")


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
class Config:
    hostname: str = ""
    data_dir: str = "./mailyard-data"
    local_domains: tuple[str, ...] = ()
    relay_domains: tuple[str, ...] = ()
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    smtpd: SmtpdConfig = field(default_factory=SmtpdConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Where this object came from (a file path, or "" for the embedded default).
    source: str = ""

    def validate(self, key: str = "") -> None:
        if not self.hostname or any(c in self.hostname for c in " \t\r\n"):
            raise ConfigError("hostname", "must be a host name without spaces")
        for i, dom in enumerate(self.local_domains):
            if not dom or "@" in dom or " " in dom:
                raise ConfigError(f"local_domains[{i}]", f"not a domain: {dom!r}")
        for i, dom in enumerate(self.relay_domains):
            if not dom or "@" in dom or " " in dom:
                raise ConfigError(f"relay_domains[{i}]", f"not a domain: {dom!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if is_dataclass(value):
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


_NOT_IN_FILE = {"source"}


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        return _build(tp, value, key)
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
            raise ConfigError(key, "unknown key")
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
    cfg = replace(cfg, **updates)
    cfg.validate()
    return cfg


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source}: not valid TOML: {exc}") from None
    cfg = _build(Config, data, "")
    return _finish(replace(cfg, source=source))


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror}") from None
    cfg = parse_config(text, str(p))
    # A relative data_dir is relative to the config file's directory.
    if not os.path.isabs(cfg.data_dir):
        cfg = replace(cfg, data_dir=str((p.parent / cfg.data_dir).resolve()))
    return cfg


def default_config(data_dir: str = "./mailyard-data") -> Config:
    """The embedded default: everything under ./mailyard-data, unprivileged ports
    unless running as root."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    ports = (25, 587, 465) if root else (2525, 5587, 5465)
    listen = ListenConfig(
        smtp=(f"127.0.0.1:{ports[0]}",),
        submission=(f"127.0.0.1:{ports[1]}",),
        submissions=(f"127.0.0.1:{ports[2]}",),
    )
    cfg = Config(data_dir=str(Path(data_dir).resolve()), listen=listen,
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
