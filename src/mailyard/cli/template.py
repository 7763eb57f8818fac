"""``mailyard template``: the stored templates of transactional mail (put, list, show,
delete).

Adapters over :class:`mailyard.services.templates.MessageTemplates`, the service
behind ``/api/v1/templates``; they write the same ``data_dir/transactional.db`` the
HTTP workers read, so a template put here is used by the next ``POST
/api/v1/messages`` naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mailyard.cli.common import EXIT_OK, Handler, guarded, json_flag
from mailyard.cli.files import UsageProblem, read_stdin, read_text
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.services.errors import InvalidInput, TooLarge
from mailyard.services.setup import open_templates
from mailyard.services.templates import MAX_SOURCE
from mailyard.transactional.sqlite import StoredTemplate


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, usage_errors=(InvalidInput, TooLarge, UsageProblem))


def _body(name: str | None) -> str | None:
    if name is None:
        return None
    if name == "-":
        return read_stdin(MAX_SOURCE)
    return read_text(Path(name), MAX_SOURCE)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@_guarded
def cmd_put(args: argparse.Namespace, config: Config) -> int:
    if args.html == "-" and args.text == "-":
        raise UsageProblem("only one of --html and --text can be read from standard input")
    stored = open_templates(config).put(args.name, args.subject, _body(args.html),
                                        _body(args.text))
    print(f"template {stored.name} stored; send it with POST /api/v1/messages "
          f'{{"template": "{stored.name}", "variables": {{...}}}}')
    return EXIT_OK


def _summary(t: StoredTemplate) -> str:
    parts = [f"{len(t.html)} chars of HTML" if t.html is not None else "",
             f"{len(t.text)} chars of text" if t.text is not None else ""]
    return ", ".join(p for p in parts if p)


@_guarded
def cmd_list(args: argparse.Namespace, config: Config) -> int:
    found = open_templates(config).list()
    if args.json:
        print(json.dumps([t.to_dict() for t in found], indent=2, ensure_ascii=False))
        return EXIT_OK
    for t in found:
        print(f"{t.name:<24}  {_when(t.updated)}  {_summary(t):<36}  {printable(t.subject)}")
    print(f"-- {len(found)} template(s)")
    return EXIT_OK


@_guarded
def cmd_show(args: argparse.Namespace, config: Config) -> int:
    t = open_templates(config).get(args.name)
    if args.json:
        print(json.dumps(t.to_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"template {t.name}, updated {_when(t.updated)}")
    print(f"subject: {printable(t.subject)}")
    for label, body in (("html", t.html), ("text", t.text)):
        if body is not None:
            print(f"--- {label}")
            sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return EXIT_OK


@_guarded
def cmd_delete(args: argparse.Namespace, config: Config) -> int:
    open_templates(config).delete(args.name)
    print(f"template {args.name} deleted")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser("template", help="stored templates of transactional mail",
                       description="Templates that POST /api/v1/messages renders by name "
                                   "(\"template\": NAME), the same as /api/v1/templates.  "
                                   "See docs/templates.md.")
    ts = t.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    p = ts.add_parser("put", help="store (or replace) a template",
                      description="Compile, then store the template under NAME (an "
                                  "existing one is replaced).  Subject and bodies are "
                                  "Jinja2 (sandboxed).")
    p.add_argument("name", metavar="NAME", help="1-64 letters, digits and _ . -")
    p.add_argument("--subject", required=True, help="the subject (a template)")
    p.add_argument("--html", metavar="FILE", help="the HTML body ('-': standard input)")
    p.add_argument("--text", metavar="FILE",
                   help="the text body ('-': standard input; default: made from the HTML)")
    p.set_defaults(func=cmd_put)
    p = ts.add_parser("list", help="every template")
    json_flag(p)
    p.set_defaults(func=cmd_list)
    p = ts.add_parser("show", help="one template, subject and bodies")
    p.add_argument("name", metavar="NAME")
    json_flag(p)
    p.set_defaults(func=cmd_show)
    p = ts.add_parser("delete", help="remove a template")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_delete)
