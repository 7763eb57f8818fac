"""Mail address rules of the directory: syntax checks, lookup keys, sub-addressing.

Addresses are stored and looked up by a *key*: the local part lower-cased and the
domain lower-cased without a trailing dot.  RFC 5321 2.4 lets the local part be case
sensitive, but every mainstream server folds it, and a mailbox that differs only by
case from another is a trap for users.

Sub-addressing (RFC 5233): ``user+tag@domain`` goes to ``user@domain`` when no entry
matches the full address.
"""

from __future__ import annotations

import re

from mailyard.directory.api import DirectoryError

SUBADDRESS_SEPARATOR = "+"
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3 path (256) less the angle brackets

# RFC 5322 3.2.3 atext, plus any non-ASCII character (RFC 6531 UTF-8 local parts).
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Characters that are legal in a local part but would be unsafe as a mailbox directory.
_UNSAFE_FOR_MAILBOX = set("/\\\0")


def domain_key(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def address_key(address: str) -> str:
    """'Alice@Example.TEST.' -> 'alice@example.test' (no syntax check)."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep:
        return address.strip().lower()
    return f"{local.lower()}@{domain_key(domain)}"


def split_key(key: str) -> tuple[str, str]:
    local, _, domain = key.rpartition("@")
    return local, domain


def base_address(key: str) -> str:
    """'user+tag@domain' -> 'user@domain' (RFC 5233 sub-addressing); unchanged otherwise."""
    local, domain = split_key(key)
    base, sep, _tag = local.partition(SUBADDRESS_SEPARATOR)
    if not sep or not base:
        return key
    return f"{base}@{domain}"


def check_domain(domain: str) -> str:
    """Return the domain's key, or raise DirectoryError saying what is wrong with it."""
    d = domain_key(domain)
    if not d:
        raise DirectoryError("bad domain: empty", code="invalid_domain")
    if not d.isascii():
        raise DirectoryError(f"bad domain {domain!r}: use the ASCII (xn--) form of the name",
                             code="invalid_domain")
    if len(d) > MAX_DOMAIN:
        raise DirectoryError(f"bad domain {domain!r}: longer than {MAX_DOMAIN} characters",
                             code="invalid_domain")
    labels = d.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise DirectoryError(
                f"bad domain {domain!r}: label {label!r} must be letters, digits and '-' "
                "(1-63 characters, not starting or ending with '-')", code="invalid_domain")
    return d


def check_address(address: str, *, mailbox: bool = False) -> str:
    """Return the address's key, or raise DirectoryError.  ``mailbox=True`` also refuses
    characters that cannot name a mailbox directory, and the sub-address separator (a
    user 'a+b' could never receive mail sent to 'a+b+tag' the way its owner expects)."""
    text = address.strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local:
        raise DirectoryError(f"bad address {address!r}: expected local-part@domain",
                             code="invalid_address")
    if len(text) > MAX_ADDRESS:
        raise DirectoryError(f"bad address {address!r}: longer than {MAX_ADDRESS} characters",
                             code="invalid_address")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise DirectoryError(
            f"bad address {address!r}: local part longer than {MAX_LOCAL_PART} octets",
            code="invalid_address")
    if not _DOT_ATOM.fullmatch(local):
        raise DirectoryError(
            f"bad address {address!r}: the local part must be a dot-atom (RFC 5322 3.2.3), "
            "without spaces, quotes or leading, trailing or double dots",
            code="invalid_address")
    if mailbox:
        if _UNSAFE_FOR_MAILBOX & set(local):
            raise DirectoryError(f"bad address {address!r}: '/' and '\\' are not allowed "
                                 "in a mailbox name", code="invalid_address")
        if SUBADDRESS_SEPARATOR in local:
            raise DirectoryError(
                f"bad address {address!r}: '{SUBADDRESS_SEPARATOR}' is the sub-address "
                "separator (user+tag@domain reaches user@domain automatically)",
                code="invalid_address")
    return f"{local.lower()}@{check_domain(domain)}"


def check_target(target: str) -> str:
    """An alias target: a full address (local or external, local part case kept) or
    '@domain' (only meaningful as the target of a catch-all: rewrite to that domain)."""
    text = target.strip()
    if text.startswith("@"):
        return "@" + check_domain(text[1:])
    check_address(text)
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain_key(domain)}"
