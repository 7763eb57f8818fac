"""A campaign render process: ``python -m mailyard.bulk.campaigns.renderproc``.

It is started by :class:`mailyard.bulk.campaigns.renderpool.RenderPool` with a pipe
on its standard input and output, reads calls from the campaign worker (a pickled
``(function, arguments)`` after a 4-byte length), answers each with
``(True, result)`` or ``(False, exception)`` the same way, and exits at the end of
its input: when the campaign worker closes the pipe or dies, however it dies.

Why not :mod:`multiprocessing`: its ``spawn`` start re-imports the parent's main
module in the child and starts a resource-tracker process (another interpreter,
about 15 MiB) for the pool's semaphores; ``fork`` from a process with threads and
SQLite connections is not safe.  This module imports nothing of Mailyard by itself:
what the calls need (rendering, DKIM signing) is imported by unpickling them, and no
more.  The pickles come from the parent process only.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    size = HEADER.unpack(head)[0]
    data = stream.read(size)
    return data if len(data) == size else None


def write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def serve(calls: BinaryIO, answers: BinaryIO) -> None:
    while (frame := read_frame(calls)) is not None:
        function, args = pickle.loads(frame)
        try:
            answer = (True, function(*args))
        except Exception as exc:  # handed to the caller, as an executor does
            answer = (False, exc)
        write_frame(answers, pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign worker stops us
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, not into the answers
    serve(sys.stdin.buffer, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
