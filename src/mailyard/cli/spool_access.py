"""Opening the queue from a CLI command (the same storage the running server uses)."""

from __future__ import annotations

import sys

from mailyard.config import Config


def open_spool(config: Config):  # type: ignore[no-untyped-def]
    from mailyard.queue.spool import FileSpool

    root = config.data_path / "queue"
    root.mkdir(parents=True, exist_ok=True)
    return FileSpool(root, config.hostname)


def fail(message: str) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return 1
