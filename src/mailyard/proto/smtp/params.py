"""The ESMTP parameters Mailyard accepts on MAIL and RCPT.

MAIL: SIZE (RFC 1870), BODY (RFC 6152, RFC 3030 3), SMTPUTF8 (RFC 6531 3.4), RET and
ENVID (RFC 3461 4.3, 4.4), AUTH (RFC 4954 5; accepted and ignored).
RCPT: NOTIFY and ORCPT (RFC 3461 4.1, 4.2).
Anything else is 555 5.5.4 (RFC 5321 4.1.1.11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailyard.envelope import DsnRecipient
from mailyard.proto.smtp.address import ParameterError, xtext_decode
from mailyard.proto.smtp.replies import REPLY_PARAM_NOT_IMPLEMENTED, REPLY_SYNTAX

__all__ = ["MailParameters", "mail_parameters", "rcpt_parameters"]

BODY_TYPES = ("7BIT", "8BITMIME", "BINARYMIME")
MAX_ENVID = 100  # RFC 3461 4.4
MAX_ORCPT = 500  # RFC 3461 4.2
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ADDR_TYPE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")


@dataclass(frozen=True, slots=True)
class MailParameters:
    size: int | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    ret: str = ""
    envid: str = ""


def _syntax(text: str) -> ParameterError:
    return ParameterError(REPLY_SYNTAX.with_text(text))


def _unknown(key: str) -> ParameterError:
    return ParameterError(REPLY_PARAM_NOT_IMPLEMENTED.with_text(f"Unsupported parameter {key}"))


def _flag(key: str, value: str | None) -> None:
    if value is not None:
        raise _syntax(f"{key} takes no value")


def mail_parameters(params: dict[str, str | None]) -> MailParameters:
    size: int | None = None
    body, smtputf8, ret, envid = "7BIT", False, "", ""
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                raise _syntax("SIZE needs a number (RFC 1870)")
            size = int(value)
        elif key == "BODY":
            if value is None or value.upper() not in BODY_TYPES:
                raise _syntax("BODY must be 7BIT, 8BITMIME or BINARYMIME")
            body = value.upper()
        elif key == "SMTPUTF8":
            _flag(key, value)
            smtputf8 = True
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise _syntax("RET must be FULL or HDRS (RFC 3461 4.3)")
            ret = value.upper()
        elif key == "ENVID":
            if value is None:
                raise _syntax("ENVID needs a value")
            envid = xtext_decode(value)
            if len(envid) > MAX_ENVID:
                raise _syntax("ENVID too long (RFC 3461 4.4)")
        elif key == "AUTH":
            if value is None:
                raise _syntax("AUTH= needs a value")
        else:
            raise _unknown(key)
    return MailParameters(size, body, smtputf8, ret, envid)


def _notify(value: str | None) -> tuple[str, ...]:
    items = tuple(v.upper() for v in (value or "").split(","))
    if items == ("NEVER",):
        return items
    if not items or any(v not in _NOTIFY_VALUES for v in items) or len(set(items)) != len(items):
        raise _syntax("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
    return items


def _orcpt(value: str | None) -> str:
    if value is None or len(value) > MAX_ORCPT:
        raise _syntax("ORCPT needs addr-type;address")
    addr_type, sep, encoded = value.partition(";")
    if not sep or not _ADDR_TYPE_RE.fullmatch(addr_type) or not encoded:
        raise _syntax("ORCPT needs addr-type;address (RFC 3461 4.2)")
    return f"{addr_type};{xtext_decode(encoded)}"


def rcpt_parameters(params: dict[str, str | None]) -> DsnRecipient:
    notify: tuple[str, ...] = ()
    orcpt = ""
    for key, value in params.items():
        if key == "NOTIFY":
            notify = _notify(value)
        elif key == "ORCPT":
            orcpt = _orcpt(value)
        else:
            raise _unknown(key)
    return DsnRecipient(notify=notify, orcpt=orcpt)
