"""Login credentials (``[auth]``): how passwords are stored and how short they may be."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError

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
