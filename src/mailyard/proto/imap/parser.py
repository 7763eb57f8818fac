"""The IMAP command grammar (RFC 9051 9, RFC 3501 9) into typed commands.

The connection core (:mod:`mailyard.proto.imap.server`) frames a command as
*segments*: the text of each line (CRLF removed) alternating with the octets of the
literal announced at that line's end (``{n}``, ``{n+}`` of RFC 7888, ``~{n}`` of
RFC 3516)::

    [b'A1 LOGIN {5}', b'alice', b' {6}', b'secret', b'']

:func:`parse_command` turns a complete command into a :mod:`commands` value or raises
:class:`ParseError` (the tagged BAD/NO to send, with its response code).
:func:`append_head` recognises an APPEND whose message literal is about to arrive, so
the core can stream it instead of buffering it.

Limits (nesting, sequence-set size) come in a :class:`ParseContext` and fail with the
``[LIMIT]`` code (RFC 5530 3).

This module holds the dispatch (command name to grammar) and the grammars of the
commands outside the selected state (LOGIN, AUTHENTICATE, ENABLE, ID, SELECT, CREATE,
RENAME, LIST, STATUS, ...).  The tokens are in :mod:`~mailyard.proto.imap.lexer`; the
larger grammars in :mod:`~mailyard.proto.imap.parser_fetch` (FETCH, STORE, COPY, MOVE)
and :mod:`~mailyard.proto.imap.parser_search` (SEARCH, SORT, THREAD).
"""

from __future__ import annotations

from collections.abc import Callable

from mailyard.proto.imap.commands import (
    Append,
    Authenticate,
    Command,
    Create,
    Enable,
    GetQuota,
    GetQuotaRoot,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    Qresync,
    Rename,
    Select,
    Simple,
    Status,
)
from mailyard.proto.imap.lexer import (
    ATOM_CHARS,
    LITERAL_AT_END,
    MAX_NUMBER64,
    Incomplete,
    ParseContext,
    ParseError,
    _Reader,
    decode_base64,
    parse_tag,
)
from mailyard.proto.imap.parser_fetch import _copy_move, _fetch, _store, _uid_expunge
from mailyard.proto.imap.parser_search import _search, _sort, _thread

__all__ = ["LITERAL_AT_END", "Incomplete", "ParseContext", "ParseError", "append_head",
           "decode_base64", "parse_command", "parse_tag"]

MAX_ID_PAIRS = 30  # RFC 2971 3.3

# --- commands ---------------------------------------------------------------------------

_SIMPLE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE",
                     "UNSELECT", "IDLE", "NAMESPACE"})
_UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT",
                           "THREAD"})


def parse_command(segments: list[bytes], ctx: ParseContext) -> tuple[str, Command]:
    """Parse a complete command; returns ``(tag, command)``.  Raises :class:`ParseError`
    (the tag, if any was valid, is then ``parse_tag(segments[0])``)."""
    r = _Reader(segments, ctx)
    tag = parse_tag(segments[0])
    if tag is None:
        raise ParseError("Missing or invalid tag")
    r.pos = len(tag)
    r.sp()
    name = r.word()
    uid = False
    if name == "UID":
        r.sp()
        name = r.word()
        if name not in _UID_COMMANDS:
            raise ParseError(f"UID {name} is not a command")
        uid = True
    if name in _SIMPLE or (name == "EXPUNGE" and not uid):
        r.end()
        return tag, Simple(name)
    parse = _PARSERS.get(name)
    if parse is None:
        raise ParseError("Unknown command")
    r.sp()
    command = parse(r, name, uid)
    r.end()
    return tag, command


def command_name(line: bytes) -> str:
    """The command name of a first line, upper case ("" if none): for framing
    decisions before the command is complete (APPEND, AUTHENTICATE)."""
    parts = line.split(b" ", 3)
    if len(parts) < 2:
        return ""
    name = parts[1].upper()
    if name == b"UID" and len(parts) > 2:
        name = parts[2].upper()
    return name.decode("ascii", "replace")


def append_head(segments: list[bytes], ctx: ParseContext) -> Append | None:
    """If the last segment (a line) ends with APPEND's *message* literal, the command's
    head; None if that literal is an earlier argument (a mailbox name).  Raises
    :class:`ParseError` for a malformed head."""
    r = _Reader(segments, ctx)
    tag = parse_tag(segments[0])
    if tag is None:
        raise ParseError("Missing or invalid tag")
    r.pos = len(tag)
    r.sp()
    if r.word() != "APPEND":
        return None
    r.sp()
    try:
        mailbox = r.mailbox()
    except Incomplete:
        return None
    r.sp()
    flags: tuple[str, ...] = ()
    date = None
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if r.peek_word() == "UTF8":
        raise ParseError("APPEND UTF8 (RFC 6855) is not supported")
    m = LITERAL_AT_END.match(r.line, r.pos)
    if m is None or r.index != len(segments) - 1:
        raise ParseError("APPEND: expected flags, a date-time and the message literal")
    size = int(m.group(2))
    return Append(mailbox, flags, date, size, binary=bool(m.group(1)),
                  synchronizing=not m.group(3))


def _login(r: _Reader, name: str, uid: bool) -> Command:
    user = r.astring_text()
    r.sp()
    return Login(user, r.astring_text())


def _authenticate(r: _Reader, name: str, uid: bool) -> Command:
    mechanism = r.word()
    initial = None
    if not r.at_end():
        r.sp()
        raw = r.take(ATOM_CHARS | {ord("=")})
        initial = decode_base64(raw)
    return Authenticate(mechanism, initial)


