"""The enumerated values of the configuration: the loader converts a string to one of
these once, and says which values are allowed when it is none of them."""

from __future__ import annotations

import enum

from mailyard.proto.smtp.client import TLS_LEVEL_ALIASES


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


class CpuAffinity(enum.StrEnum):
    AUTO = "auto"  # each SMTP worker on a CPU of its own, when there are enough
    NONE = "none"  # the kernel's scheduler places every worker


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
