"""MTA-STS (RFC 8461) as pure functions: the ``_mta-sts`` TXT record, the policy file,
and which MX hosts a policy allows.

Everything here is a value in, a value out: a record or policy that does not parse is
an :class:`Invalid` result naming what is wrong, never an exception, so the caller
decides (a broken TXT record means "no policy", a broken policy file means "keep the
cached one").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "MAX_AGE_CAP",
    "Invalid",
    "Mode",
    "Policy",
    "StsRecord",
    "host_matches",
    "parse_policy",
    "parse_record",
    "policy_text",
    "record_text",
    "valid_mx_pattern",
]

#: RFC 8461 3.2: max_age is at most 31557600 seconds (about a year).
MAX_AGE_CAP = 31_557_600
#: RFC 8461 3.3: the policy body is at most 64 KiB.
MAX_POLICY_SIZE = 65_536

_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")  # RFC 8461 3.1 sts-id
_FIELD = re.compile(r"[A-Za-z0-9_]{1,32}\Z")


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class Invalid:
    """Why a record or policy was refused."""

    reason: str


@dataclass(frozen=True)
class StsRecord:
    """The ``_mta-sts.<domain>`` TXT record: the policy's current id."""

    id: str


@dataclass(frozen=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]  # patterns, lower case: "mail.example.com", "*.example.net"
    max_age: int  # seconds, capped at MAX_AGE_CAP
    text: str = ""  # as fetched (TLS-RPT reports it line by line)

    def allows(self, host: str) -> bool:
        """RFC 8461 4.1: ``host`` (an MX host name) matches one of the mx patterns."""
        return any(host_matches(pattern, host) for pattern in self.mx)

    def lines(self) -> tuple[str, ...]:
        """The policy as TLS-RPT's ``policy-string`` (RFC 8460 4.4): one entry a line."""
        return tuple(line.strip() for line in self.text.splitlines() if line.strip())


def parse_record(texts: list[str]) -> StsRecord | Invalid | None:
    """RFC 8461 3.1: among the TXT records at ``_mta-sts.<domain>``, the one that starts
    with ``v=STSv1``.  None: no such record (no policy); more than one: invalid (the
    RFC says to treat it as if none were published, and so does the caller)."""
    candidates = [t for t in texts if t.startswith("v=STSv1")]
    if not candidates:
        return None
    if len(candidates) > 1:
        return Invalid("more than one v=STSv1 TXT record")
    fields: dict[str, str] = {}
    for part in candidates[0].split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not _FIELD.match(key):
            return Invalid(f"malformed field {part!r}")
        fields.setdefault(key, value)
    if fields.get("v") != "STSv1":
        return Invalid("v=STSv1 must come first")
    sts_id = fields.get("id", "")
    if not _ID.match(sts_id):
        return Invalid("id must be 1 to 32 letters and digits")
    return StsRecord(sts_id)


def parse_policy(text: str) -> Policy | Invalid:
    """RFC 8461 3.2: ``key: value`` lines (CRLF or LF); version, mode and max_age once
    each, mx any number of times (at least once unless mode is none); unknown keys are
    ignored.  max_age above :data:`MAX_AGE_CAP` is capped."""
    values: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _FIELD.match(key):
            return Invalid(f"malformed line {line[:80]!r}")
        values.setdefault(key, []).append(value)
    for key in ("version", "mode", "max_age"):
        if len(values.get(key, [])) != 1:
            return Invalid(f"'{key}' must appear exactly once")
    if values["version"][0] != "STSv1":
        return Invalid(f"unknown version {values['version'][0][:20]!r}")
    try:
        mode = Mode(values["mode"][0])
    except ValueError:
        return Invalid(f"unknown mode {values['mode'][0][:20]!r}")
    age = values["max_age"][0]
    if not age.isdigit() or len(age) > 10:
        return Invalid("max_age must be a number of seconds (up to 10 digits)")
    patterns = []
    for pattern in values.get("mx", []):
        pattern = pattern.lower().rstrip(".")
        if not valid_mx_pattern(pattern):
            return Invalid(f"bad mx pattern {pattern[:80]!r}")
        patterns.append(pattern)
    if not patterns and mode is not Mode.NONE:
        return Invalid("no mx patterns")
    return Policy(mode, tuple(patterns), min(int(age), MAX_AGE_CAP), text)


def valid_mx_pattern(pattern: str) -> bool:
    """An mx value of a policy: a host name, or ``*.`` and a host name."""
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    return bool(name) and all(
        0 < len(label) <= 63 and re.fullmatch(r"[a-z0-9_-]+", label) for label in labels)


def host_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: a pattern matches the host exactly, or ``*.`` stands for exactly
    one leftmost label (``*.example.com`` matches ``mx.example.com``, not
    ``a.b.example.com`` nor ``example.com``)."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def policy_text(mode: Mode, mx: tuple[str, ...], max_age: int) -> str:
    """The policy file a receiving domain publishes (CRLF line ends, RFC 8461 3.2)."""
    lines = ["version: STSv1", f"mode: {mode.value}", *(f"mx: {m}" for m in mx),
             f"max_age: {max_age}"]
    return "".join(line + "\r\n" for line in lines)


def record_text(policy_id: str) -> str:
    """The ``_mta-sts`` TXT record announcing a policy with ``policy_id``."""
    return f"v=STSv1; id={policy_id}"
