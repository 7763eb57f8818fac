"""What an operator writes to create or change a campaign, checked before it is stored.

One shape for the three ways in: a campaign file (TOML or JSON), command-line flags,
an API body.  :class:`CampaignInput` holds only what was given (``None``: keep the
stored value), :func:`input_from_mapping` reads a file's or a body's keys (unknown keys
are refused, so a typo does not silently drop a setting), and :func:`apply_input`
merges it into a :class:`CampaignSpec`, raising :class:`InvalidCampaign` with a message
naming the setting.  What needs the stores (do the lists exist, is the pool
configured, do the templates compile) is checked by the service.

A/B settings live in ``spec.extra["ab"]``: ``subjects`` (2 to 10 subject templates),
``sample_percent`` (the share of recipients the variants go to first), ``wait_hours``
(how long before the winner is picked) and ``metric`` (``opens`` or ``clicks``).

:func:`parse_send_at` turns ``2026-12-24 09:00`` in ``Europe/Berlin`` into a time
stamp (zoneinfo); a local time the clocks skip (the spring DST gap) is refused rather
than moved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailyard.bulk.addresses import InvalidAddress, normalise_address
from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.segments.lexer import SegmentError
from mailyard.bulk.segments.parser import parse as parse_segment

MAX_NAME = 100
MAX_TEMPLATE = 1_048_576  # characters of an HTML or text template
MAX_SUBJECT = 998
MAX_LISTS = 50
MAX_TAGS = 20
MAX_DOMAIN_CAPS = 1000
MAX_RATE = 1_000_000
AB_KEY = "ab"
AB_METRICS = ("opens", "clicks")
#: A schedule time this far in the past is refused (a clock slightly behind is not).
PAST_SLACK = 60.0

_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                     r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LIST_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class InvalidCampaign(ValueError):
    """A setting that cannot be used; the message names it."""


#: Reads a template file named in a campaign file (relative to the file); None in
#: the API, where naming server files is not allowed.
FileReader = Callable[[str], str]


@dataclass
class CampaignInput:
    name: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    lists: list[str] | None = None
    segment: str | None = None
    tracking: bool | None = None
    pool: str | None = None
    rate_per_minute: int | None = None
    domain_caps: dict[str, int] | None = None
    timezone: str | None = None
    tags: list[str] | None = None
    ab: dict[str, Any] | None = None  # {} switches A/B off

    def merged(self, other: CampaignInput) -> CampaignInput:
        """This input with every value ``other`` gives put over it (flags over a file)."""
        given = {f.name: getattr(other, f.name) for f in fields(other)
                 if getattr(other, f.name) is not None}
        return replace(self, **given)


_KEYS = {"name", "from", "from_address", "from_name", "reply_to", "subject", "html",
         "html_file", "text", "text_file", "lists", "list", "segment", "tracking", "pool",
         "rate", "rate_per_minute", "domain_caps", "timezone", "tags", "ab"}


def input_from_mapping(data: Mapping[str, Any], read_file: FileReader | None = None
                       ) -> CampaignInput:
    """The input a campaign file or an API body gives; InvalidCampaign for unknown keys
    or values of the wrong type."""
    if not isinstance(data, Mapping):
        raise InvalidCampaign("a campaign must be a table (TOML) or an object (JSON)")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise InvalidCampaign(f"unknown setting(s): {', '.join(unknown)}")
    inp = CampaignInput()
    inp.name = _opt(data, "name", str)
    sender = _opt(data, "from", str) or _opt(data, "from_address", str)
    if sender is not None:
        inp.from_address, name = split_mailbox(sender)
        inp.from_name = name or None
    inp.from_name = _opt(data, "from_name", str) if "from_name" in data else inp.from_name
    inp.reply_to = _opt(data, "reply_to", str)
    inp.subject = _opt(data, "subject", str)
    inp.html = _template(data, "html", read_file)
    inp.text = _template(data, "text", read_file)
    if "list" in data and "lists" in data:
        raise InvalidCampaign("give either list or lists")
    lists = data.get("lists", data.get("list"))
    if lists is not None:
        inp.lists = [lists] if isinstance(lists, str) else _str_list(lists, "lists")
    inp.segment = _opt(data, "segment", str)
    inp.tracking = _opt(data, "tracking", bool)
    inp.pool = _opt(data, "pool", str)
    rate = data.get("rate_per_minute", data.get("rate"))
    inp.rate_per_minute = None if rate is None else _int(rate, "rate")
    caps = data.get("domain_caps")
    if caps is not None:
        if not isinstance(caps, Mapping):
            raise InvalidCampaign("domain_caps must map domains to messages per hour")
        inp.domain_caps = {str(k): _int(v, f"domain_caps.{k}") for k, v in caps.items()}
    inp.timezone = _opt(data, "timezone", str)
    tags = data.get("tags")
    inp.tags = None if tags is None else _str_list(tags, "tags")
    ab = data.get("ab")
    if ab is not None:
        if not isinstance(ab, Mapping):
            raise InvalidCampaign("ab must be a table: subjects, sample_percent, "
                                  "wait_hours, metric")
        inp.ab = dict(ab)
    return inp


def _opt(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or
                              (kind is not bool and isinstance(value, bool))):
        raise InvalidCampaign(f"{key} must be a {kind.__name__}")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise InvalidCampaign(f"{what} must be a whole number")
    return int(value)


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidCampaign(f"{what} must be a list of strings")
    return list(value)


def _template(data: Mapping[str, Any], key: str, read_file: FileReader | None) -> str | None:
    inline = _opt(data, key, str)
    path = _opt(data, f"{key}_file", str)
    if inline is not None and path is not None:
        raise InvalidCampaign(f"give either {key} or {key}_file")
    if path is None:
        return inline  # type: ignore[no-any-return]
    if read_file is None:
        raise InvalidCampaign(f"{key}_file is not accepted here; send the {key} itself")
    return read_file(path)


def split_mailbox(text: str) -> tuple[str, str]:
    """``Name <address>`` or a bare address: (address, name)."""
    text = text.strip()
    match = re.fullmatch(r'(.*?)\s*<([^<>]*)>', text)
    if match:
        return match.group(2).strip(), match.group(1).strip().strip('"').strip()
    return text, ""


def apply_input(spec: CampaignSpec, inp: CampaignInput) -> CampaignSpec:
    """``spec`` with the values of ``inp`` put in, each checked."""
    new = CampaignSpec.from_dict(spec.to_dict())
    if inp.from_address is not None:
        new.from_address = _address(inp.from_address, "from") if inp.from_address else ""
    if inp.from_name is not None:
        new.from_name = _line(inp.from_name, "from_name", 256)
    if inp.reply_to is not None:
        new.reply_to = _address(inp.reply_to, "reply_to") if inp.reply_to else ""
    if inp.subject is not None:
        new.subject = _line(inp.subject, "subject", MAX_SUBJECT)
    if inp.html is not None:
        new.html = _body(inp.html, "html")
    if inp.text is not None:
        new.text = _body(inp.text, "text")
    if inp.lists is not None:
        new.lists = list_names(inp.lists)
    if inp.segment is not None:
        new.segment = check_segment(inp.segment)
    if inp.tracking is not None:
        new.tracking = inp.tracking
    if inp.pool is not None:
        new.pool = _line(inp.pool, "pool", 64)
    if inp.rate_per_minute is not None:
        if not 0 <= inp.rate_per_minute <= MAX_RATE:
            raise InvalidCampaign(f"rate must be 0 (no limit) to {MAX_RATE} per minute")
        new.rate_per_minute = inp.rate_per_minute
    if inp.domain_caps is not None:
        new.domain_caps = domain_caps(inp.domain_caps)
    if inp.timezone is not None:
        zone(inp.timezone)
        new.timezone = inp.timezone
    if inp.tags is not None:
        if len(inp.tags) > MAX_TAGS:
            raise InvalidCampaign(f"at most {MAX_TAGS} tags")
        new.tags = [_line(t, "tag", 64) for t in inp.tags]
    if inp.ab is not None:
        if inp.ab:
            new.extra[AB_KEY] = ab_settings(inp.ab)
        else:
            new.extra.pop(AB_KEY, None)
    return new


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidCampaign("a campaign needs a name")
    return _line(name, "name", MAX_NAME)


def _line(text: str, what: str, limit: int) -> str:
    if len(text) > limit:
        raise InvalidCampaign(f"{what} is longer than {limit} characters")
    if any(not c.isprintable() for c in text):
        raise InvalidCampaign(f"{what} holds a line break or control character")
    return text


def _body(text: str, what: str) -> str:
    if len(text) > MAX_TEMPLATE:
        raise InvalidCampaign(f"the {what} template is over {MAX_TEMPLATE} characters")
    if "\x00" in text:
        raise InvalidCampaign(f"the {what} template holds a NUL character")
    return text


def _address(text: str, what: str) -> str:
    try:
        return normalise_address(text)
    except InvalidAddress as exc:
        raise InvalidCampaign(f"{what}: {exc}") from None


def list_names(names: list[str]) -> list[str]:
    if len(names) > MAX_LISTS:
        raise InvalidCampaign(f"at most {MAX_LISTS} lists")
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not _LIST_NAME.fullmatch(name):
            raise InvalidCampaign(f"not a list name: {raw[:80]!r}")
        if name not in out:
            out.append(name)
    return out


def check_segment(text: str) -> str:
    text = text.strip()
    if text:
        try:
            parse_segment(text)
        except SegmentError as exc:
            raise InvalidCampaign(f"segment: {exc}") from None
    return text


def domain_caps(caps: Mapping[str, int]) -> dict[str, int]:
    if len(caps) > MAX_DOMAIN_CAPS:
        raise InvalidCampaign(f"at most {MAX_DOMAIN_CAPS} domain caps")
    out: dict[str, int] = {}
    for domain, cap in caps.items():
        name = domain.strip().lower().rstrip(".")
        if not _DOMAIN.fullmatch(name):
            raise InvalidCampaign(f"domain_caps: not a domain: {domain[:80]!r}")
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_RATE:
            raise InvalidCampaign(f"domain_caps.{name}: messages per hour must be 1 to "
                                  f"{MAX_RATE}")
        out[name] = cap
    return out


def parse_domain_cap(text: str) -> tuple[str, int]:
    """``gmail.com=300`` (a command-line flag)."""
    domain, sep, number = text.partition("=")
    if not sep or not number.strip().isdigit():
        raise InvalidCampaign(f"a domain cap is DOMAIN=PER_HOUR, not {text[:80]!r}")
    return domain.strip(), int(number)


def ab_settings(ab: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(str(k) for k in ab if k not in
                     ("subjects", "sample_percent", "wait_hours", "metric"))
    if unknown:
        raise InvalidCampaign(f"ab: unknown setting(s): {', '.join(unknown)}")
    subjects = ab.get("subjects")
    if not isinstance(subjects, list) or not 2 <= len(subjects) <= 10 or \
            not all(isinstance(s, str) and s.strip() for s in subjects):
        raise InvalidCampaign("ab.subjects must list 2 to 10 subject lines")
    subjects = [_line(s, "ab subject", MAX_SUBJECT) for s in subjects]
    sample = ab.get("sample_percent", 20)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or \
            not 1 <= sample <= 90:
        raise InvalidCampaign("ab.sample_percent must be 1 to 90")
    wait = ab.get("wait_hours", 4)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or \
            not 0 < wait <= 720:
        raise InvalidCampaign("ab.wait_hours must be more than 0 and at most 720")
    metric = ab.get("metric", "opens")
    if metric not in AB_METRICS:
        raise InvalidCampaign(f"ab.metric must be one of {', '.join(AB_METRICS)}")
    return {"subjects": subjects, "sample_percent": sample, "wait_hours": wait,
            "metric": metric}


def zone(name: str) -> ZoneInfo:
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise InvalidCampaign(f"not a time zone: {name[:80]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidCampaign(f"not a time zone: {name[:80]!r} (use an IANA name such as "
                              "Europe/Berlin)") from None


def parse_send_at(text: str, timezone: str, now: float) -> float:
    """When to send: ``now``, or a date and time (``2026-12-24 09:00``, seconds and an
    ISO 8601 offset allowed) read in ``timezone`` unless it carries its own offset."""
    value = text.strip()
    if value.lower() == "now":
        return now
    tz = zone(timezone)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCampaign(f"not a date and time: {value[:80]!r} (write "
                              "YYYY-MM-DD HH:MM)") from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=tz)
        back = datetime.fromtimestamp(local.timestamp(), tz).replace(tzinfo=None)
        if back != moment:
            raise InvalidCampaign(f"{value} does not exist in {timezone} (the clocks skip "
                                  "it); choose another time")
        moment = local
    at = moment.timestamp()
    if at < now - PAST_SLACK:
        raise InvalidCampaign(f"{value} ({format_utc(at)}) is in the past")
    return at


def format_utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_local(at: float, timezone: str) -> str:
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return format_utc(at)
    return datetime.fromtimestamp(at, tz).strftime(f"%Y-%m-%d %H:%M:%S %Z ({timezone})")
