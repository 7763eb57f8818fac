"""``mailyard user limits``: show or set a user's sending limits.

An adapter over :class:`mailyard.services.sending.SendingLimits`; the limits are in
``<data_dir>/sending.db``, which the running server reads at every MAIL.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mailyard.cli.accounts import _guarded, _parser, messages_argument, open_directory
from mailyard.cli.common import EXIT_OK, json_flag
from mailyard.config import Config
from mailyard.services.sending import LIMIT_NAMES, SendingLimits

_UNSET: Any = object()


@_guarded
def cmd_user_limits(args: argparse.Namespace, config: Config) -> int:
    service = SendingLimits.for_config(config, open_directory(config))
    changes = {name: getattr(args, name) for name in LIMIT_NAMES
               if getattr(args, name) is not _UNSET}
    shown = service.set(args.email, **changes) if changes else service.show(args.email)
    if args.json:
        print(json.dumps(shown.to_dict(), indent=2))
        return EXIT_OK
    if changes:
        print(f"sending limits of {shown.address} set")
    rows = [("limit", "used", "allowed", "source")] + [
        (name.replace("_", " "), str(used), str(limit) if limit else "unlimited", source)
        for name, used, limit, source in shown.rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(shown.address)
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return EXIT_OK


def register_user_limits(us: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = _parser(us, "limits", "show or set a user's sending limits", cmd_user_limits,
                "Without options, show what the user sent in the last hour and 24 hours "
                "and the limits in effect (its own, or the [sending] defaults).  With "
                "options, set the user's own limits.")
    p.add_argument("email", metavar="EMAIL", help="the user's address")
    for name in LIMIT_NAMES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N",
                       type=messages_argument, default=_UNSET,
                       help=f"{name.replace('_', ' ')}: a number, 0 or 'unlimited', "
                            "or 'default'")
    json_flag(p)
