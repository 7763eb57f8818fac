"""What every section shares: the error naming the dotted key, host:port parsing, and
the loader that walks a section's dataclass fields, converting and type-checking each
value so an unknown key or a wrong type never surfaces as a traceback."""

from __future__ import annotations

import difflib
import enum
import types
from dataclasses import fields, is_dataclass
from typing import Any, Protocol, get_args, get_origin, get_type_hints, runtime_checkable

from mailyard.config.enums import _allowed


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
