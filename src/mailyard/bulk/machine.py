"""Machine or human: whether an open or a click was made by the recipient or by a
program acting on the message before (or instead of) them.

Since 2021 opens and clicks overstate people's interest: Apple Mail Privacy
Protection loads every image of every message as it arrives, and mail security
gateways follow every link seconds after delivery to check where it goes.  Reports
count such events apart.  The rules, in the order they are tried:

1. **HEAD requests** are never a person's mail client showing an image or following
   a link; link checkers use them.
2. **Known scanner and script user agents** (:data:`SCANNER_AGENTS`): the names the
   URL-checking services of mail security gateways and common HTTP libraries send.
3. **Apple Mail Privacy Protection** (opens): the image is fetched through the proxies
   of iCloud Private Relay (Apple, "Prepare your network or web server for iCloud
   Private Relay", support.apple.com/102602, which publishes the egress ranges at
   mask-api.icloud.com/egress-ip-ranges.csv; that MPP loads images through the same
   infrastructure was shown by Mailchimp's data, described in Word to the Wise, "Apple
   MPP reporting and geolocation", 2021), with the bare user agent ``Mozilla/5.0``
   (SocketLabs, "Identifying Apple MPP opens").  An open is Apple's when its user agent
   is exactly that, or its address is in :data:`APPLE_NETWORKS` (Apple's own 17.0.0.0/8
   and IPv6 allocations; pass the published egress list as ``apple_networks`` for more).
4. **Image proxies of webmail** (opens): Gmail (``GoogleImageProxy``) and Yahoo
   (``YahooMailProxy``) fetch images when the person opens the message, through their
   own proxy: the open counts as a human one, labelled ``proxied``.
5. **Clicks too soon after delivery** (under ``min_click_delay`` seconds, 10 by
   default): nobody reads a message and clicks within seconds of its delivery, and a
   gateway scanning links does exactly that.  A click before the delivery was
   recorded counts as too soon.
6. **Many links at once**: ``burst_links`` (3) or more different links of the same
   message clicked within ``burst_window`` (1) second of each other.  Given the other
   events of the message, not only earlier ones, a report labels the first clicks of a
   burst as well.

The function is pure: the caller passes the event, the delivery time and the other
events of the same message.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(StrEnum):
    OPEN = "open"
    CLICK = "click"


class Label(StrEnum):
    HUMAN = "human"
    PROXIED = "proxied"  # a person's open, seen through their webmail's image proxy
    MACHINE = "machine"


class Reason(StrEnum):
    ORDINARY = "ordinary"
    HEAD_REQUEST = "head-request"
    SCANNER_AGENT = "scanner-agent"
    APPLE_PRIVACY = "apple-privacy-protection"
    IMAGE_PROXY = "image-proxy"
    TOO_SOON = "too-soon-after-delivery"
    LINK_BURST = "many-links-at-once"


@dataclass(frozen=True)
class Interaction:
    """One request to the pixel or the click redirect."""

    action: Action
    at: float  # seconds since the epoch
    ip: str = ""
    user_agent: str = ""
    method: str = "GET"
    link: int | None = None  # clicks: the index in the campaign's link list


@dataclass(frozen=True)
class Verdict:
    label: Label
    reason: Reason

    @property
    def machine(self) -> bool:
        return self.label == Label.MACHINE


#: Lower-case substrings of user agents of link scanners and scripts.
SCANNER_AGENTS: tuple[str, ...] = (
    "barracuda", "mimecast", "proofpoint", "symantec", "messagelabs", "trendmicro",
    "trend micro", "forcepoint", "sophos", "ironport", "fireeye", "zscaler",
    "checkpoint", "fortiguard", "safelinks", "urlscan", "virustotal", "bingpreview",
    "headlesschrome", "phantomjs", "python-requests", "python-urllib", "aiohttp",
    "go-http-client", "curl/", "wget/", "libwww-perl", "java/", "okhttp",
    "apache-httpclient", "bot/", "crawler", "spider",
)
#: Lower-case substrings of user agents of webmail image proxies.
IMAGE_PROXY_AGENTS: tuple[str, ...] = ("googleimageproxy", "yahoomailproxy")
#: The user agent Apple's proxy sends when it loads images for Mail.
APPLE_PROXY_AGENT = "Mozilla/5.0"
#: Apple Inc.'s own address blocks (17.0.0.0/8 from ARIN, its IPv6 allocations).
APPLE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("17.0.0.0/8", "2620:149::/32", "2a01:b740::/32",
                                      "2403:300::/32"))


@dataclass(frozen=True)
class MachineRules:
    min_click_delay: float = 10.0
    burst_window: float = 1.0
    burst_links: int = 3
    apple_networks: tuple[IPNetwork, ...] = APPLE_NETWORKS


DEFAULT_RULES = MachineRules()


def classify(event: Interaction, delivered_at: float | None,
             others: Iterable[Interaction] = (),
             rules: MachineRules = DEFAULT_RULES) -> Verdict:
    """Whether ``event`` was a person's or a program's, and why.  ``others`` are the
    other requests for the same message (earlier ones when recording; all of them
    when a report is rebuilt)."""
    agent = event.user_agent.strip()
    lowered = agent.lower()
    if event.method.strip().upper() == "HEAD":
        return Verdict(Label.MACHINE, Reason.HEAD_REQUEST)
    if _scanner(lowered):
        return Verdict(Label.MACHINE, Reason.SCANNER_AGENT)
    if event.action == Action.OPEN:
        if agent == APPLE_PROXY_AGENT or _in_networks(event.ip, rules.apple_networks):
            return Verdict(Label.MACHINE, Reason.APPLE_PRIVACY)
        if any(name in lowered for name in IMAGE_PROXY_AGENTS):
            return Verdict(Label.PROXIED, Reason.IMAGE_PROXY)
        return Verdict(Label.HUMAN, Reason.ORDINARY)
    if delivered_at is not None and event.at - delivered_at < rules.min_click_delay:
        return Verdict(Label.MACHINE, Reason.TOO_SOON)
    if _burst(event, others, rules):
        return Verdict(Label.MACHINE, Reason.LINK_BURST)
    return Verdict(Label.HUMAN, Reason.ORDINARY)


def classify_message(events: Sequence[Interaction], delivered_at: float | None,
                     rules: MachineRules = DEFAULT_RULES) -> list[Verdict]:
    """Every request of one message, each judged with all the others in view (only
    those within the burst window matter, found by bisection over the times)."""
    order = sorted(range(len(events)), key=lambda i: events[i].at)
    times = [events[i].at for i in order]
    verdicts: list[Verdict] = [Verdict(Label.HUMAN, Reason.ORDINARY)] * len(events)
    for rank, i in enumerate(order):
        at = events[i].at
        lo = bisect.bisect_left(times, at - rules.burst_window)
        hi = bisect.bisect_right(times, at + rules.burst_window)
        near = [events[order[j]] for j in range(lo, hi) if j != rank]
        verdicts[i] = classify(events[i], delivered_at, near, rules)
    return verdicts


def _burst(event: Interaction, others: Iterable[Interaction], rules: MachineRules) -> bool:
    links = {event.link}
    for other in others:
        if (other.action == Action.CLICK and other.method.strip().upper() != "HEAD"
                and abs(other.at - event.at) <= rules.burst_window):
            links.add(other.link)
            if len(links) >= rules.burst_links:
                return True
    return False


@functools.lru_cache(maxsize=4096)
def _scanner(lowered_agent: str) -> bool:
    """Cached: the tracking endpoints see the same few hundred user agents again and
    again."""
    return any(name in lowered_agent for name in SCANNER_AGENTS)


def _in_networks(ip: str, networks: Sequence[IPNetwork]) -> bool:
    if networks is APPLE_NETWORKS:
        return _in_apple(ip)
    return _check_networks(ip, networks)


@functools.lru_cache(maxsize=65536)
def _in_apple(ip: str) -> bool:
    """Cached for the default networks (the same proxies come back all day)."""
    return _check_networks(ip, APPLE_NETWORKS)


def _check_networks(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)
