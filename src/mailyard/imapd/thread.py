"""IMAP THREAD (RFC 5256 3): ORDEREDSUBJECT and REFERENCES, and the thread list of
the response (RFC 5256 4).

Both algorithms follow RFC 5256 3 step by step; the comments name the steps.  The
sent date is the ``Date:`` field or, failing that, the internal date (RFC 5256 2.2),
ties broken by sequence number; subjects compare as base subjects (RFC 5256 2.1)
under i;ascii-casemap.  Message-IDs compare case-sensitively.

Hostile mailboxes (a message can be crafted by anyone who can send mail) are handled
without recursion, so a chain of ten thousand replies neither overflows the stack
nor the renderer; of a ``References:`` field only the last :data:`MAX_REFERENCES`
identifiers are linked (the last one makes the parent; earlier ones only add
ancestors), and the deadline is checked before each message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mailyard.imapd.search import SearchContext, SearchProgramError, header_fields
from mailyard.imapd.sort import base_subject, casemap, sent_time, summary
from mailyard.message import text
from mailyard.message.structure import Structure

__all__ = ["ALGORITHMS", "MAX_REFERENCES", "ThreadNode", "render_threads", "thread"]

ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})
MAX_REFERENCES = 500


@dataclass(eq=False)
class ThreadNode:
    """A message in a thread (``index`` into ``SearchContext.messages``), or a dummy
    standing for a message the mailbox does not hold (``index`` None)."""

    index: int | None
    children: list[ThreadNode] = field(default_factory=list)


@dataclass(eq=False)
class _Message:
    index: int
    sent: float
    subject: str  # base subject, comparison form
    reply: bool
    message_id: str | None = None
    references: list[str] = field(default_factory=list)


def _gather(indices: Sequence[int], ctx: SearchContext,
            envelopes: Mapping[int, Structure] | None) -> list[_Message]:
    """Sent date and base subject of each message, for ORDEREDSUBJECT."""
    out: list[_Message] = []
    for index in sorted(indices):
        ctx.check_deadline()
        head = summary(ctx, index, envelopes)
        subject, reply = base_subject(head.subject)
        out.append(_Message(index, sent_time(head.date, ctx.messages[index]),
                            casemap(subject), reply))
    return out


def _first(fields: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    return next((v for k, v in fields if k == name), None)


def _gather_references(indices: Sequence[int], ctx: SearchContext) -> list[_Message]:
    """As :func:`_gather`, with Message-ID and references (RFC 5256 3 REFERENCES
    step 1: the References field, else the first id of In-Reply-To), from the
    header section (the ENVELOPE has no References)."""
    out: list[_Message] = []
    for index in sorted(indices):
        ctx.check_deadline()
        fields = header_fields(ctx, index)
        subject, reply = base_subject(_first(fields, "subject"))
        msg = _Message(index, sent_time(_first(fields, "date"), ctx.messages[index]),
                       casemap(subject), reply)
        own = text.message_ids(_first(fields, "message-id"))
        msg.message_id = own[0] if own else None
        refs = [r for k, v in fields if k == "references" for r in text.message_ids(v)]
        if not refs:
            refs = text.message_ids(_first(fields, "in-reply-to"))[:1]
        msg.references = refs[-MAX_REFERENCES:]
        out.append(msg)
    return out


def thread(algorithm: str, indices: Sequence[int], ctx: SearchContext,
           envelopes: Mapping[int, Structure] | None = None) -> list[ThreadNode]:
    """The threads of the messages ``indices`` by ``algorithm`` (ORDEREDSUBJECT or
    REFERENCES), in response order.  ``envelopes`` (cached ENVELOPEs by UID) spare
    ORDEREDSUBJECT the file reads; REFERENCES needs the References field, which is
    read from the header section.  Raises
    :class:`~mailyard.imapd.search.SearchTimeout` past the deadline."""
    if algorithm == "ORDEREDSUBJECT":
        return _ordered_subject(_gather(indices, ctx, envelopes))
    if algorithm == "REFERENCES":
        return _References(_gather_references(indices, ctx), ctx).run()
    raise SearchProgramError(f"unknown threading algorithm {algorithm}")


# --- ORDEREDSUBJECT ---------------------------------------------------------------------

def _ordered_subject(messages: list[_Message]) -> list[ThreadNode]:
    """RFC 5256 3 ORDEREDSUBJECT: sort by base subject then sent date, split into
    threads of one subject (the first message the parent of all the others), sort the
    threads by the sent date of their first message."""
    messages.sort(key=lambda m: (m.subject, m.sent, m.index))
    threads: list[tuple[_Message, ThreadNode]] = []
    for msg in messages:
        if threads and threads[-1][0].subject == msg.subject:
            threads[-1][1].children.append(ThreadNode(msg.index))
        else:
            threads.append((msg, ThreadNode(msg.index)))
    threads.sort(key=lambda t: (t[0].sent, t[0].index))
    return [node for _, node in threads]


# --- REFERENCES -------------------------------------------------------------------------

@dataclass(eq=False)
class _Container:
    msg: _Message | None  # None: a dummy
    parent: _Container | None = None
    children: list[_Container] = field(default_factory=list)

    def key(self) -> tuple[float, int]:
        """Sent date, then sequence number; a dummy sorts as its first child (RFC
        5256 3 REFERENCES steps 4 and 6)."""
        node = self
        while node.msg is None and node.children:
            node = node.children[0]
        return (node.msg.sent, node.msg.index) if node.msg is not None else (0.0, -1)

    def first_message(self) -> _Message | None:
        return self.msg if self.msg is not None else (
            self.children[0].msg if self.children else None)


def _unlink(child: _Container) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _would_loop(parent: _Container, child: _Container) -> bool:
    """Linking ``child`` under ``parent`` makes a loop: ``parent`` is ``child`` or a
    descendant of it."""
    node: _Container | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _link(parent: _Container, child: _Container) -> None:
    child.parent = parent
    parent.children.append(child)


def _post_order(roots: Sequence[_Container]) -> Iterator[_Container]:
    """Every container below ``roots``, children before their parent."""
    stack: list[tuple[_Container, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(node.children))


class _References:
    """RFC 5256 3 REFERENCES, steps 1 to 6."""

    def __init__(self, messages: list[_Message], ctx: SearchContext) -> None:
        self.messages = messages  # in sequence-number order
        self.ctx = ctx
        self.by_id: dict[str, _Container] = {}
        self.containers: list[_Container] = []

    def _container(self, message_id: str) -> _Container:
        """The container of ``message_id``, a new dummy if none holds it yet."""
        found = self.by_id.get(message_id)
        if found is None:
            found = self.by_id[message_id] = _Container(None)
            self.containers.append(found)
        return found

    def _own_container(self, msg: _Message) -> _Container:
        """Step 1: a message without a Message-ID, or whose Message-ID an earlier
        message holds already, gets a unique one (a container nobody can reference)."""
        mid = msg.message_id
        if mid is not None:
            found = self.by_id.get(mid)
            if found is None:
                found = self.by_id[mid] = _Container(msg)
                self.containers.append(found)
                return found
            if found.msg is None:  # a dummy made by an earlier reference: fill it
                found.msg = msg
                return found
        own = _Container(msg)
        self.containers.append(own)
        return own

    def link(self) -> None:
        """Step 1: parent/child links from each message's references."""
        for msg in self.messages:
            self.ctx.check_deadline()
            own = self._own_container(msg)
            refs = [self._container(r) for r in msg.references]
            # 1A: each reference the parent of the next; existing links stay
            for parent, child in zip(refs, refs[1:], strict=False):
                if child.parent is None and not _would_loop(parent, child):
                    _link(parent, child)
            # 1B: the last reference is the parent (none: no parent)
            _unlink(own)
            if refs and not _would_loop(refs[-1], own):
                _link(refs[-1], own)

    def prune(self, roots: list[_Container]) -> list[_Container]:
        """Step 3: dummies without children go; dummies with children give way to
        them, except at the top where a dummy with several children stays."""
        for node in _post_order(roots):
            kept: list[_Container] = []
            for child in node.children:
                if child.msg is not None:
                    kept.append(child)
                    continue
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            node.children = kept
        top: list[_Container] = []
        for root in roots:
            if root.msg is None and len(root.children) == 1:
                only = root.children[0]
                only.parent = None
                top.append(only)
            elif root.msg is not None or root.children:
                top.append(root)
        return top

    def merge_subjects(self, roots: list[_Container]) -> list[_Container]:
        """Step 5: threads whose top messages share a base subject are gathered."""
        table: dict[str, _Container] = {}

        def subject(node: _Container) -> str:
            first = node.first_message()
            return first.subject if first is not None else ""

        def is_reply(node: _Container) -> bool:
            return node.msg is not None and node.msg.reply

        for root in roots:  # 5B
            subj = subject(root)
            if not subj:
                continue
            held = table.get(subj)
            if (held is None or (root.msg is None and held.msg is not None)
                    or (is_reply(held) and not is_reply(root))):
                table[subj] = root
        out = list(roots)
        position = {id(r): i for i, r in enumerate(out)}
        removed: set[int] = set()
        for root in roots:  # 5C
            subj = subject(root)
            held = table.get(subj) if subj else None
            if held is None or held is root:
                continue
            removed.add(id(root))
            if held.msg is None and root.msg is None:
                for child in root.children:
                    _link(held, child)
                root.children = []
            elif held.msg is None or (is_reply(root) and not is_reply(held)):
                _link(held, root)
            else:
                dummy = _Container(None)
                _link(dummy, held)
                _link(dummy, root)
                out[position[id(held)]] = dummy
                position[id(dummy)] = position.pop(id(held))
                table[subj] = dummy
        return [r for r in out if id(r) not in removed]

    def run(self) -> list[ThreadNode]:
        self.link()
        roots = [c for c in self.containers if c.parent is None]  # step 2
        roots = self.prune(roots)  # step 3
        for root in roots:  # step 4
            if root.msg is None:
                root.children.sort(key=_Container.key)
        roots.sort(key=_Container.key)
        roots = self.merge_subjects(roots)  # step 5
        for node in _post_order(roots):  # step 6: grandchildren before children
            node.children.sort(key=_Container.key)
        roots.sort(key=_Container.key)
        return _export(roots)


