"""``mailyard check bounce FILE [--json] [--rcpt ADDR]``: how Mailyard reads a bounce,
delay notice, complaint or auto-reply (a saved message, or ``-`` for standard input).

The command joins the ``check`` group of diagnostics: it creates the group when no
other module has, and adds itself to the group otherwise (so it is registered after
any module that creates ``check``).  With ``--rcpt`` (the envelope recipient the
report was sent to) the VERP token is verified with the server secret in data_dir;
without it, the Return-Path of a returned original is tried.  Reading the message is
the check: any classification exits 0; an unreadable file exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mailyard.cli.common import json_flag
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.daemon.secret import SECRET_NAME, ServerSecretError, load_server_secret
from mailyard.feedback.classify import classify, locate
from mailyard.feedback.model import Feedback
from mailyard.feedback.verp import CampaignRecipient, VerpTarget, verp_key

EXIT_OK, EXIT_FAILED = 0, 1
MAX_READ = 16 * 1024 * 1024


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    checks = _check_group(sub)
    p = checks.add_parser(
        "bounce", help="classify a bounce, complaint or auto-reply saved in a file",
        description="Reads a message (FILE, or - for standard input) as the campaign "
                    "engine does and prints the verdict (hard-bounce, soft-bounce, "
                    "complaint, auto-reply, not-bounce), the format, each recipient with "
                    "its status, and the fields that map it to a campaign and contact.")
    p.add_argument("file", metavar="FILE", help="the message (- for standard input)")
    p.add_argument("--rcpt", metavar="ADDR",
                   help="the envelope recipient (the VERP address) the report was sent to")
    json_flag(p, "print the result as JSON")
    p.set_defaults(func=cmd_check_bounce)


def _check_group(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    group = sub.choices.get("check")
    if group is not None and group._subparsers is not None:
        for action in group._subparsers._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    group = sub.add_parser("check", help="diagnostics")
    group.set_defaults(func=lambda args, config: _usage("check: name a check: bounce"))
    return group.add_subparsers(dest="check", metavar="CHECK")


def _usage(message: str) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return 2


def cmd_check_bounce(args: argparse.Namespace, config: Config) -> int:
    try:
        if args.file == "-":
            raw = sys.stdin.buffer.read(MAX_READ)
        else:
            with open(args.file, "rb") as fh:
                raw = fh.read(MAX_READ)
    except OSError as exc:
        print(f"mailyard: {printable(args.file)}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    result = classify(raw)
    target, verp_note = _target(result, args.rcpt, config)
    if args.json:
        data: dict[str, Any] = result.to_json()
        data["target"] = _target_json(target)
        if verp_note:
            data["target_note"] = verp_note
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    for line in _lines(result, target, verp_note):
        print(line)
    return EXIT_OK


def _target(result: Feedback, rcpt: str | None,
            config: Config) -> tuple[VerpTarget | None, str]:
    path = config.data_path / SECRET_NAME
    if not path.exists():
        return None, f"no server secret at {path}: VERP tokens cannot be verified"
    try:
        key = verp_key(load_server_secret(config.data_path))
    except ServerSecretError as exc:
        return None, str(exc)
    target = locate(result, key, rcpt)
    if target is None and rcpt:
        return None, "the recipient is not a VERP address of this server (or is forged)"
    return target, ""


def _target_json(target: VerpTarget | None) -> dict[str, object] | None:
    if target is None:
        return None
    if isinstance(target, CampaignRecipient):
        return {"campaign_id": target.campaign_id, "contact_id": target.contact_id}
    return {"message_id": target.message_id}


def _lines(result: Feedback, target: VerpTarget | None, note: str) -> list[str]:
    lines = [f"{result.verdict} ({result.format})"]
    for r in result.recipients:
        fields = [r.address or "(recipient not named)", str(r.severity), r.action]
        if r.status:
            fields.append(r.status)
        lines.append("recipient: " + printable("  ".join(fields)))
        if r.diagnostic:
            lines.append("  diagnostic: " + printable(r.diagnostic))
        if r.remote_mta:
            lines.append("  remote-mta: " + printable(r.remote_mta))
    c = result.complaint
    if c is not None:
        lines.append(f"complaint: feedback-type {printable(c.feedback_type)}")
        for name, value in (("user-agent", c.user_agent),
                            ("original-mail-from", c.original_mail_from),
                            ("original-rcpt-to", ", ".join(c.original_rcpt_to) or None),
                            ("source-ip", c.source_ip), ("arrival-date", c.arrival_date)):
            if value:
                lines.append(f"  {name}: {printable(value)}")
    o = result.original
    if o is not None:
        lines.append("original message:")
        for name, value in (("message-id", o.message_id), ("return-path", o.return_path),
                            ("list-id", o.list_id), ("feedback-id", o.feedback_id),
                            ("subject", o.subject)):
            if value:
                lines.append(f"  {name}: {printable(value)}")
    if isinstance(target, CampaignRecipient):
        lines.append(f"verp: campaign {target.campaign_id}, contact {target.contact_id}")
    elif target is not None:
        lines.append(f"verp: message {printable(target.message_id)}")
    elif note:
        lines.append(f"verp: {note}")
    for extra in result.notes:
        lines.append(f"note: {extra}")
    return lines
