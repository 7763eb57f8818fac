"""The commands of the authenticated and selected states (RFC 9051 6.3, 6.4) as the
core sees them: ENABLE, NAMESPACE, SELECT/EXAMINE (with CONDSTORE and QRESYNC), LIST,
STATUS, IDLE, and the selected-state commands (FETCH, STORE, SEARCH/SORT/THREAD,
COPY/MOVE, EXPUNGE) with the read-only and QRESYNC checks before the adapter is asked.

:class:`MailboxCommands` is mixed into
:class:`~mailyard.proto.imap.server.ServerConnection`.  Separate from the connection
because these are the mailbox decisions the adapter answers, while the connection
module holds the adapter API and the any-state commands.
"""

from __future__ import annotations

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import (
    Command,
    CopyMove,
    Enable,
    Expunge,
    Fetch,
    ListMailboxes,
    Search,
    Select,
    Sort,
    Status,
    Store,
    Thread,
)
from mailyard.proto.imap.events import (
    CommandRequested,
    CopyRequested,
    Enabled,
    ExpungeRequested,
    FetchRequested,
    IdleRequested,
    ListRequested,
    SearchRequested,
    SelectRequested,
    StatusRequested,
    StoreRequested,
)
from mailyard.proto.imap.server_framing import Framing
from mailyard.proto.imap.states import ENABLEABLE, READ_WRITE, State


class MailboxCommands(Framing):
    """The authenticated- and selected-state commands."""

    def _enable(self, tag: str, command: Command) -> None:
        assert isinstance(command, Enable)
        offered = {c.upper() for c in self.capabilities()}
        new: list[str] = []
        for cap in command.capabilities:
            if cap in ENABLEABLE and cap in offered and cap not in self.session.enabled:
                self.session.enabled.add(cap)
                new.append(cap)
        if "QRESYNC" in self.session.enabled:
            self.session.enabled.add("CONDSTORE")  # RFC 7162 3.2.3
        self._ctx = self._context()
        names = ["IMAP4rev2" if c == "IMAP4REV2" else c for c in new]
        self._send(resp.enabled(names))
        if new:
            self._events.append(Enabled(tuple(names)))
        self._tagged(tag, "OK", "ENABLE completed")

    def _namespace(self, tag: str, command: Command) -> None:
        delim = self.settings.delimiter
        self._send(resp.untagged(resp.Atom("NAMESPACE"), [["", delim]], None, None))
        self._tagged(tag, "OK", "NAMESPACE completed")

    def _select(self, tag: str, command: Command) -> None:
        assert isinstance(command, Select)
        if command.qresync is not None and "QRESYNC" not in self.session.enabled:
            self._bad(tag, "QRESYNC must be enabled first (RFC 7162 3.2.5)")
            return
        if command.condstore:
            self.session.enabled.add("CONDSTORE")  # RFC 7162 3.1.8
        if self.state is State.SELECTED:
            # RFC 9051 6.3.2: the current mailbox is closed first (RFC 7162 3.2.11).
            self.state = State.AUTHENTICATED
            self.session.mailbox = ""
            self._send(resp.untagged_status("OK", "Previous mailbox closed", "CLOSED"))
        self._ask(SelectRequested(tag, command))

    def _selected_command(self, tag: str, command: Command) -> None:
        if command.name in READ_WRITE and self.session.readonly:
            self._tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return
        if isinstance(command, Fetch):
            if command.vanished and "QRESYNC" not in self.session.enabled:
                self._bad(tag, "VANISHED needs QRESYNC enabled (RFC 7162 3.2.6)")
                return
            if command.changed_since is not None:
                self.session.enabled.add("CONDSTORE")
            self._ask(FetchRequested(tag, command))
        elif isinstance(command, Store):
            if command.unchanged_since is not None:
                self.session.enabled.add("CONDSTORE")
            self._ask(StoreRequested(tag, command))
        elif isinstance(command, (Search, Sort, Thread)):
            self._ask(SearchRequested(tag, command))
        elif isinstance(command, CopyMove):
            self._ask(CopyRequested(tag, command))
        elif isinstance(command, Expunge):
            self._ask(ExpungeRequested(tag, command))
        else:
            self._ask(CommandRequested(tag, command))

    def _expunge(self, tag: str, command: Command) -> None:
        self._selected_command(tag, command if isinstance(command, Expunge) else Expunge())

    def _list(self, tag: str, command: Command) -> None:
        assert isinstance(command, ListMailboxes)
        self._ask(ListRequested(tag, command))

    def _status(self, tag: str, command: Command) -> None:
        assert isinstance(command, Status)
        self._ask(StatusRequested(tag, command))

    def _idle(self, tag: str, command: Command) -> None:
        self._ask(IdleRequested(tag))

    def _store_command(self, tag: str, command: Command) -> None:
        self._ask(CommandRequested(tag, command))
