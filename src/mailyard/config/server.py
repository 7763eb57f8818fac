"""The process-wide sections: the listening addresses (``[listen]``), logging
(``[log]``) and the metrics endpoint (``[metrics]``)."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError, parse_hostport
from mailyard.config.enums import ListenerKind, LogFormat, LogLevel


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
