"""``mailyard serve``: run the server."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from mailyard.config import Config, ConfigError


def check_listeners(config: Config) -> None:
    """Refuse to serve nothing: at least one listener must be configured."""
    kinds = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http",
             "https")
    if not any(getattr(config.listen, kind) for kind in kinds):
        raise ConfigError("listen", "no listener configured: set at least one of "
                                    + ", ".join(f"listen.{kind}" for kind in kinds)
                                    + " (or remove [listen] to use the defaults)")


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from mailyard.daemon.listeners import ListenError
    from mailyard.daemon.lock import AlreadyRunning, acquire_serve_lock
    from mailyard.daemon.privileges import PrivilegeError, server_identity
    from mailyard.daemon.supervisor import StartError, Supervisor

    if args.allow_root:
        config = replace(config, allow_root=True)
    check_listeners(config)
    if config.listen_defaulted:
        print(f"mailyard: {config.source} has no [listen] table: using the default listeners",
              file=sys.stderr)
    try:
        server_identity(config)  # refuse a bad user/group before creating anything
        lock_fd = acquire_serve_lock(config.data_path)
    except (AlreadyRunning, PrivilegeError) as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return 2
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
        return 2
    finally:
        os.close(lock_fd)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="run the mail server",
        description="Run the mail server in the foreground. Without a configuration file it "
                    "runs on the embedded default: data in ./mailyard-data, a self-signed "
                    "certificate, and unprivileged ports 2525/5587/5465 (SMTP), 5110/5995 "
                    "(POP3) and 5143/5993 (IMAP) on 127.0.0.1 when not root, and HTTP (the "
                    "API) on 127.0.0.1:8025. Only one server runs on a data directory at a "
                    "time. Stops "
                    "cleanly on SIGTERM or Ctrl-C. Started as root, it binds its ports, then "
                    "runs as the configured `user` (default 'mailyard').",
    )
    p.add_argument("--allow-root", action="store_true",
                   help="allow running as root when `user` is root (same as allow_root = true)")
    p.set_defaults(func=cmd_serve)
