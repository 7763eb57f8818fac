"""``mailyard init``: write a commented starting configuration.

The file names only the keys a new server needs (hostname, data_dir, local domains,
listeners); every other key keeps its documented default (docs/configuration.md).
The text is checked by the same loader ``serve`` uses before it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mailyard.config import ConfigError, default_listen, parse_config
from mailyard.config import _default_hostname as default_hostname

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TEMPLATE = """\
# Mailyard configuration, written by `mailyard init`.
# Every key and its default: docs/configuration.md.
# Check it with `mailyard --config {path} domain list`.

# The name this server gives in its SMTP greeting and Received lines: the host name
# that your domains' MX records point to.
hostname = {hostname}

# Queue, mailboxes (Maildir++), the user directory and TLS keys live here.
data_dir = {data_dir}

# Mail for these domains is delivered to local mailboxes (more with `mailyard domain add`).
local_domains = {domains}

[listen]
# Where the server accepts connections. These listen on {where}.
# For a public server, as root (or with CAP_NET_BIND_SERVICE, docs/deployment.md):
#   smtp = ["0.0.0.0:25", "[::]:25"]
#   submission = ["0.0.0.0:587", "[::]:587"]
#   submissions = ["0.0.0.0:465", "[::]:465"]
#   pop3 = ["0.0.0.0:110", "[::]:110"]
#   pop3s = ["0.0.0.0:995", "[::]:995"]
#   imap = ["0.0.0.0:143", "[::]:143"]
#   imaps = ["0.0.0.0:993", "[::]:993"]
# Incoming mail from other servers (port 25):
smtp = {smtp}
# Your users' mail programs, STARTTLS + AUTH (port 587):
submission = {submission}
# The same over implicit TLS (port 465):
submissions = {submissions}
# Mail retrieval over POP3, STLS then login (port 110), and over implicit TLS (port 995):
pop3 = {pop3}
pop3s = {pop3s}
# Mail access over IMAP, STARTTLS then login (port 143), and over implicit TLS (port 993):
imap = {imap}
imaps = {imaps}
# The HTTP service (JSON API at /api/v1, docs at /api/docs, subscribe pages); https
# listeners use the [tls] certificate. Set http.public_url for links in mail.
http = {http}

[tls]
# A certificate for `hostname` (for example from Let's Encrypt). Without one, a
# self-signed certificate is generated in data_dir/tls on first start.
# cert = "/etc/letsencrypt/live/mx.example.org/fullchain.pem"
# key = "/etc/letsencrypt/live/mx.example.org/privkey.pem"
"""


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def _parent_domain(hostname: str) -> str:
    labels = hostname.split(".")
    return ".".join(labels[1:]) if len(labels) >= 3 else hostname


def render(path: str, hostname: str, data_dir: str, domains: list[str]) -> str:
    listen = default_listen()
    where = ("127.0.0.1 only, on the standard ports" if listen.smtp[0].endswith(":25")
             else "127.0.0.1 only, on unprivileged ports (not running as root)")
    return TEMPLATE.format(
        path=path, hostname=_toml_str(hostname), data_dir=_toml_str(data_dir),
        domains=_toml_list(domains), where=where, smtp=_toml_list(listen.smtp),
        submission=_toml_list(listen.submission), submissions=_toml_list(listen.submissions),
        pop3=_toml_list(listen.pop3), pop3s=_toml_list(listen.pop3s),
        imap=_toml_list(listen.imap), imaps=_toml_list(listen.imaps),
        http=_toml_list(listen.http))


def cmd_init(args: argparse.Namespace, _config: object) -> int:
    path = Path(args.output)
    hostname = args.hostname or default_hostname()
    domains = args.domain or [_parent_domain(hostname)]
    data_dir = args.data_dir or str(Path("mailyard-data").resolve())
    text = render(str(path), hostname, data_dir, domains)
    try:
        parse_config(text, str(path))
    except ConfigError as exc:
        print(f"mailyard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if path.exists() and not args.force:
        print(f"mailyard: {path} already exists; pass --force to overwrite it", file=sys.stderr)
        return EXIT_FAILED
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    cfg = f" --config {path}" if path.name != "mailyard.toml" or path.parent != Path(".") else ""
    print(f"wrote {path}")
    print("next steps:")
    print("  1. read it and adjust hostname, local_domains and [listen]")
    print(f"  2. add a user:       mailyard{cfg} user add you@{domains[0]}")
    print(f"  3. start the server: mailyard{cfg} serve")
    print("  4. publish DNS records (MX, SPF) as docs/deployment.md shows")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "init", help="write a starting configuration file",
        description="Write a commented configuration (hostname, data_dir, local domains, "
                    "listeners) and print the next steps. Refuses to overwrite an "
                    "existing file unless --force is given.")
    p.add_argument("--output", "-o", metavar="PATH", default="mailyard.toml",
                   help="where to write it (default: ./mailyard.toml)")
    p.add_argument("--hostname", help="this server's host name (default: the machine's name)")
    p.add_argument("--domain", action="append", metavar="DOMAIN",
                   help="a local domain (repeatable; default: the host name's parent domain)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data directory (default: ./mailyard-data, as an absolute path)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init, no_config=True)
