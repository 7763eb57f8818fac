"""The ``mailyard`` command.

Each command group lives in its own module with a ``register(subparsers)`` function;
every handler has the signature ``handler(args, config) -> int`` (the exit code).
Exit codes: 0 success, 1 the operation failed (message on stderr), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from mailyard.config import Config, ConfigError, resolve_config

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
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from mailyard.cli import registry

    for register in registry.REGISTER:
        register(sub)
    for p in sub.choices.values():
        _add_common(p)
        for action in p._subparsers._group_actions if p._subparsers else []:
            for child in getattr(action, "choices", {}).values():
                _add_common(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        config = resolve_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"mailyard: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Everything Mailyard writes (queue, mailboxes, databases, logs) is private.
    os.umask(0o077)
    if args.command != "serve":  # serve chooses its identity itself (daemon/privileges.py)
        from mailyard.daemon.privileges import cli_take_data_dir_owner

        try:
            cli_take_data_dir_owner(config.data_path)
        except OSError as exc:
            print(f"mailyard: cannot take the identity of {config.data_dir}'s owner: "
                  f"{exc.strerror}", file=sys.stderr)
            return EXIT_FAILED
    try:
        return func(args, config)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
