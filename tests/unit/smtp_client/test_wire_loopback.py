"""Client ⇄ server loopback: our delivery client talks to our server core, bytes in
both directions, no socket.  What the client encodes the server parses back to the
same envelope, and an address the server's grammar accepts is never refused by our
own client (RFC 5321 4.1.2 paths; RFC 1870, 6152, 3030, 6531 and 3461 parameters)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.envelope import DsnRecipient, Envelope, Recipient
from mailyard.proto.smtp.address import AddressError, format_address, parse_forward_path
from mailyard.proto.smtp.client import (
    Closed,
    Idle,
    NeedContent,
    NeedData,
    Send,
    SessionReady,
    SmtpClient,
    TransactionDone,
    TransactionResult,
)
from mailyard.proto.smtp.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    MailFrom,
    MessageComplete,
    RcptTo,
    ScramLookup,
)
from mailyard.proto.smtp.replies import REPLY_QUEUED, REPLY_REMOTE_BAD_ADDRESS
from mailyard.proto.smtp.server import ServerConnection, ServerSettings
from mailyard.proto.smtp.wire import MailCommand, RcptCommand

CONTENT = b"Subject: loopback\r\n\r\n.leading dot\r\nbody\r\n"
SERVER = ServerSettings(hostname="mx.test")


class Loopback:
    """One client and one server core wired together; the server accepts everything."""

    def __init__(self) -> None:
        self.client = SmtpClient("client.test", tls="none")
        self.server = ServerConnection(SERVER)
        self.server.greet()
        self.mail: list[MailFrom] = []
        self.rcpt: list[RcptTo] = []
        self.results: list[TransactionResult] = []

    def _serve(self) -> bytes:
        server = self.server
        while (event := server.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
            if isinstance(event, MailFrom):
                self.mail.append(event)
            elif isinstance(event, RcptTo):
                self.rcpt.append(event)
            if event.needs_decision:
                if isinstance(event, MessageComplete):
                    server.accept(REPLY_QUEUED.with_text("Queued"))
                elif isinstance(event, ScramLookup):
                    server.accept_scram(None)
                else:
                    server.accept()
        return server.data_to_send()

    def send(self, envelope: Envelope) -> TransactionResult:
        client, started = self.client, False
        for _ in range(200):  # bounded: a session is a few dozen steps
            event = client.next_event()
            if isinstance(event, Send):
                self.server.receive_data(event.data)
            elif isinstance(event, NeedData):
                client.receive_data(self._serve())
            elif isinstance(event, SessionReady) and not started:
                started = True
                client.start_transaction(envelope, envelope.recipients, len(CONTENT))
            elif isinstance(event, NeedContent):
                client.send_content(CONTENT)
                client.end_content()
            elif isinstance(event, TransactionDone):
                self.results.append(event.result)
                return event.result
            elif isinstance(event, (Idle, Closed)):
                break
        raise AssertionError("the loopback session did not finish")


# --- what the server's grammar accepts, built from its parts ----------------------------
def _server_accepts(address: str) -> bool:
    try:
        _, rest = parse_forward_path(f"<{address}>")
    except AddressError:
        return False
    return not rest


_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                      blacklist_categories=("Cs", "Cc"))
_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    st.integers(0, 255).map(lambda n: f"[192.0.2.{n}]"),
    st.just("[IPv6:2001:db8::1]"),
    st.sampled_from(["bücher.example", "例え.テスト"]),
)
_LOCAL = st.one_of(
    st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9_+-]+)*", fullmatch=True),
    st.text(_TEXT, max_size=12),  # anything printable: quoted when it must be
)
ADDRESS = st.builds(format_address, _LOCAL, _DOMAIN).filter(lambda a: _server_accepts(a))
_NOTIFY = st.one_of(
    st.just(()), st.just(("NEVER",)),
    st.permutations(["SUCCESS", "FAILURE", "DELAY"]).flatmap(
        lambda p: st.integers(1, 3).map(lambda n: tuple(p[:n]))),
)
_ORCPT = st.one_of(st.just(""), st.builds(lambda t, a: f"{t};{a}",
                                          st.sampled_from(["rfc822", "utf-8"]),
                                          st.text(_TEXT, min_size=1, max_size=30)))
RECIPIENT = st.builds(Recipient, ADDRESS, st.builds(DsnRecipient, _NOTIFY, _ORCPT))
ENVELOPE = st.builds(
    Envelope,
    sender=st.one_of(st.just(""), ADDRESS),
    recipients=st.lists(RECIPIENT, min_size=1, max_size=4).map(tuple),
    body_type=st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"]),
    smtputf8=st.booleans(),
    ret=st.sampled_from(["", "FULL", "HDRS"]),
    envid=st.text(_TEXT, max_size=30),
)


@settings(max_examples=100, deadline=None)
@given(ENVELOPE)
def test_what_the_client_sends_the_server_reads_back(envelope: Envelope) -> None:
    loop = Loopback()
    result = loop.send(envelope)
    assert result.reply.code == 250, result
    assert [r.reply.code for r in result.recipients] == [250] * len(envelope.recipients)
    (mail,) = loop.mail
    assert mail.address == envelope.sender
    assert mail.body == envelope.body_type
    assert mail.size == len(CONTENT)
    assert (mail.ret, mail.envid) == (envelope.ret, envelope.envid)
    needs_utf8 = not (envelope.sender.isascii()
                      and all(r.address.isascii() for r in envelope.recipients))
    assert mail.smtputf8 == (envelope.smtputf8 or needs_utf8)
    assert [(r.address, r.dsn) for r in loop.rcpt] == \
        [(r.address, r.dsn) for r in envelope.recipients]


_EDGE = st.text(st.sampled_from(list('ab9."\\ @<>[]:,;()-+=\x00\r\n\x7f\xe9')), max_size=24)


@settings(max_examples=300, deadline=None)
@given(_EDGE, _DOMAIN)
def test_an_address_the_server_accepts_is_not_refused_by_the_client(local: str,
                                                                     domain: str) -> None:
    """Addresses near the grammar's edges (controls, brackets, quotes, spaces): the
    client refuses exactly what the server would, and sends nothing malformed."""
    address = f"{local}@{domain}"
    loop = Loopback()
    result = loop.send(Envelope(sender="a@client.test", recipients=(Recipient(address),)))
    (outcome,) = result.recipients
    if _server_accepts(address):
        assert outcome.reply.code == 250, (address, outcome.reply)
        assert [r.address for r in loop.rcpt] == [parse_forward_path(f"<{address}>")[0].address]
    else:
        assert outcome.reply == REPLY_REMOTE_BAD_ADDRESS
        assert loop.rcpt == []
    assert loop.server.session.errors == 0  # no command of ours was refused as malformed


def test_encode_parse_round_trip_examples() -> None:
    """The same definitions both ways, on fixed examples (RFC 3461 4.2 xtext in ORCPT)."""
    rcpt = RcptCommand('"a b"@example.org',
                       DsnRecipient(("SUCCESS", "DELAY"), "rfc822;x+y=z@example.org"))
    line = rcpt.encode()
    assert line == ('RCPT TO:<"a b"@example.org> NOTIFY=SUCCESS,DELAY '
                    'ORCPT=rfc822;x+2By+3Dz@example.org')
    back = RcptCommand.parse(line[5:])
    assert (back.address, back.dsn) == (rcpt.address, rcpt.dsn)
    mail = MailCommand.parse("FROM:<> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=a+2Bb")
    assert mail.sender == "" and mail.params.envid == "a+b"
    assert mail.encode() == "MAIL FROM:<> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=a+2Bb"
