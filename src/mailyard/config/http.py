"""The HTTP service (``[http]``): its public URL, workers and request limits."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError


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
