"""The IMAP command grammar (RFC 9051 9, RFC 3501 9) into typed commands."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.proto.imap import mutf7
from mailyard.proto.imap.commands import (
    STAR,
    Append,
    Authenticate,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchAttribute,
    Id,
    ListMailboxes,
    Login,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    Simple,
    Sort,
    Status,
    Store,
    Thread,
)
from mailyard.proto.imap.parser import ParseContext, ParseError, append_head, parse_command

CTX = ParseContext()


def parse(*segments: bytes, ctx: ParseContext = CTX) -> object:
    tag, command = parse_command(list(segments), ctx)
    assert tag == "a1"
    return command


def refused(*segments: bytes, ctx: ParseContext = CTX) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_command(list(segments), ctx)
    return info.value


def test_simple_commands() -> None:
    """RFC 9051 6.1.1-6.1.3, 6.4.1-6.4.3: commands without arguments."""
    for name in ("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CLOSE", "UNSELECT", "IDLE",
                 "NAMESPACE", "EXPUNGE", "CHECK"):
        assert parse(b"a1 " + name.lower().encode()) == Simple(name)
    assert refused(b"a1 NOOP extra").status == "BAD"


def test_login_atoms_quoted_and_literals() -> None:
    """RFC 9051 6.2.3 and 4.3: astrings are atoms, quoted strings or literals."""
    assert parse(b"a1 LOGIN SMITH SESAME") == Login("SMITH", "SESAME")
    assert parse(b'a1 LOGIN "a b" "p\\"w\\\\"') == Login("a b", 'p"w\\')
    assert parse(b"a1 LOGIN {5}", b"alice", b" {6+}", b"se\"cr ", b"") == \
        Login("alice", 'se"cr ')


def test_bad_strings() -> None:
    """RFC 9051 4.3: no CR/LF/NUL in quoted strings, only \\\\ and \\" escapes; a
    literal8 only carries message data; a literal must end its line."""
    assert "escape" in refused(b'a1 LOGIN "a\\b" c').text
    assert refused(b'a1 LOGIN "abc d').text == "Unterminated quoted string"
    assert refused(b"a1 LOGIN ~{3}", b"abc", b" x").status == "BAD"
    assert refused(b"a1 LOGIN {3} x").status == "BAD"


def test_tag_and_command_errors() -> None:
    """RFC 9051 9: tag is ASTRING-CHAR except "+"; unknown commands are BAD."""
    assert "tag" in refused(b"+ NOOP").text
    assert refused(b"a1 FROB").text == "Unknown command"
    assert "UID" in refused(b"a1 UID NOOP").text


def test_authenticate_sasl_ir() -> None:
    """RFC 9051 6.2.2 and RFC 4959: optional initial response, "=" for empty."""
    assert parse(b"a1 AUTHENTICATE plain") == Authenticate("PLAIN", None)
    assert parse(b"a1 AUTHENTICATE PLAIN =") == Authenticate("PLAIN", b"")
    assert parse(b"a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==") == \
        Authenticate("PLAIN", b"\x00alice\x00secret")
    assert refused(b"a1 AUTHENTICATE PLAIN AGFsaWNl!").text == "Bad base64"


def test_sequence_sets() -> None:
    """RFC 9051 9 sequence-set and RFC 5182 "$"; "*" is the largest number in use."""
    cmd = parse(b"a1 FETCH 1:*,3,5:7 FLAGS")
    assert isinstance(cmd, Fetch)
    assert cmd.sequence.ranges == ((1, STAR), (3, 3), (5, 7))
    assert cmd.sequence.normalized(10) == [(1, 10)]
    assert list(SequenceSet(((7, 5), (2, 2))).iterate(9)) == [2, 5, 6, 7]
    assert SequenceSet(((3, STAR),)).normalized(2) == [(2, 3)]
    saved = parse(b"a1 FETCH $ UID")
    assert isinstance(saved, Fetch) and saved.sequence.saved
    for bad in (b"0", b"1:", b"01", b"1,,2", b"4294967296"):
        assert refused(b"a1 FETCH " + bad + b" FLAGS").status == "BAD"


def test_sequence_set_limit() -> None:
    """Hostile input: ``1:*,1:*,...`` beyond the cap is BAD [LIMIT] (RFC 5530 3);
    below it, repeats cost nothing after normalising."""
    many = b",".join([b"1:*"] * 10_001)
    err = refused(b"a1 FETCH " + many + b" FLAGS")
    assert err.code == "LIMIT"
    cmd = parse(b"a1 FETCH " + b",".join([b"1:*"] * 10_000) + b" FLAGS")
    assert isinstance(cmd, Fetch) and cmd.sequence.normalized(4_000_000) == [(1, 4_000_000)]


def test_fetch_attributes() -> None:
    """RFC 9051 6.4.5: FETCH items, sections, partials, BINARY (RFC 3516), macros,
    and the implicit UID of UID FETCH (6.4.9)."""
    cmd = parse(b"a1 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])")
    assert isinstance(cmd, Fetch)
    assert cmd.attributes == (FetchAttribute("FLAGS"), FetchAttribute(
        "BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM"))))
    assert cmd.attributes[1].label() == "BODY[HEADER.FIELDS (DATE FROM)]"
    cmd = parse(b"a1 UID FETCH 1 (BODY.PEEK[1.2.MIME]<0.100> BINARY[2] BINARY.SIZE[2] "
                b"RFC822.SIZE ENVELOPE BODYSTRUCTURE INTERNALDATE MODSEQ RFC822.HEADER)")
    assert isinstance(cmd, Fetch) and cmd.uid
    peek = cmd.attributes[0]
    assert peek == FetchAttribute("BODY", Section((1, 2), "MIME"), (0, 100), peek=True)
    assert peek.label() == "BODY[1.2.MIME]<0>"
    assert cmd.attributes[1] == FetchAttribute("BINARY", Section((2,)))
    assert cmd.attributes[-1] == FetchAttribute("UID")
    full = parse(b"a1 FETCH 1 FULL")
    assert isinstance(full, Fetch) and [a.name for a in full.attributes] == \
        ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    assert parse(b"a1 FETCH 1 BODY[]").attributes == (  # type: ignore[attr-defined]
        FetchAttribute("BODY", Section()),)
    for bad in (b"BODY.PEEK", b"BINARY[TEXT]", b"BODY[MIME]", b"FOO", b"()"):
        assert refused(b"a1 FETCH 1 " + bad).status == "BAD"


def test_fetch_modifiers() -> None:
    """RFC 7162 3.1.4.1 CHANGEDSINCE and 3.2.6 VANISHED (UID FETCH only)."""
    cmd = parse(b"a1 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert isinstance(cmd, Fetch) and cmd.changed_since == 12345 and cmd.vanished
    assert refused(b"a1 FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)").status == "BAD"
    assert refused(b"a1 UID FETCH 1 FLAGS (VANISHED)").status == "BAD"


def test_store() -> None:
    """RFC 9051 6.4.6 STORE and RFC 7162 3.1.3 UNCHANGEDSINCE; \\Recent is not
    storable (RFC 3501 2.3.2)."""
    assert parse(b"a1 STORE 2:4 +FLAGS (\\deleted)") == Store(
        SequenceSet(((2, 4),)), "+", ("\\Deleted",))
    assert parse(b"a1 UID STORE 1 -FLAGS.SILENT \\Seen $Junk") == Store(
        SequenceSet(((1, 1),)), "-", ("\\Seen", "$Junk"), silent=True, uid=True)
    cmd = parse(b"a1 STORE 1 (UNCHANGEDSINCE 12345) FLAGS.SILENT ()")
    assert isinstance(cmd, Store) and cmd.unchanged_since == 12345 and cmd.flags == ()
    assert refused(b"a1 STORE 1 +FLAGS \\Recent").status == "BAD"
    assert refused(b"a1 STORE 1 XFLAGS \\Seen").status == "BAD"


def test_search_rfc9051_examples() -> None:
    """RFC 9051 6.4.4 examples, every key family, nested OR/NOT and CHARSET."""
    cmd = parse(b'a1 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert cmd == Search(SearchKey("AND", (
        SearchKey("FLAGGED"), SearchKey("SINCE", (dt.date(1994, 2, 1),)),
        SearchKey("NOT", (SearchKey("FROM", ("Smith",)),)))))
    cmd = parse(b"a1 SEARCH CHARSET UTF-8 TEXT {4+}", "Ölk".encode(), b"")
    assert isinstance(cmd, Search) and cmd.charset == "UTF-8"
    assert cmd.criteria == SearchKey("TEXT", ("Ölk",))
    cmd = parse(b"a1 UID SEARCH RETURN (MIN COUNT) OR (FROM a TO b) NOT 1:5 UID 3:* "
                b'HEADER X-Foo "" LARGER 100 KEYWORD $Junk BEFORE "02-Jan-2020" '
                b"MODSEQ \"/flags/\\\\draft\" all 620162338 ANSWERED UNDRAFT NEW OLD")
    assert isinstance(cmd, Search) and cmd.uid and cmd.returns == ("MIN", "COUNT")
    assert cmd.criteria.args[0] == SearchKey("OR", (
        SearchKey("AND", (SearchKey("FROM", ("a",)), SearchKey("TO", ("b",)))),
        SearchKey("NOT", (SearchKey("SEQUENCE", (SequenceSet(((1, 5),)),)),))))
    assert SearchKey("MODSEQ", (620162338, "/flags/\\draft", "ALL")) in cmd.criteria.args
    empty = parse(b"a1 SEARCH RETURN () ALL")
    assert isinstance(empty, Search) and empty.returns == ("ALL",)


def test_search_errors() -> None:
    """RFC 9051 6.4.4: unknown charset is NO [BADCHARSET]; bad dates and keys BAD;
    nesting beyond the limit is BAD [LIMIT] (hostile input)."""
    err = refused(b"a1 SEARCH CHARSET KOI8-R ALL")
    assert (err.status, err.code) == ("NO", "BADCHARSET (US-ASCII UTF-8)")
    assert refused(b"a1 SEARCH SINCE 31-Feb-1994").status == "BAD"
    assert refused(b"a1 SEARCH FROBNICATE").status == "BAD"
    assert refused(b"a1 SEARCH " + b"(" * 40 + b"ALL" + b")" * 40).code == "LIMIT"
    assert refused(b"a1 SEARCH " + b"NOT " * 40 + b"ALL").code == "LIMIT"
    assert refused(b"a1 SEARCH " + b"OR ALL " * 40 + b"ALL").code == "LIMIT"


def test_sort_and_thread() -> None:
    """RFC 5256 3: SORT criteria with REVERSE, THREAD algorithms."""
    assert parse(b"a1 UID SORT (REVERSE ARRIVAL SUBJECT) UTF-8 SINCE 1-Feb-1994") == Sort(
        ("REVERSE ARRIVAL", "SUBJECT"), "UTF-8",
        SearchKey("SINCE", (dt.date(1994, 2, 1),)), uid=True)
    assert parse(b"a1 THREAD REFERENCES US-ASCII ALL") == Thread(
        "REFERENCES", "US-ASCII", SearchKey("ALL"))
    assert refused(b"a1 SORT () UTF-8 ALL").status == "BAD"


def test_select_condstore_qresync() -> None:
    """RFC 7162 3.1.8 and 3.2.5 (the QRESYNC example of 3.2.5.2)."""
    assert parse(b"a1 EXAMINE inbox (CONDSTORE)") == Select(
        _mb("INBOX"), readonly=True, condstore=True, name="EXAMINE")
    cmd = parse(b"a1 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 "
                b"(1:5 100:105)))")
    assert isinstance(cmd, Select) and cmd.qresync is not None
    assert cmd.qresync.uidvalidity == 67890007 and cmd.qresync.modseq == 20050715194045000
    assert cmd.qresync.known_uids == SequenceSet(((41, 41), (43, 211), (214, 541)))
    assert cmd.qresync.seq_match is not None
    assert refused(b"a1 SELECT INBOX (FOO)").status == "BAD"


def _mb(name: str) -> object:
    from mailyard.proto.imap.commands import MailboxName
    return MailboxName(name)


def test_mailbox_names_modified_utf7_and_utf8() -> None:
    """RFC 3501 5.1.3 example name; RFC 9051 5.1 INBOX is case-insensitive; RFC 6855
    3: UTF-8 names once UTF8=ACCEPT is enabled; 8-bit without it is BAD."""
    cmd = parse(b"a1 CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-")
    assert cmd == Create(_mb("~peter/mail/台北/日本語"))  # type: ignore[arg-type]
    assert parse(b"a1 DELETE &-x").mailbox.name == "&x"  # type: ignore[attr-defined]
    assert parse(b"a1 SUBSCRIBE iNbOx").mailbox.name == "INBOX"  # type: ignore[attr-defined]
    assert refused("a1 CREATE \"Ölkanne\"".encode()).status == "BAD"
    utf8 = ParseContext(utf8=True)
    assert parse("a1 CREATE \"Ölkanne\"".encode(), ctx=utf8) == Create(_mb("Ölkanne"))  # type: ignore[arg-type]
    assert refused(b"a1 CREATE &Jjo", ).status == "BAD"  # unterminated shift
    assert refused(b"a1 CREATE &AGEAYg-").status == "BAD"  # shifted printable ASCII
    assert parse(b"a1 CREATE Sent (USE (\\Sent))") == Create(_mb("Sent"), ("\\Sent",))  # type: ignore[arg-type]


@given(st.text(max_size=30))
def test_modified_utf7_round_trip(name: str) -> None:
    """RFC 3501 5.1.3: encode then decode gives the name back (surrogates aside)."""
    try:
        encoded = mutf7.encode(name)
    except UnicodeEncodeError:
        return
    if any(ch < " " or ch == "\x7f" for ch in name):
        return
    assert mutf7.decode(encoded) == name
    assert encoded.isascii()


def test_list_extended() -> None:
    """RFC 9051 6.3.9, RFC 5258 (selection/return options, patterns), RFC 5819
    RETURN STATUS, RFC 6154 SPECIAL-USE; LSUB (RFC 3501 6.3.9)."""
    assert parse(b'a1 LIST "" *') == ListMailboxes("", ("*",))
    cmd = parse(b'a1 LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %/%) '
                b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))")
    assert isinstance(cmd, ListMailboxes)
    assert cmd.selection == {"SUBSCRIBED", "RECURSIVEMATCH"}
    assert cmd.patterns == ("INBOX", "%/%") and cmd.extended
    assert cmd.returns == {"CHILDREN", "SPECIAL-USE", "STATUS"}
    assert cmd.status_items == ("MESSAGES", "UNSEEN")
    assert parse(b"a1 LSUB #news. comp.mail.*") == ListMailboxes(
        "#news.", ("comp.mail.*",), name="LSUB")
    assert refused(b'a1 LIST (RECURSIVEMATCH) "" *').status == "BAD"
    assert refused(b'a1 LIST (FOO) "" *').status == "BAD"


def test_status_copy_move_expunge_enable_id_quota() -> None:
    """RFC 9051 6.3.11 STATUS, 6.4.7 COPY, 6.4.8 MOVE, 6.4.9 UID EXPUNGE, RFC 5161
    ENABLE, RFC 2971 ID, RFC 9208 GETQUOTAROOT."""
    assert parse(b"a1 STATUS blurdybloop (UIDNEXT MESSAGES SIZE)") == Status(
        _mb("blurdybloop"), ("UIDNEXT", "MESSAGES", "SIZE"))  # type: ignore[arg-type]
    assert refused(b"a1 STATUS x (FOO)").status == "BAD"
    assert parse(b"a1 UID MOVE 42:69 foo") == CopyMove(
        "MOVE", SequenceSet(((42, 69),)), _mb("foo"), uid=True)  # type: ignore[arg-type]
    assert parse(b"a1 UID EXPUNGE 3000:3002") == Expunge(SequenceSet(((3000, 3002),)))
    assert parse(b"a1 ENABLE condstore utf8=accept") == Enable(("CONDSTORE", "UTF8=ACCEPT"))
    assert parse(b'a1 ID ("name" "sodr" "version" NIL)') == Id(
        (("name", "sodr"), ("version", None)))
    assert parse(b"a1 ID NIL") == Id(None)
    many = b" ".join(b'"k%d" "v"' % i for i in range(31))
    assert refused(b"a1 ID (" + many + b")").code == "LIMIT"
    assert parse(b"a1 GETQUOTAROOT INBOX").name == "GETQUOTAROOT"  # type: ignore[attr-defined]


def test_append_head() -> None:
    """RFC 9051 6.3.12 APPEND (example's flags and date-time), RFC 3516 literal8,
    RFC 7888 non-synchronising; a literal mailbox name is not the message."""
    head = append_head([b'A003 APPEND saved-messages (\\Seen) "17-Jul-1996 02:44:25 -0700" '
                        b"{310}"], CTX)
    tz = dt.timezone(-dt.timedelta(hours=7))
    assert head == Append(_mb("saved-messages"), ("\\Seen",),  # type: ignore[arg-type]
                          dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz), 310)
    assert append_head([b"a APPEND {5}"], CTX) is None
    head = append_head([b"a APPEND {5}", b"INBOX", b" ~{12+}"], CTX)
    assert head is not None and head.binary and not head.synchronizing and head.size == 12
    with pytest.raises(ParseError):
        append_head([b'a APPEND x "31-Jul-1996 99:44:25 -0700" {1}'], CTX)


def test_append_date_years_0000_to_9999() -> None:
    """RFC 9051 9: date-year is any four digits.  Year 0000 (which datetime cannot
    hold; the store clamps such dates anyway) is its earliest instant; a day that year
    has not (30-Feb) is still refused."""
    def date(text: bytes) -> dt.datetime | None:
        head = append_head([b'a APPEND x "' + text + b'" {1}'], CTX)
        assert head is not None
        return head.date

    assert date(b"01-Jan-0000 00:00:00 +0000") == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert date(b"29-Feb-0000 12:00:00 -0700") == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert date(b"01-Jan-0001 00:00:00 +0000") == dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    last = date(b"31-Dec-9999 23:59:59 -2359")
    assert last is not None and last.year == 9999
    with pytest.raises(ParseError):
        append_head([b'a APPEND x "30-Feb-0000 00:00:00 +0000" {1}'], CTX)
