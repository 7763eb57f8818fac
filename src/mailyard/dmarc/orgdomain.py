"""Organizational Domains (RFC 7489 3.2) from the Public Suffix List.

The Organizational Domain of a name is its public suffix plus one more label:
``mail.example.co.uk`` -> ``example.co.uk``.  A name that is itself a public suffix
(``co.uk``) has no label to add and is its own Organizational Domain.  The list comes
from the ``publicsuffixlist`` package: the copy it ships by default, or a file named
by ``dmarc.public_suffix_list`` (for example Debian's
``/usr/share/publicsuffix/public_suffix_list.dat`` from the ``publicsuffix`` package,
or a copy an operator refreshes from publicsuffix.org), so the list can be updated
without a new release.  Both the ICANN and the private sections are used, as 3.2 asks
for "a public suffix list" without exception.

Loading the list takes a noticeable fraction of a second, so one
:class:`PublicSuffixes` is built per process (:func:`load_public_suffixes` caches it
per path) and lookups are then dictionary probes.
"""

from __future__ import annotations

import functools
import os

from publicsuffixlist import PublicSuffixList

__all__ = ["PublicSuffixes", "load_public_suffixes"]


class PublicSuffixes:
    """A Public Suffix List and the Organizational Domain lookups over it."""

    def __init__(self, psl: PublicSuffixList, remembered: int = 4096) -> None:
        self._psl = psl
        self._remembered = remembered
        self._orgs: dict[str, str] = {}  # domain -> Organizational Domain, bounded

    @classmethod
    def from_text(cls, text: str) -> PublicSuffixes:
        """A list given as the text of a ``public_suffix_list.dat`` (tests, tools)."""
        return cls(PublicSuffixList(text.splitlines()))

    def public_suffix(self, domain: str) -> str:
        """The longest public suffix of ``domain`` (an unlisted TLD counts as one)."""
        name = domain.lower().rstrip(".")
        suffix = self._psl.publicsuffix(name)
        return suffix if suffix is not None else name

    def organizational_domain(self, domain: str) -> str:
        """RFC 7489 3.2: the public suffix plus the label to its left.  Remembered per
        name (the list does not change under a loaded instance; senders repeat)."""
        org = self._orgs.get(domain)
        if org is None:
            name = domain.lower().rstrip(".")
            org = self._psl.privatesuffix(name)
            if org is None:
                org = name
            if len(self._orgs) >= self._remembered:
                self._orgs.clear()
            self._orgs[domain] = org
        return org


@functools.cache
def load_public_suffixes(path: str = "") -> PublicSuffixes:
    """The list shipped with ``publicsuffixlist`` (``path`` empty) or the file at
    ``path``, loaded once per process.  Raises OSError when the file cannot be read."""
    if not path:
        return PublicSuffixes(PublicSuffixList())
    with open(os.fspath(path), encoding="utf-8") as source:
        return PublicSuffixes(PublicSuffixList(source))
