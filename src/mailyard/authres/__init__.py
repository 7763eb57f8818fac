"""Authentication-Results (RFC 8601): the one field we add to say what the checks
found (:mod:`~mailyard.authres.format`), and reading the fields incoming mail carries
(:mod:`~mailyard.authres.parse`), so that those claiming our authserv-id are removed
(:mod:`~mailyard.authres.strip`, RFC 8601 5)."""

from __future__ import annotations

from mailyard.authres.format import (
    FIELD_NAME,
    arc_result,
    dkim_results,
    dmarc_result,
    format_field,
    format_value,
    spf_result,
)
from mailyard.authres.model import AuthResults, MethodResult, ResultProperty
from mailyard.authres.parse import ParseError, authserv_id_of, claims_authserv_id, parse_value
from mailyard.authres.strip import strip_claimed

__all__ = [
    "FIELD_NAME",
    "AuthResults",
    "MethodResult",
    "ParseError",
    "ResultProperty",
    "arc_result",
    "authserv_id_of",
    "claims_authserv_id",
    "dkim_results",
    "dmarc_result",
    "format_field",
    "format_value",
    "parse_value",
    "spf_result",
    "strip_claimed",
]
