"""An in-memory resolver for tests and for fixed setups.

Zones are a dict of owner name to record types to values, the same shape the test DNS
server (``tests/support/dnsserver.py``) serves::

    {"example.org": {"MX": ["10 mx.example.org"], "TXT": ["v=spf1 -all"]},
     "mx.example.org": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
     "alias.example.org": {"CNAME": ["mx.example.org"]},
     "nomail.example": {"MX": ["0 ."]}}

MX values may also be ``(preference, host)`` pairs.  A name that is missing (and has
nothing below it) is NXDOMAIN; a name without the asked type is NODATA.  CNAMEs are
followed as a recursive resolver would.  :meth:`StaticResolver.fail` makes a name
answer SERVFAIL or time out, and ``queries`` records every upstream question, so
tests can check what a cache passed through.  ``authenticated=True`` makes every answer
carry the AD bit (a validating resolver's signed zone), except for names passed to
:meth:`StaticResolver.unsigned`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from mailyard.dns.api import SUPPORTED_TYPES, AnswerKind, BaseResolver, DnsTemporaryError, RecordSet

_MAX_CHAIN = 8
Zones = Mapping[str, Mapping[str, Any]]


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _value_text(rdtype: str, value: Any) -> str:
    if rdtype == "MX":
        if isinstance(value, (tuple, list)):
            pref, host = value
        else:
            pref, _, host = str(value).partition(" ")
        return f"{int(pref)} {_norm(str(host)) or '.'}"
    if rdtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(str(value)))
    if rdtype in ("CNAME", "PTR"):
        return _norm(str(value))
    return str(value)


class StaticResolver(BaseResolver):
    def __init__(self, zones: Zones | None = None, *, ttl: int = 300,
                 negative_ttl: int = 60, authenticated: bool = False) -> None:
        self.ttl = ttl
        self.authenticated = authenticated
        self._unsigned: set[str] = set()
        self.negative_ttl = negative_ttl
        self._names: dict[str, dict[str, tuple[str, ...]]] = {}
        self._failures: dict[str, str] = {}
        self.queries: list[tuple[str, str]] = []
        for name, types in (zones or {}).items():
            for rdtype, values in types.items():
                self.set(name, rdtype, values if isinstance(values, (list, tuple)) else [values])

    def set(self, name: str, rdtype: str, values: Iterable[Any]) -> None:
        """Replace the records of one type at ``name`` (an empty list removes them)."""
        rdtype = rdtype.upper()
        if rdtype not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        records = tuple(_value_text(rdtype, v) for v in values)
        self._names.setdefault(_norm(name), {})[rdtype] = records

    def fail(self, name: str, how: str = "servfail") -> None:
        """Make every query for ``name`` fail: ``servfail`` or ``timeout``."""
        if how not in ("servfail", "timeout"):
            raise ValueError("how must be 'servfail' or 'timeout'")
        self._failures[_norm(name)] = how

    def unsigned(self, name: str) -> None:
        """Answers for ``name`` come without the AD bit."""
        self._unsigned.add(_norm(name))

    def heal(self, name: str | None = None) -> None:
        if name is None:
            self._failures.clear()
        else:
            self._failures.pop(_norm(name), None)

    def _exists(self, name: str) -> bool:
        suffix = "." + name
        return name in self._names or any(n.endswith(suffix) for n in self._names)

    async def query(self, name: str, rdtype: str) -> RecordSet:
        qname = _norm(name)
        self.queries.append((qname, rdtype))
        current = qname
        for _ in range(_MAX_CHAIN):
            failure = self._failures.get(current)
            if failure is not None:
                reason = "timeout" if failure == "timeout" else "SERVFAIL"
                raise DnsTemporaryError(qname, rdtype, reason)
            types = self._names.get(current, {})
            if types.get(rdtype):
                return RecordSet(qname, rdtype, AnswerKind.ANSWER, types[rdtype], self.ttl, current,
                                 self._signed(qname, current))
            cname = types.get("CNAME")
            if not cname or rdtype == "CNAME":
                break
            current = cname[0]
        else:
            raise DnsTemporaryError(qname, rdtype, "CNAME chain too long")
        kind = AnswerKind.NODATA if self._exists(current) else AnswerKind.NXDOMAIN
        return RecordSet(qname, rdtype, kind, (), self.negative_ttl, current,
                         self._signed(qname, current))

    def _signed(self, *names: str) -> bool:
        return self.authenticated and not any(n in self._unsigned for n in names)