def _enable(r: _Reader, name: str, uid: bool) -> Command:
    caps = [r.word()]
    while not r.at_end():
        r.sp()
        caps.append(r.word())
    return Enable(tuple(caps))


def _id(r: _Reader, name: str, uid: bool) -> Command:
    if r.peek_word() == "NIL":
        r.pos += 3
        return Id(None)
    r.open_paren()
    pairs: list[tuple[str, str | None]] = []
    while r.peek() != 0x29:
        if pairs:
            r.sp()
        key = r.text(r.string())
        r.sp()
        value = r.nstring()
        pairs.append((key, None if value is None else r.text(value)))
        if len(pairs) > MAX_ID_PAIRS:
            raise ParseError("Too many ID fields (RFC 2971 3.3)", "LIMIT")
    r.close_paren()
    return Id(tuple(pairs))


def _select(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    condstore = False
    qresync = None
    if not r.at_end():
        r.sp()
        r.open_paren()
        first = True
        while r.peek() != 0x29:
            if not first:
                r.sp()
            first = False
            param = r.word()
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                r.sp()
                qresync = _qresync(r)
            else:
                raise ParseError(f"Unknown {name} parameter {param}")
        r.close_paren()
    return Select(mailbox, readonly=name == "EXAMINE", condstore=condstore, qresync=qresync,
                  name=name)


def _qresync(r: _Reader) -> Qresync:
    r.open_paren()
    uidvalidity = r.number(nonzero=True)
    r.sp()
    modseq = r.number(MAX_NUMBER64)
    known = None
    match = None
    if r.peek() == 0x20:
        r.sp()
        if r.peek() != 0x28:
            known = r.sequence_set()
            if r.peek() == 0x20:
                r.sp()
        if r.peek() == 0x28:
            r.open_paren()
            seqs = r.sequence_set()
            r.sp()
            uids = r.sequence_set()
            r.close_paren()
            match = (seqs, uids)
    r.close_paren()
    return Qresync(uidvalidity, modseq, known, match)


def _create(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    use: tuple[str, ...] = ()
    if not r.at_end():
        r.sp()
        r.open_paren()
        r.expect(b"USE ", "USE")
        use = r.flag_list()
        r.close_paren()
    return Create(mailbox, use)


def _mailbox_only(r: _Reader, name: str, uid: bool) -> Command:
    return MailboxCommand(name, r.mailbox())


def _rename(r: _Reader, name: str, uid: bool) -> Command:
    source = r.mailbox()
    r.sp()
    return Rename(source, r.mailbox())


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
STATUS_ITEMS = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                          "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID"})


def _list(r: _Reader, name: str, uid: bool) -> Command:
    selection: frozenset[str] = frozenset()
    extended = False
    if name == "LIST" and r.peek() == 0x28:
        selection = frozenset(r.atom_list())
        unknown = selection - _LIST_SELECT
        if unknown:
            raise ParseError(f"Unknown LIST selection option {sorted(unknown)[0]}")
        if selection == {"RECURSIVEMATCH"}:
            raise ParseError("RECURSIVEMATCH needs another selection option (RFC 5258 3)")
        extended = True
        r.sp()
    reference = r.decode_name(r.astring())
    r.sp()
    if name == "LIST" and r.peek() == 0x28:
        r.open_paren()
        patterns = [r.list_mailbox()]
        while r.peek() == 0x20:
            r.sp()
            patterns.append(r.list_mailbox())
        r.close_paren()
        extended = True
    else:
        patterns = [r.list_mailbox()]
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if name == "LIST" and not r.at_end():
        r.sp()
        r.expect(b"RETURN ", "RETURN")
        r.open_paren()
        while r.peek() != 0x29:
            if returns:
                r.sp()
            option = r.word()
            if option not in _LIST_RETURN:
                raise ParseError(f"Unknown LIST return option {option}")
            if option == "STATUS":
                r.sp()
                status_items = _status_items(r)
            returns.add(option)
        r.close_paren()
        extended = True
    return ListMailboxes(reference, tuple(patterns), selection, frozenset(returns),
                         status_items, extended, name)


def _status_items(r: _Reader) -> tuple[str, ...]:
    items = r.atom_list()
    if not items:
        raise ParseError("STATUS needs at least one item")
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"Unknown STATUS item {item}")
    return tuple(items)


def _status(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    r.sp()
    return Status(mailbox, _status_items(r))


def _append(r: _Reader, name: str, uid: bool) -> Command:
    # Only reached if the message literal was not streamed (the core streams it).
    raise ParseError("APPEND needs the message as a literal")


def _getquota(r: _Reader, name: str, uid: bool) -> Command:
    return GetQuota(r.astring_text())


def _getquotaroot(r: _Reader, name: str, uid: bool) -> Command:
    return GetQuotaRoot(r.mailbox())


_PARSERS: dict[str, Callable[[_Reader, str, bool], Command]] = {
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ENABLE": _enable, "ID": _id,
    "SELECT": _select, "EXAMINE": _select, "CREATE": _create, "DELETE": _mailbox_only,
    "SUBSCRIBE": _mailbox_only, "UNSUBSCRIBE": _mailbox_only, "RENAME": _rename,
    "LIST": _list, "LSUB": _list, "STATUS": _status, "APPEND": _append, "FETCH": _fetch,
    "STORE": _store, "COPY": _copy_move, "MOVE": _copy_move, "EXPUNGE": _uid_expunge,
    "SEARCH": _search, "SORT": _sort, "THREAD": _thread, "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
}

KNOWN_COMMANDS = frozenset(_PARSERS) | _SIMPLE | {"UID", "EXPUNGE"}
