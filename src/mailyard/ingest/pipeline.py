"""The embedded :class:`~mailyard.ingest.api.Ingest`: stages in front of a queue writer.

Each message is opened on the queue (``QueueWriter.open_message``), passes the stages
for its origin while its content streams through, and is committed with the fields
the at-commit hooks computed (the record's ``prepend`` section, see ``api``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mailyard.envelope import Envelope
from mailyard.ingest.api import IngestHook, IngestWriter, Submission
from mailyard.queue.api import MessageWriter


class QueueWriterLike(Protocol):
    """The producer side of the queue that ingest writes to."""

    def open_message(self, envelope: Envelope) -> MessageWriter: ...


class _Writer:
    def __init__(self, submission: Submission, writer: MessageWriter,
                 hooks: Sequence[IngestHook]) -> None:
        self.submission = submission
        self._writer = writer
        self._hooks = hooks
        self.qid = writer.qid

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def commit(self) -> str:
        return await self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()


class QueueIngest:
    def __init__(self, queue: QueueWriterLike, hooks: Sequence[IngestHook] = ()) -> None:
        self._queue = queue
        self._hooks = tuple(hooks)

    def open(self, submission: Submission) -> IngestWriter:
        return _Writer(submission, self._queue.open_message(submission.envelope), self._hooks)

    async def submit(self, submission: Submission, content: bytes) -> str:
        writer = self.open(submission)
        try:
            writer.write(content)
            return await writer.commit()
        except BaseException:
            writer.abort()
            raise
