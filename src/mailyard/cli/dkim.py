"""``mailyard domain dkim show|rotate DOMAIN``: a local domain's DKIM keys and the DNS
records that publish them (the keys live in ``data_dir/dkim/``, see
:mod:`mailyard.services.dkim`)."""

from __future__ import annotations

import argparse
import json
import sys

from mailyard.cli.accounts import _guarded, _parser, accounts_for
from mailyard.cli.common import json_flag
from mailyard.config import Config
from mailyard.services.dkim import DkimKeys, DkimSelector


def keys_for(config: Config) -> DkimKeys:
    def local_domains() -> list[str]:
        return [d.name for d in accounts_for(config).list_domains()]
    return DkimKeys.for_config(config, local_domains)


def _record_lines(s: DkimSelector) -> list[str]:
    return [f"{s.selector:<14} {s.state:<8} {s.algorithm:<15} {s.record_name} TXT",
            f"    \"{s.record}\""]


@_guarded
def cmd_dkim_show(args: argparse.Namespace, config: Config) -> int:
    shown = keys_for(config).show(args.domain)
    if args.json:
        print(json.dumps(shown.to_dict(), indent=2))
        return 0
    if not shown.selectors:
        print(f"{shown.domain} has no DKIM key: `mailyard domain dkim rotate {shown.domain}` "
              "makes one")
        return 0
    for selector in shown.selectors:
        print("\n".join(_record_lines(selector)))
    return 0


@_guarded
def cmd_dkim_rotate(args: argparse.Namespace, config: Config) -> int:
    keys = keys_for(config)
    if args.switch:
        shown = keys.switch(args.domain)
        if args.json:
            print(json.dumps(shown.to_dict(), indent=2))
            return 0
        active = ", ".join(s.selector for s in shown.selectors if s.state == "active")
        retired = [s for s in shown.selectors if s.state == "retired"]
        print(f"{shown.domain} now signs with: {active}")
        if retired:
            print("keep the retired records published for a few days "
                  f"({', '.join(s.record_name for s in retired)})")
        return 0
    made = keys.ensure(args.domain) if args.algorithm is None else []
    if not made:
        made = [keys.rotate(args.domain, args.algorithm or "rsa-sha256")]
    if args.json:
        print(json.dumps([m.to_dict() for m in made], indent=2))
        return 0
    for new in made:
        print("\n".join(_record_lines(new)))
    if made[-1].state == "pending":
        print(f"publish this record, wait for its TTL, then run "
              f"`mailyard domain dkim rotate {made[-1].domain} --switch`", file=sys.stderr)
    else:
        print("signing with the new key from now on: publish its record", file=sys.stderr)
    return 0


def register_domain_actions(ds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``dkim`` under ``mailyard domain``."""
    d = ds.add_parser("dkim", help="DKIM keys of a local domain",
                      description="Show a local domain's DKIM keys and the TXT records to "
                                  "publish, or rotate them with two selectors.")
    dks = d.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    p = _parser(dks, "show", "the keys (active, pending, retired) and their TXT records",
                cmd_dkim_show)
    p.add_argument("domain", metavar="DOMAIN")
    json_flag(p, "print JSON")
    p = _parser(dks, "rotate", "make a new key to publish (then --switch to sign with it)",
                cmd_dkim_rotate)
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--algorithm", default=None,
                   help="rsa-sha256 or ed25519-sha256 (default: the first keys of "
                        "[dkim] algorithms for a domain without keys, else rsa-sha256)")
    p.add_argument("--switch", action="store_true",
                   help="sign with the pending key from now on (after its record is published)")
    json_flag(p, "print JSON")
