"""A queue writer in memory, with the record's ``prepend`` section, for ingest tests."""

from __future__ import annotations

from mailyard.envelope import Envelope


class MemoryQueueWriter:
    def __init__(self, queue: MemoryQueue, envelope: Envelope, qid: str) -> None:
        self.queue = queue
        self.envelope = envelope
        self.qid = qid
        self.parts: list[bytes] = []
        self.aborted = False
        self.spilled = False  # as a large message is: no held()

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def held(self) -> bytes | None:
        return None if self.spilled else b"".join(self.parts)

    async def commit(self, prepend: bytes = b"") -> str:
        self.queue.messages[self.qid] = (self.envelope, b"".join(self.parts), prepend)
        return self.qid

    def abort(self) -> None:
        self.aborted = True


class MemoryQueue:
    def __init__(self) -> None:
        self.messages: dict[str, tuple[Envelope, bytes, bytes]] = {}
        self.writers: list[MemoryQueueWriter] = []

    def open_message(self, envelope: Envelope) -> MemoryQueueWriter:
        writer = MemoryQueueWriter(self, envelope, f"Q{len(self.writers) + 1:04d}")
        self.writers.append(writer)
        return writer

    def content(self, qid: str) -> bytes:
        return self.messages[qid][1]
