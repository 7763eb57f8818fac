"""The IMAP server protocol core, sans-IO (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1).

Bytes in, events out; decisions in, response bytes out -- the same shape as
:mod:`mailyard.proto.smtp.server`.  No sockets, asyncio, clocks, disk or mailbox
storage here: the mailbox store and the asyncio adapter plug into the events.

* :mod:`~mailyard.proto.imap.parser` -- the command grammar into typed commands
  (:mod:`~mailyard.proto.imap.commands`), with limits; its tokens are in
  :mod:`~mailyard.proto.imap.lexer`, the FETCH/STORE/COPY/MOVE and SEARCH/SORT/THREAD
  grammars in :mod:`~mailyard.proto.imap.parser_fetch` and
  :mod:`~mailyard.proto.imap.parser_search`;
* :mod:`~mailyard.proto.imap.responses` -- encoding of tagged, untagged and
  continuation responses (quoting, literals, NIL);
* :mod:`~mailyard.proto.imap.states` -- which command is legal in which state, and
  the transitions, as tables;
* :mod:`~mailyard.proto.imap.server` -- the connection: framing (lines, literals),
  STARTTLS, AUTHENTICATE, IDLE, APPEND streaming and the decision events of
  :mod:`~mailyard.proto.imap.events`; its parts are
  :mod:`~mailyard.proto.imap.server_framing` (state, lines and literals, reply
  helpers), :mod:`~mailyard.proto.imap.server_auth` (STARTTLS, LOGIN, AUTHENTICATE)
  and :mod:`~mailyard.proto.imap.server_mailbox` (authenticated and selected state).

Why hand-written: there is no well-kept Python library for the *server* side of
IMAP.  The standard library's :mod:`imaplib` is a client (it builds commands and
parses responses, the opposite direction), and the server-side projects that exist
are either unmaintained or tied to their own I/O framework (Twisted's
``twisted.mail.imap4`` parses inside its protocol class).  A sans-IO core in the
style of h11 is small enough to own and lets every test run without a socket.
"""
