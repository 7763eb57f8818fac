"""The grammars of SEARCH (RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES),
SORT and THREAD (RFC 5256): search keys, nested with NOT, OR and parentheses under
the depth limit, charsets and RETURN options.

Separate from :mod:`~mailyard.proto.imap.parser` because the search program is the
one recursive grammar of IMAP and three commands share it; each function here reads
with the tokens of :mod:`~mailyard.proto.imap.lexer`.
"""

from __future__ import annotations

from mailyard.proto.imap.commands import Command, Search, SearchKey, Sort, Thread
from mailyard.proto.imap.lexer import ATOM_CHARS, MAX_NUMBER64, ParseError, _Reader

_KEYS_NONE = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD",
                        "RECENT", "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED",
                        "UNSEEN", "UNRECENT"})
_KEYS_STRING = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_KEYS_DATE = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_KEYS_NUMBER = frozenset({"LARGER", "SMALLER", "OLDER", "YOUNGER"})
_KEYS_FLAG = frozenset({"KEYWORD", "UNKEYWORD"})
_CHARSETS = frozenset({"US-ASCII", "UTF-8"})
_SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
                        "DISPLAYFROM", "DISPLAYTO"})
_THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


def _search_returns(r: _Reader) -> tuple[str, ...] | None:
    if r.peek_word() != "RETURN":
        return None
    r.take(ATOM_CHARS)
    r.sp()
    options = r.atom_list()
    for option in options:
        if option not in _SEARCH_RETURN:
            raise ParseError(f"Unknown SEARCH return option {option}")
    r.sp()
    return tuple(options) or ("ALL",)  # RFC 4731 3.1: RETURN () means RETURN (ALL)


def _charset(r: _Reader) -> str:
    charset = r.astring_text().upper()
    if charset not in _CHARSETS:
        raise ParseError("Unsupported charset", "BADCHARSET (US-ASCII UTF-8)", "NO")
    return charset


def _search_program(r: _Reader) -> SearchKey:
    keys = [_search_key(r)]
    while r.peek() == 0x20:
        r.sp()
        keys.append(_search_key(r))
    return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))


def _search(r: _Reader, name: str, uid: bool) -> Command:
    returns = _search_returns(r)
    charset = ""
    if r.peek_word() == "CHARSET":
        r.take(ATOM_CHARS)
        r.sp()
        charset = _charset(r)
        r.sp()
    return Search(_search_program(r), charset, returns, uid)


def _search_key(r: _Reader) -> SearchKey:
    c = r.peek()
    if c == 0x28:
        r.open_paren()
        keys = [_search_key(r)]
        while r.peek() == 0x20:
            r.sp()
            keys.append(_search_key(r))
        r.close_paren()
        return SearchKey("AND", tuple(keys))
    if c in range(0x30, 0x3A) or c == 0x2A or c == 0x24:
        return SearchKey("SEQUENCE", (r.sequence_set(),))
    key = r.word()
    if key in _KEYS_NONE:
        return SearchKey(key)
    r.sp()
    if key in _KEYS_STRING:
        return SearchKey(key, (r.astring_text(),))
    if key in _KEYS_DATE:
        return SearchKey(key, (r.date(),))
    if key in _KEYS_NUMBER:
        return SearchKey(key, (r.number(MAX_NUMBER64),))
    if key in _KEYS_FLAG:
        return SearchKey(key, (r.flag(),))
    if key == "UID":
        return SearchKey(key, (r.sequence_set(),))
    if key == "HEADER":
        field = r.astring_text()
        r.sp()
        return SearchKey(key, (field, r.astring_text()))
    if key == "MODSEQ":
        if r.peek() == 0x22:  # entry name and type (RFC 7162 3.1.5)
            entry = r.text(r.quoted())
            r.sp()
            kind = r.word()
            if kind not in ("PRIV", "SHARED", "ALL"):
                raise ParseError("MODSEQ entry type is priv, shared or all")
            r.sp()
            return SearchKey(key, (r.number(MAX_NUMBER64), entry, kind))
        return SearchKey(key, (r.number(MAX_NUMBER64),))
    if key in ("NOT", "OR"):
        r.depth += 1
        if r.depth > r.ctx.max_depth:
            raise ParseError("Search program too deeply nested", "LIMIT")
        first = _search_key(r)
        if key == "NOT":
            r.depth -= 1
            return SearchKey(key, (first,))
        r.sp()
        second = _search_key(r)
        r.depth -= 1
        return SearchKey(key, (first, second))
    raise ParseError(f"Unknown search key {key}")


def _sort(r: _Reader, name: str, uid: bool) -> Command:
    returns = _search_returns(r)
    r.open_paren()
    criteria: list[str] = []
    while r.peek() != 0x29:
        if criteria:
            r.sp()
        key = r.word()
        if key == "REVERSE":
            r.sp()
            key = "REVERSE " + r.word()
        if key.removeprefix("REVERSE ") not in _SORT_KEYS:
            raise ParseError(f"Unknown sort key {key}")
        criteria.append(key)
    r.close_paren()
    if not criteria:
        raise ParseError("SORT needs a criterion")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Sort(tuple(criteria), charset, _search_program(r), uid, returns)


def _thread(r: _Reader, name: str, uid: bool) -> Command:
    algorithm = r.word()
    if algorithm not in _THREAD_ALGORITHMS:
        raise ParseError(f"Unknown threading algorithm {algorithm}")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Thread(algorithm, charset, _search_program(r), uid)
