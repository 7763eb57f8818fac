"""The parts of an Authentication-Results field (RFC 8601 2.2), as plain values.

The same values are built by :mod:`~mailyard.authres.format` (our field) and produced
by :mod:`~mailyard.authres.parse` (fields found in incoming mail).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AuthResults", "MethodResult", "ResultProperty"]


@dataclass(frozen=True)
class ResultProperty:
    """``ptype.property=value`` (2.3): ``smtp.mailfrom=example.net``, ``header.d=example.com``."""

    ptype: str
    name: str
    value: str


@dataclass(frozen=True)
class MethodResult:
    """One ``resinfo`` (2.2): ``method[/version]=result [reason=...] [comment] props``."""

    method: str
    result: str
    properties: tuple[ResultProperty, ...] = ()
    reason: str = ""
    comment: str = ""  # a comment right after the result, e.g. "(cram-md5)"
    version: str = ""  # the method version (2.2 "method-version"), "" when not given

    def prop(self, ptype: str, name: str) -> str | None:
        """The value of the first property ``ptype.name``, matched case-insensitively."""
        for p in self.properties:
            if p.ptype.lower() == ptype.lower() and p.name.lower() == name.lower():
                return p.value
        return None


@dataclass(frozen=True)
class AuthResults:
    """One field: who made the checks (``authserv_id``), and their results.  No results
    is the ``none`` form (2.2 "no-result")."""

    authserv_id: str
    results: tuple[MethodResult, ...] = ()
    version: str = ""
