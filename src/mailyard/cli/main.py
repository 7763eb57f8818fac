"""The ``mailyard`` command.

Each command group lives in its own module with a ``register(subparsers)`` function;
every handler has the signature ``handler(args, config) -> int`` (the exit code).
Exit codes: 0 success, 1 the operation failed (message on stderr), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable

from mailyard import __version__
from mailyard.config import Config, ConfigError, resolve_config
from mailyard.fs import disk_full

Handler = Callable[[argparse.Namespace, Config], int]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="configuration file (default: $MAILYARD_CONFIG, then ./mailyard.toml, "
                        "then the embedded default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailyard",
        description="Mailyard: a self-hosted mail server.",
        epilog="Exit codes: 0 success, 1 operation failed, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"mailyard {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from mailyard.cli import registry

    for register in registry.REGISTER:
        register(sub)
    for p in sub.choices.values():
        _add_common_below(p)
    return parser


def _add_common_below(p: argparse.ArgumentParser) -> None:
    """The common options on ``p`` and every parser under it (``domain dkim show``)."""
    _add_common(p)
    for action in p._subparsers._group_actions if p._subparsers else []:
        for child in getattr(action, "choices", {}).values():
            _add_common_below(child)


def _os_error_message(exc: OSError, config: Config | None) -> str:
    """One line for an operating-system error, naming the file and, when the file is
    under data_dir, the key to change."""
    what = exc.strerror or str(exc)
    name = exc.filename
    if not name:
        return what
    line = f"{name}: {what}"
    if config is not None:
        data_dir = os.path.realpath(config.data_dir)
        path = os.path.realpath(str(name))
        if path == data_dir or path.startswith(data_dir + os.sep):
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                line += (f" (data_dir is {config.data_dir}: run as the user that owns it, "
                         "or set data_dir in the configuration to a directory this user "
                         "can write)")
            else:
                line += f" (data_dir is {config.data_dir})"
    return line


def _tolerant_output() -> None:
    """Arguments and stored data may hold text the terminal cannot encode (an
    undecodable byte in argv, a surrogate): print it escaped rather than fail."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _disk_full_exit(exc: BaseException, config: Config | None) -> int:
    """A full disk (ENOSPC, EDQUOT, SQLite's "database or disk is full"): one line and
    exit status 1; the same command may be run again once space is freed."""
    where = f" in {config.data_dir}" if config is not None else ""
    print(f"mailyard: not enough disk space{where} ({exc}); free some and try again",
          file=sys.stderr)
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    # Everything Mailyard writes (queue, mailboxes, databases, logs) is private.
    os.umask(0o077)
    config: Config | None = None
    try:
        if getattr(args, "no_config", False):
            return func(args, None)  # type: ignore[arg-type]
        config = resolve_config(getattr(args, "config", None))
        if args.command != "serve":  # serve chooses its identity itself (daemon/privileges.py)
            from mailyard.daemon.privileges import cli_take_data_dir_owner

            try:
                cli_take_data_dir_owner(config.data_path)
            except OSError as exc:
                print(f"mailyard: cannot take the identity of {config.data_dir}'s owner: "
                      f"{exc.strerror}", file=sys.stderr)
                return EXIT_FAILED
        return func(args, config)
    except ConfigError as exc:
        print(f"mailyard: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if disk_full(exc):
            return _disk_full_exit(exc, config)
        if os.environ.get("MAILYARD_DEBUG"):
            traceback.print_exc()
        print(f"mailyard: {_os_error_message(exc, config)}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        if disk_full(exc):
            return _disk_full_exit(exc, config)
        where = f" in {config.data_dir}" if config is not None else ""
        print(f"mailyard: database error{where}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the last line of defence: never a traceback on the terminal
        if disk_full(exc):
            return _disk_full_exit(exc, config)
        if os.environ.get("MAILYARD_DEBUG"):
            traceback.print_exc()
        print(f"mailyard: unexpected error: {type(exc).__name__}: {exc} "
              "(set MAILYARD_DEBUG=1 to see where)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
