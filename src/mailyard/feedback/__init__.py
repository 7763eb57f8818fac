"""What comes back after bulk and transactional mail goes out: bounces, delay notices,
complaints and auto-replies, parsed into values the campaign engine acts on.

Everything here is pure: bytes or strings in, frozen dataclasses out, no I/O.  The
parsers never raise on what a remote system sends (a hostile or broken report gives a
result that says "not a bounce" or "unknown"), so a caller needs no try/except.

- :mod:`.verp` signs and reads the ``bounces+<token>@domain`` envelope sender;
- :mod:`.classify` turns a received message into a :class:`~.model.Feedback`;
- :mod:`.policy` decides when repeated soft bounces suppress an address.
"""
