"""``mailyard serve``: run the server."""

from __future__ import annotations

import argparse
import sys

from mailyard.config import Config


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from mailyard.daemon.listeners import ListenError
    from mailyard.daemon.supervisor import Supervisor

    try:
        return Supervisor(config).run()
    except ListenError as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="run the mail server",
        description="Run the mail server in the foreground. Without a configuration file it "
                    "runs on the embedded default: data in ./mailyard-data, a self-signed "
                    "certificate, and unprivileged ports 2525/5587/5465 on 127.0.0.1 when "
                    "not root. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    p.set_defaults(func=cmd_serve)
