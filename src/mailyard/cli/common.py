"""What the subcommands share: the exit statuses, the one-line error on stderr, the
guard that turns a refused service call into that line and a status instead of a
traceback, and the ``--json`` flag.

Commands differ only in which refusals count as usage errors (exit status 2: the
operator asked the wrong thing) rather than failures (1), so :func:`guarded` takes
those as parameters.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Collection

from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.services.errors import ServiceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Config], int]


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return code


def guarded(handler: Handler, *, usage_codes: Collection[str] = frozenset(),
            usage_errors: tuple[type[Exception], ...] = (),
            show: Callable[[object], str] = printable) -> Handler:
    """``handler`` with its refusals turned into a message on stderr and exit status
    2 for ``usage_errors`` and a ServiceError whose code is in ``usage_codes``, else 1.
    ``show`` renders the message (default: :func:`printable`)."""
    @functools.wraps(handler)
    def run(args: argparse.Namespace, config: Config) -> int:
        try:
            return handler(args, config)
        except usage_errors as exc:
            return fail(show(exc), EXIT_USAGE)
        except ServiceError as exc:
            return fail(show(exc), EXIT_USAGE if exc.code in usage_codes else EXIT_FAILED)
    return run


def json_flag(p: argparse.ArgumentParser, help_text: str = "machine-readable output") -> None:
    """The ``--json`` option of a command that can print its result as JSON."""
    p.add_argument("--json", action="store_true", help=help_text)
