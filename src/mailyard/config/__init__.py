"""Typed, frozen configuration loaded from TOML.

One :class:`Config` object is built at start-up and passed explicitly to every
component; nothing reads a module global.  Every key is declared once, as a dataclass
field of its section's module in this package (``smtpd.py``, ``delivery.py`` ...);
the loader (``_parse.py``) walks the dataclasses, so an unknown key or a value of the
wrong type is reported with its full dotted name (``listen.smtp[0]``) instead of a
traceback.  ``docs/configuration.md`` documents every key.  Everything is importable
from here.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from mailyard.config._parse import _NOT_IN_FILE, ConfigError, _build, _Section, parse_hostport
from mailyard.config.auth import SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, AuthConfig
from mailyard.config.bulk import BulkConfig
from mailyard.config.delivery import DeliveryConfig, DeliveryPool, TransportRoute
from mailyard.config.enums import (
    BareLineEndings,
    CpuAffinity,
    ListenerKind,
    LogFormat,
    LogLevel,
    TlsLevel,
    TransportMode,
)
from mailyard.config.http import HttpConfig
from mailyard.config.mailbox import ImapConfig, MailboxConfig, Pop3Config
from mailyard.config.senderauth import (
    AuthResultsConfig,
    DkimConfig,
    DmarcConfig,
    DmarcQuarantine,
    ForwardingConfig,
    SpfAction,
    SpfConfig,
)
from mailyard.config.sending import SendingConfig
from mailyard.config.server import ListenConfig, LogConfig, MetricsConfig
from mailyard.config.smtpd import SmtpdConfig
from mailyard.config.tls import DaneConfig, MtaStsConfig, TlsConfig, TlsRptConfig

__all__ = [
    "AuthConfig",
    "BareLineEndings",
    "CpuAffinity",
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
    "AuthResultsConfig",
    "DmarcConfig",
    "DmarcQuarantine",
    "ForwardingConfig",
    "SCRAM_ITERATIONS_MAX",
    "SCRAM_ITERATIONS_MIN",
    "config_from_dict",
    "config_to_dict",
    "parse_config",
    "resolve_config",
]


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
