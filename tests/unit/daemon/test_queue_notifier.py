"""The worker's note to the supervisor about queued mail: one write per short window."""

from __future__ import annotations

import asyncio
import os

from mailyard.daemon.worker import QueueNotifier


def read_all(fd: int) -> list[bytes]:
    chunks = []
    while True:
        try:
            chunks.append(os.read(fd, 65536))
        except BlockingIOError:
            return chunks


def test_ids_queued_together_go_out_in_one_write() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    notifier = QueueNotifier(w, delay=0.05)

    async def main() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        for qid in ("Q1", "Q2"):
            notifier(qid)
        await asyncio.sleep(0)
        notifier("Q3")
        assert read_all(r) == []  # nothing written yet: sent when the window closes
        sent = loop.create_future()
        loop.add_reader(r, lambda: sent.done() or sent.set_result(None))
        await asyncio.wait_for(sent, 5)
        loop.remove_reader(r)
        first = read_all(r)
        notifier("Q4")
        await asyncio.sleep(0.2)
        return first, read_all(r)

    try:
        first, second = asyncio.run(main())
    finally:
        os.close(r)
        os.close(w)
    assert first == [b"Q1\nQ2\nQ3\n"]
    assert second == [b"Q4\n"]


def test_a_full_pipe_drops_the_note() -> None:
    r, w = os.pipe()
    notifier = QueueNotifier(w, delay=0.01)
    try:
        while True:  # fill the pipe
            os.write(w, b"x" * 65536)
    except BlockingIOError:
        pass

    async def main() -> None:
        notifier("Q1")
        await asyncio.sleep(0.2)

    try:
        asyncio.run(main())  # no error, no blocking
    finally:
        os.close(r)
        os.close(w)
