"""``mailyard campaign``: create, check, schedule and follow bulk campaigns.

Adapters over :class:`mailyard.services.campaigns.Campaigns` (the same service the
HTTP API calls): parse the arguments and the campaign file, call the service, print
its result.  They write the same ``data_dir/bulk.db`` the server reads; the campaign
runner of ``mailyard serve`` sends a scheduled campaign when its time comes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from mailyard.bulk.campaigns.input import (
    MAX_TEMPLATE,
    CampaignInput,
    InvalidCampaign,
    format_local,
    input_from_mapping,
    parse_domain_cap,
)
from mailyard.bulk.campaigns.model import Campaign, CampaignState
from mailyard.bulk.report import render_table
from mailyard.cli.common import EXIT_FAILED, EXIT_OK, Handler, guarded, json_flag
from mailyard.cli.common import fail as _fail
from mailyard.cli.files import UsageProblem, read_stdin, read_text
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.services.campaigns import CampaignCheck, Campaigns, CheckFailed
from mailyard.services.report_pages import DEFAULT_TTL, MAX_TTL

MAX_CAMPAIGN_FILE = 4 * MAX_TEMPLATE
_USAGE_CODES = frozenset({"invalid_campaign", "invalid_schedule", "invalid_template",
                          "invalid_ttl"})


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, usage_codes=_USAGE_CODES,
                   usage_errors=(UsageProblem, InvalidCampaign))


def _service(config: Config, args: argparse.Namespace | None = None) -> Campaigns:
    from mailyard.services.setup import open_campaigns

    dns = getattr(args, "dns", None)
    if dns:
        from mailyard.dns.dnspython import DnsPythonResolver

        try:
            DnsPythonResolver([dns])
        except ValueError as exc:
            raise UsageProblem(f"--dns: {exc}") from None
    return open_campaigns(config, dns_servers=[dns] if dns else None)


# --- the campaign file and the flags ---------------------------------------------------
def _file_input(name: str) -> CampaignInput:
    if name == "-":
        text = read_stdin(MAX_CAMPAIGN_FILE)
        base = Path.cwd()
    else:
        path = Path(name)
        text = read_text(path, MAX_CAMPAIGN_FILE)
        base = path.parent
    try:
        if name.lower().endswith(".json") or text.lstrip().startswith("{"):
            data: Any = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageProblem(f"{printable(name)}: not valid TOML or JSON: {exc}") from None
    return input_from_mapping(data, lambda p: read_text(base / p, MAX_TEMPLATE))


def _flag_input(args: argparse.Namespace) -> CampaignInput:
    inp = CampaignInput(name=args.name, subject=args.subject, segment=args.segment,
                        pool=args.pool, rate_per_minute=args.rate, timezone=args.timezone,
                        tracking=args.tracking, reply_to=args.reply_to,
                        from_name=args.from_name)
    if args.sender is not None:
        inp = input_from_mapping({"from": args.sender}).merged(inp)
    if args.html is not None:
        inp.html = read_text(Path(args.html), MAX_TEMPLATE)
    if args.text is not None:
        inp.text = read_text(Path(args.text), MAX_TEMPLATE)
    if args.lists:
        inp.lists = list(args.lists)
    if args.tags:
        inp.tags = list(args.tags)
    if args.domain_caps:
        inp.domain_caps = dict(parse_domain_cap(c) for c in args.domain_caps)
    if args.ab_subjects:
        ab: dict[str, Any] = {"subjects": list(args.ab_subjects)}
        for key in ("sample_percent", "wait_hours", "metric"):
            value = getattr(args, f"ab_{key}")
            if value is not None:
                ab[key] = value
        inp.ab = ab
    elif args.no_ab:
        inp.ab = {}
    return inp


def _input(args: argparse.Namespace) -> CampaignInput:
    flags = _flag_input(args)
    return _file_input(args.file).merged(flags) if args.file else flags


# --- printing --------------------------------------------------------------------------
def _when(campaign: Campaign, at: float | None) -> str:
    return format_local(at, campaign.spec.timezone) if at else "-"


def _print_campaign(campaigns: Campaigns, c: Campaign) -> None:
    s = c.spec
    print(f"campaign {c.id}: {printable(c.name)} ({c.state.value})")
    print(f"  from: {printable(s.from_name)} <{printable(s.from_address)}>"
          if s.from_name else f"  from: {printable(s.from_address) or '-'}")
    print(f"  subject: {printable(s.subject) or '-'}")
    print(f"  lists: {', '.join(s.lists) or '-'}   segment: {printable(s.segment) or '-'}")
    print(f"  pool: {s.pool or '(default)'}   rate: "
          f"{f'{s.rate_per_minute}/min' if s.rate_per_minute else 'no limit'}   tracking: "
          f"{'on' if s.tracking else 'off'}   time zone: {s.timezone}")
    for domain, cap in sorted(s.domain_caps.items()):
        print(f"  cap {domain}: {cap}/hour")
    ab = s.extra.get("ab")
    if isinstance(ab, dict):
        print(f"  A/B: {len(ab.get('subjects', []))} subjects to {ab.get('sample_percent')}% "
              f"of the recipients, winner by {ab.get('metric')} after "
              f"{ab.get('wait_hours')} h")
        for subject in ab.get("subjects", []):
            print(f"    - {printable(str(subject))}")
    print(f"  body: {len(s.html)} chars of HTML, {len(s.text)} chars of text"
          f"{' (made from the HTML)' if not s.text else ''}")
    print(f"  send at: {_when(c, c.send_at)}   started: {_when(c, c.started)}   "
          f"finished: {_when(c, c.finished)}")


def _print_check(check: CampaignCheck) -> None:
    for f in check.report.findings:
        print(f"{f.severity.value:<8} {f.code:<24} {printable(f.message)}")
    print(f"-- campaign {check.campaign_id}, sample {printable(check.sample)}: "
          f"{len(check.report.errors)} error(s), {len(check.report.warnings)} warning(s)")


# --- the commands ----------------------------------------------------------------------
@_guarded
def cmd_create(args: argparse.Namespace, config: Config) -> int:
    campaigns = _service(config)
    created = campaigns.create(_input(args))
    if args.json:
        print(json.dumps(campaigns.describe(created), indent=2, ensure_ascii=False))
    else:
        print(f"campaign {created.id} ({printable(created.name)}) created as a draft; "
              f"next: mailyard campaign check {created.id}")
    return EXIT_OK


@_guarded
def cmd_edit(args: argparse.Namespace, config: Config) -> int:
    campaigns = _service(config)
    campaign = campaigns.get(args.campaign)
    edited = campaigns.edit(campaign.id, _input(args))
    if args.json:
        print(json.dumps(campaigns.describe(edited), indent=2, ensure_ascii=False))
    else:
        print(f"campaign {edited.id} updated")
    return EXIT_OK


@_guarded
def cmd_show(args: argparse.Namespace, config: Config) -> int:
    campaigns = _service(config)
    campaign = campaigns.get(args.campaign)
    if args.json:
        print(json.dumps(campaigns.describe(campaign), indent=2, ensure_ascii=False))
    else:
        _print_campaign(campaigns, campaign)
    return EXIT_OK


@_guarded
def cmd_list(args: argparse.Namespace, config: Config) -> int:
    campaigns = _service(config)
    found = campaigns.list(CampaignState(args.state) if args.state else None)
    if args.json:
        print(json.dumps([campaigns.describe(c) for c in found], indent=2,
                         ensure_ascii=False))
        return EXIT_OK
    for c in found:
        print(f"{c.id:>5}  {c.state.value:<9}  {_when(c, c.send_at):<40}  {printable(c.name)}")
    print(f"-- {len(found)} campaign(s)")
    return EXIT_OK


@_guarded
def cmd_check(args: argparse.Namespace, config: Config) -> int:
    check = _service(config, args).check(args.campaign, args.contact)
    if args.json:
        print(json.dumps(check.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_check(check)
    return EXIT_OK if check.ok else EXIT_FAILED


@_guarded
def cmd_schedule(args: argparse.Namespace, config: Config) -> int:
    try:
        done = _service(config, args).schedule(args.campaign, args.at, args.tz,
                                               force=args.force)
    except CheckFailed as exc:
        _print_check(exc.check)
        return _fail(printable(exc), EXIT_FAILED)
    c = done.campaign
    if done.check is not None and done.check.report.findings and not args.json:
        _print_check(done.check)
    if args.json:
        print(json.dumps({"campaign": c.to_dict(),
                          "check": done.check.to_dict() if done.check else None}, indent=2,
                         ensure_ascii=False))
    else:
        shown = format_local(c.send_at, args.tz or c.spec.timezone) if c.send_at else "-"
        print(f"campaign {c.id} scheduled for {shown}")
    return EXIT_OK


def _mover(name: str) -> Handler:
    @_guarded
    def cmd(args: argparse.Namespace, config: Config) -> int:
        moved: Campaign = getattr(_service(config), name)(args.campaign)
        print(f"campaign {moved.id} is now {moved.state.value}")
        return EXIT_OK
    return cmd


@_guarded
def cmd_preview(args: argparse.Namespace, config: Config) -> int:
    preview = _service(config).preview(args.campaign, args.contact)
    if args.json:
        print(json.dumps(preview.to_dict(), indent=2, ensure_ascii=False))
    elif args.raw:
        sys.stdout.write(preview.message.decode("utf-8", "replace").replace("\r\n", "\n"))
    elif args.html:
        sys.stdout.write(preview.html or "")
    else:
        print(f"To: {printable(preview.address)}\nSubject: {printable(preview.subject)}\n")
        sys.stdout.write(preview.text)
    return EXIT_OK


@_guarded
def cmd_test(args: argparse.Namespace, config: Config) -> int:
    from mailyard.cli.send import can_write_queue
    from mailyard.cli.spool_access import open_spool
    from mailyard.ingest.api import IngestRefused
    from mailyard.ingest.pipeline import ingest_for
    from mailyard.services.campaigns import submit_mail

    mail = _service(config).test_message(args.campaign, args.to, args.contact)
    if not can_write_queue(config):
        return _fail(f"cannot write the queue in {config.data_dir}: run as its owner")
    try:
        qid = asyncio.run(submit_mail(ingest_for(config, open_spool(config)), mail))
    except IngestRefused as exc:
        return _fail(f"the test message was refused: {exc.reply}")
    print(f"test message to {mail.recipient} queued as {qid}")
    return EXIT_OK


@_guarded
def cmd_report(args: argparse.Namespace, config: Config) -> int:
    report = _service(config).report(args.campaign)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, allow_nan=False))
    else:
        render_table(report, sys.stdout)
    return EXIT_OK


@_guarded
def cmd_report_link(args: argparse.Namespace, config: Config) -> int:
    from mailyard.services.setup import open_campaign_reports

    campaigns = _service(config)
    campaign = campaigns.get(args.campaign)
    link = open_campaign_reports(config, campaigns.store).link(campaign.id, args.ttl)
    if args.json:
        print(json.dumps({"url": link.url, "expires": link.expires}))
    else:
        print(link.url)
        print(f"-- valid until {format_local(link.expires, campaign.spec.timezone)}",
              file=sys.stderr)
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------
def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="a campaign file (TOML or JSON; '-': standard input); the flags "
                        "override its settings")
    p.add_argument("--name", help="the campaign's name (unique)")
    p.add_argument("--from", dest="sender", metavar="ADDRESS",
                   help="the From address ('Name <address>' or an address)")
    p.add_argument("--from-name", metavar="NAME", help="the From display name")
    p.add_argument("--reply-to", metavar="ADDRESS")
    p.add_argument("--subject", help="the subject (a template: {{ name }} works)")
    p.add_argument("--html", metavar="FILE", help="the HTML template")
    p.add_argument("--text", metavar="FILE",
                   help="the text template (default: made from the HTML)")
    p.add_argument("--list", dest="lists", action="append", metavar="LIST",
                   help="a list to send to (repeat for several; recipients on more than "
                        "one get one message)")
    p.add_argument("--segment", metavar="EXPR",
                   help="only contacts matching this, e.g. 'plan = \"pro\" and opened "
                        "within 30 days'")
    p.add_argument("--pool", help="the [[delivery.pools]] to send through")
    p.add_argument("--rate", type=int, metavar="PER_MINUTE",
                   help="messages per minute overall (0: no limit)")
    p.add_argument("--domain-cap", dest="domain_caps", action="append",
                   metavar="DOMAIN=PER_HOUR", help="at most this many per hour to a "
                   "destination domain, e.g. gmail.com=300 (repeatable)")
    p.add_argument("--tracking", action=argparse.BooleanOptionalAction, default=None,
                   help="open and click tracking (default on)")
    p.add_argument("--timezone", metavar="ZONE",
                   help="the campaign's time zone for schedule times (IANA, e.g. "
                        "Europe/Berlin; default UTC)")
    p.add_argument("--tag", dest="tags", action="append", metavar="TAG")
    p.add_argument("--ab-subject", dest="ab_subjects", action="append", metavar="SUBJECT",
                   help="an A/B subject line (give 2 to 10)")
    p.add_argument("--ab-sample-percent", type=float, metavar="PERCENT",
                   help="the share of recipients the A/B variants go to first (default 20)")
    p.add_argument("--ab-wait-hours", type=float, metavar="HOURS",
                   help="hours before the winner is chosen (default 4)")
    p.add_argument("--ab-metric", choices=("opens", "clicks"),
                   help="the winner by unique opens or clicks (default opens)")
    p.add_argument("--no-ab", action="store_true", help="switch the A/B test off")
    json_flag(p)


def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("campaign", metavar="CAMPAIGN", help="the campaign's id or name")


def _dns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dns", metavar="HOST:PORT", help="send the lookups to this DNS server")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("campaign", help="bulk campaigns: create, check, schedule, report",
                       description="Bulk campaigns to mailing lists: write one (a campaign "
                                   "file and/or flags), check it, schedule it, follow its "
                                   "report.  See docs/campaigns.md.")
    cs = c.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    p = cs.add_parser("create", help="create a draft campaign",
                      description="Create a draft from a campaign file (TOML or JSON: name, "
                                  "from, subject, html or html_file, text or text_file, "
                                  "lists, segment, pool, rate, domain_caps, tracking, "
                                  "timezone, tags, ab) and/or flags.")
    _settings_flags(p)
    p.set_defaults(func=cmd_create)
    p = cs.add_parser("edit", help="change a draft",
                      description="Change a draft's settings (only what is given).")
    _id(p)
    _settings_flags(p)
    p.set_defaults(func=cmd_edit)
    p = cs.add_parser("show", help="one campaign's settings and state")
    _id(p)
    json_flag(p)
    p.set_defaults(func=cmd_show)
    p = cs.add_parser("list", help="every campaign")
    p.add_argument("--state", choices=[s.value for s in CampaignState])
    json_flag(p)
    p.set_defaults(func=cmd_list)
    p = cs.add_parser("check", help="check a campaign before sending",
                      description="Render the message for a sample contact and list errors "
                                  "and warnings: SPF, DKIM and DMARC of the From domain "
                                  "(looked up live), the unsubscribe link and List-"
                                  "Unsubscribe header, the text part, the HTML size (Gmail "
                                  "clips beyond 102 KB), links, image alt texts.  Exit status "
                                  "1 when there are errors.")
    _id(p)
    p.add_argument("--contact", metavar="ADDRESS", help="render for this contact (default: "
                   "the first confirmed member)")
    _dns(p)
    json_flag(p)
    p.set_defaults(func=cmd_check)
    p = cs.add_parser("schedule", help="send a draft at a time, or now",
                      description="Check the campaign, then schedule it; refused when the "
                                  "check finds errors, unless --force.")
    _id(p)
    p.add_argument("--at", default="now", metavar="TIME",
                   help="'YYYY-MM-DD HH:MM' (in --tz) or 'now' (the default)")
    p.add_argument("--tz", metavar="ZONE", help="the time zone of --at (default: the "
                   "campaign's), e.g. Europe/Berlin")
    p.add_argument("--force", action="store_true", help="schedule despite check errors")
    _dns(p)
    json_flag(p)
    p.set_defaults(func=cmd_schedule)
    for name, help_text in (("unschedule", "back to draft (a scheduled campaign)"),
                            ("pause", "stop sending for now (a sending campaign)"),
                            ("resume", "go on sending (a paused campaign)"),
                            ("cancel", "stop for good (nothing more is sent)")):
        p = cs.add_parser(name, help=help_text)
        _id(p)
        p.set_defaults(func=_mover(name))
    p = cs.add_parser("preview", help="the message for one contact",
                      description="Render the message for a contact (default: the first "
                                  "confirmed member); links shown as written.")
    _id(p)
    p.add_argument("--contact", metavar="ADDRESS")
    p.add_argument("--raw", action="store_true", help="the whole MIME message")
    p.add_argument("--html", action="store_true", help="the HTML part only")
    json_flag(p)
    p.set_defaults(func=cmd_preview)
    p = cs.add_parser("test", help="send one test message",
                      description="Queue one message to --to, rendered for a contact, the "
                                  "subject marked [Test]; its unsubscribe link names nobody.")
    _id(p)
    p.add_argument("--to", required=True, metavar="ADDRESS")
    p.add_argument("--contact", metavar="ADDRESS", help="render for this contact")
    p.set_defaults(func=cmd_test)
    p = cs.add_parser("report", help="what happened to a campaign's messages",
                      description="Recipients, delivered, deferred, bounced, opens and "
                                  "clicks (human and all), per link, per domain, over time.")
    _id(p)
    json_flag(p)
    p.set_defaults(func=cmd_report)
    p = cs.add_parser("report-link", help="a signed link to the report page",
                      description="Print the URL of the campaign's HTML report page "
                                  "(charts, per link, per domain) with a signed token that "
                                  "opens it without an API key until it expires.  Anyone "
                                  "with the link can read the report.")
    _id(p)
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="SECONDS",
                   help=f"how long the link works (default {DEFAULT_TTL}, 60 to {MAX_TTL})")
    json_flag(p, '{"url", "expires"} as the API')
    p.set_defaults(func=cmd_report_link)
