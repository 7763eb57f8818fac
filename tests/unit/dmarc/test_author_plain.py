"""The one-match reading of a plain From mailbox (RFC 5322 3.4 name-addr / addr-spec
with dot-atoms) gives the Author Domain (RFC 7489 3.1, 6.6.1) the standard library's
address parser gives, for every value it takes."""

from __future__ import annotations

import itertools
import re

import pytest

from mailyard.dmarc import author
from mailyard.dmarc.author import FromProblem, author_domains

NAMES = ["", "Alice", "Load Generator", '"Smith, J."', '"A. B"', '""', "X1 Y2"]
LOCALS = ["a", "alice.smith", "a+tag", "x_y-z", "1"]
DOMAINS = ["example.com", "Example.COM", "mail.ex-ample.co.uk", "a", "b" * 64 + ".example",
           "x..y", "-x.example"]
AROUND = [("", ""), (" ", "\r\n"), ("\t", " "), (" ", " \r\n ")]


def stdlib_only(value: str) -> tuple[str, ...] | FromProblem:
    saved = author._PLAIN_MAILBOX
    author._PLAIN_MAILBOX = re.compile(r"(?!)")  # never matches: the parser path
    try:
        return author_domains([value])
    finally:
        author._PLAIN_MAILBOX = saved


def values() -> list[str]:
    out = []
    for name, local, domain, (before, after) in itertools.product(NAMES, LOCALS, DOMAINS,
                                                                  AROUND):
        addr = f"{local}@{domain}"
        out.append(f"{before}{name} <{addr}>{after}" if name else f"{before}<{addr}>{after}")
        if not name:
            out.append(f"{before}{addr}{after}")
    return out


@pytest.mark.parametrize("value", values())
def test_same_author_domain_as_the_address_parser(value: str) -> None:
    assert author_domains([value]) == stdlib_only(value)


def test_the_plain_forms_take_the_short_path() -> None:
    taken = [v for v in values() if author._PLAIN_MAILBOX.fullmatch(author._FOLD.sub(" ", v))]
    assert len(taken) > len(values()) // 2
    assert author_domains([" Load Generator <lg@Source.Example>\r\n"]) == ("source.example",)


def test_other_forms_still_go_to_the_parser() -> None:
    # RFC 5322 3.4: a mailbox-list, a group, comments, quoted local parts.
    assert author_domains(["a@one.example, b@two.example"]) == ("one.example", "two.example")
    assert author_domains(["Team: a@one.example;"]) == ("one.example",)
    assert author_domains(['"odd local"@x.example (comment)']) == ("x.example",)
    assert author_domains(["nobody"]) is FromProblem.NO_DOMAIN
