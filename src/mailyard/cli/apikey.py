"""``mailyard apikey``: keys for the HTTP API (create, list, revoke).

The key is printed once, on standard output, when it is created; only its SHA-256
digest is stored (``data_dir/apikeys.db``), so a lost key is revoked and replaced.
"""

from __future__ import annotations

import argparse
import json
import time

from mailyard.cli.accounts import _guarded, _parser
from mailyard.cli.common import EXIT_OK, json_flag
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.services.setup import open_apikeys


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "never"


@_guarded
def cmd_create(args: argparse.Namespace, config: Config) -> int:
    created = open_apikeys(config).create(
        args.name, args.scope, pool=args.pool or "", senders=args.sender or (),
        pools=[p.name for p in config.delivery.pools])
    if args.json:
        print(json.dumps(created.to_dict(), indent=2))
        return EXIT_OK
    scopes = ",".join(sorted(created.key.scopes))
    print(created.secret)
    pool = f", pool {created.key.pool}" if created.key.pool else ""
    print(f"# key {created.key.key_id} ({printable(created.key.name)}, scopes {scopes}"
          f"{pool}): shown this once; send it as 'Authorization: Bearer <key>'")
    return EXIT_OK


@_guarded
def cmd_list(args: argparse.Namespace, config: Config) -> int:
    keys = open_apikeys(config).list()
    if not args.all:
        keys = [k for k in keys if k.active]
    if args.json:
        print(json.dumps([k.to_dict() for k in keys], indent=2))
        return EXIT_OK
    for k in keys:
        state = "active" if k.active else f"revoked {_when(k.revoked)}"
        print(f"{k.key_id}  {printable(k.name):<20}  {','.join(sorted(k.scopes)):<24}  "
              f"created {_when(k.created)}  last used {_when(k.last_used)}  {state}"
              f"{'  pool ' + k.pool if k.pool else ''}")
    print(f"-- {len(keys)} key(s)")
    return EXIT_OK


@_guarded
def cmd_revoke(args: argparse.Namespace, config: Config) -> int:
    key = open_apikeys(config).revoke(args.key)
    print(f"key {key.key_id} ({printable(key.name)}) revoked")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("apikey", help="manage API keys of the HTTP service",
                       description="Manage the keys that authenticate HTTP API clients.")
    s = a.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    p = _parser(s, "create", "create a key (printed once)", cmd_create,
                "Create an API key and print it once.  Scopes: send, contacts, campaigns, "
                "admin (admin includes the others).")
    p.add_argument("--name", required=True, help="a name for the key, unique among active keys")
    p.add_argument("--scope", required=True, metavar="SCOPES",
                   help="comma-separated scopes, e.g. contacts,send")
    p.add_argument("--pool", metavar="NAME",
                   help="send this key's messages through the [[delivery.pools]] pool NAME")
    p.add_argument("--sender", action="append", metavar="ADDRESS|DOMAIN",
                   help="an address or domain this key may send as (repeatable; "
                        "default: any local domain)")
    json_flag(p)
    p = _parser(s, "list", "list keys with their last use", cmd_list)
    p.add_argument("--all", action="store_true", help="revoked keys too")
    json_flag(p)
    p = _parser(s, "revoke", "revoke a key (by id or name)", cmd_revoke)
    p.add_argument("key", metavar="KEY", help="the key's id or name")
