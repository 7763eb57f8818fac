"""``mailyard serve``: run the server."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from mailyard.config import Config


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from mailyard.daemon.listeners import ListenError
    from mailyard.daemon.privileges import PrivilegeError
    from mailyard.daemon.supervisor import StartError, Supervisor

    if args.allow_root:
        config = replace(config, allow_root=True)
    try:
        return Supervisor(config).run()
    except ListenError as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return 1
    except PrivilegeError as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="run the mail server",
        description="Run the mail server in the foreground. Without a configuration file it "
                    "runs on the embedded default: data in ./mailyard-data, a self-signed "
                    "certificate, and unprivileged ports 2525/5587/5465 on 127.0.0.1 when "
                    "not root. Stops cleanly on SIGTERM or Ctrl-C. Started as root, it "
                    "binds its ports, then runs as the configured `user` (default "
                    "'mailyard').",
    )
    p.add_argument("--allow-root", action="store_true",
                   help="allow running as root when `user` is root (same as allow_root = true)")
    p.set_defaults(func=cmd_serve)