def _export(roots: list[_Container]) -> list[ThreadNode]:
    made: dict[int, ThreadNode] = {}
    for node in _post_order(roots):
        made[id(node)] = ThreadNode(node.msg.index if node.msg is not None else None,
                                    [made.pop(id(c)) for c in node.children])
    return [made[id(r)] for r in roots]


# --- the response ---------------------------------------------------------------------

def render_threads(threads: Sequence[ThreadNode], number: Callable[[int], int]) -> bytes:
    """The thread lists of a THREAD response (RFC 5256 4), e.g.
    ``(2)(3 6 (4 23)(44 7 96))``; ``number`` maps an index to what the client sees
    (sequence number or UID).  A chain of single children is written inline, several
    children as nested lists; a dummy writes no number of its own."""
    out = bytearray()
    stack: list[ThreadNode | bytes] = []
    for top in reversed(threads):
        if _has_message(top):
            stack += [b")", top, b"("]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out += item
            continue
        node = item
        while True:
            if node.index is not None:
                if out[-1:].isdigit():
                    out += b" "
                out += str(number(node.index)).encode("ascii")
            children = [c for c in node.children if _has_message(c)]
            if len(children) == 1:
                node = children[0]
                continue
            if children:
                if out[-1:].isdigit():
                    out += b" "
                for child in reversed(children):
                    stack += [b")", child, b"("]
            break
    return bytes(out)


def _has_message(node: ThreadNode) -> bool:
    """Whether ``node`` or a descendant is a message (so that no empty list is
    written)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.index is not None:
            return True
        stack.extend(current.children)
    return False
