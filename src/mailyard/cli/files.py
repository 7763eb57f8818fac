"""Reading the files a command is given (a campaign file, a template body), the same
way for every command: bounded, UTF-8, and a failure that names the file and ends
in exit status 2 rather than a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

from mailyard.cli.terminal import printable

__all__ = ["UsageProblem", "read_stdin", "read_text"]


class UsageProblem(Exception):
    """Bad arguments or an unreadable file (exit status 2)."""


def read_text(path: Path, limit: int) -> str:
    """The UTF-8 text of ``path``, at most ``limit`` bytes."""
    try:
        with path.open("rb") as source:
            data = source.read(limit + 1)
    except OSError as exc:
        raise UsageProblem(f"cannot read {printable(str(path))}: {exc.strerror or exc}") \
            from None
    except ValueError as exc:  # an embedded NUL in the name
        raise UsageProblem(f"cannot read {printable(str(path))}: {exc}") from None
    if len(data) > limit:
        raise UsageProblem(f"{printable(str(path))} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"{printable(str(path))} is not UTF-8") from None


def read_stdin(limit: int) -> str:
    """Standard input, at most ``limit`` characters."""
    text = sys.stdin.read(limit + 1)
    if len(text) > limit:
        raise UsageProblem(f"standard input is larger than {limit} characters")
    return text
