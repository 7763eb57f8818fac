"""Machine or human opens and clicks: one case per rule of mailyard.bulk.machine."""

from __future__ import annotations

import ipaddress

import pytest

from mailyard.bulk.machine import (
    Action,
    Interaction,
    Label,
    MachineRules,
    Reason,
    classify,
    classify_message,
)

DELIVERED = 1_700_000_000.0
IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Mobile/15E148")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GMAIL_PROXY = ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
               "(via ggpht.com GoogleImageProxy)")


def opened(after: float, ua: str = FIREFOX, ip: str = "198.51.100.7",
           method: str = "GET") -> Interaction:
    return Interaction(Action.OPEN, DELIVERED + after, ip, ua, method)


def clicked(after: float, link: int = 0, ua: str = FIREFOX, ip: str = "198.51.100.7",
            method: str = "GET") -> Interaction:
    return Interaction(Action.CLICK, DELIVERED + after, ip, ua, method, link)


def test_ordinary_open_and_click_are_human() -> None:
    verdict = classify(opened(3600), DELIVERED)
    assert (verdict.label, verdict.reason) == (Label.HUMAN, Reason.ORDINARY)
    assert not verdict.machine
    assert classify(clicked(3700), DELIVERED, [opened(3600)]).label == Label.HUMAN


@pytest.mark.parametrize("action", [Action.OPEN, Action.CLICK])
def test_head_request_is_machine(action: Action) -> None:
    event = Interaction(action, DELIVERED + 3600, "198.51.100.7", FIREFOX, "head", 0)
    verdict = classify(event, DELIVERED)
    assert (verdict.label, verdict.reason) == (Label.MACHINE, Reason.HEAD_REQUEST)


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
    "Mimecast-URL-Protect",
])
def test_scanner_agents_are_machine(ua: str) -> None:
    assert classify(clicked(7200, ua=ua), DELIVERED).reason == Reason.SCANNER_AGENT
    assert classify(opened(7200, ua=ua), DELIVERED).label == Label.MACHINE


def test_apple_privacy_protection_by_bare_user_agent() -> None:
    verdict = classify(opened(2, ua="Mozilla/5.0", ip="104.28.40.1"), DELIVERED)
    assert (verdict.label, verdict.reason) == (Label.MACHINE, Reason.APPLE_PRIVACY)


@pytest.mark.parametrize("ip", ["17.58.1.2", "2620:149:a:1::5", "::ffff:17.1.2.3"])
def test_apple_privacy_protection_by_apple_address(ip: str) -> None:
    assert classify(opened(60, ua=IPHONE_SAFARI, ip=ip), DELIVERED).reason == (
        Reason.APPLE_PRIVACY)


def test_published_egress_ranges_can_be_given() -> None:
    rules = MachineRules(apple_networks=(ipaddress.ip_network("172.224.0.0/12"),))
    event = opened(60, ua=IPHONE_SAFARI, ip="172.225.9.9")
    assert classify(event, DELIVERED).label == Label.HUMAN
    assert classify(event, DELIVERED, rules=rules).reason == Reason.APPLE_PRIVACY


def test_apple_user_agent_on_other_address_is_human_for_a_person_on_an_iphone() -> None:
    assert classify(opened(600, ua=IPHONE_SAFARI), DELIVERED).label == Label.HUMAN


def test_click_from_apple_address_is_not_privacy_protection() -> None:
    # the proxy loads images; a click is the person's own
    assert classify(clicked(600, ip="17.58.1.2", ua=IPHONE_SAFARI), DELIVERED).label == (
        Label.HUMAN)


@pytest.mark.parametrize("ua", [GMAIL_PROXY, "YahooMailProxy; https://help.yahoo.com"])
def test_webmail_image_proxy_open_counts_but_is_flagged(ua: str) -> None:
    verdict = classify(opened(5, ua=ua, ip="66.249.84.1"), DELIVERED)
    assert (verdict.label, verdict.reason) == (Label.PROXIED, Reason.IMAGE_PROXY)
    assert not verdict.machine


@pytest.mark.parametrize(("after", "label"), [(-5, Label.MACHINE), (0, Label.MACHINE),
                                              (9.9, Label.MACHINE), (10, Label.HUMAN)])
def test_click_too_soon_after_delivery(after: float, label: Label) -> None:
    verdict = classify(clicked(after), DELIVERED)
    assert verdict.label == label
    if label == Label.MACHINE:
        assert verdict.reason == Reason.TOO_SOON


def test_click_without_known_delivery_time_is_judged_on_the_rest() -> None:
    assert classify(clicked(1), None).label == Label.HUMAN


def test_many_links_within_a_second() -> None:
    burst = [clicked(300.0, 0), clicked(300.2, 1), clicked(300.4, 2), clicked(300.5, 3)]
    # when recording, the third link within the second is the first one seen as a burst
    assert classify(burst[1], DELIVERED, burst[:1]).label == Label.HUMAN
    assert classify(burst[2], DELIVERED, burst[:2]).reason == Reason.LINK_BURST
    # with hindsight every click of the burst is a machine's
    assert all(v.reason == Reason.LINK_BURST for v in classify_message(burst, DELIVERED))


def test_same_link_twice_or_links_seconds_apart_are_human() -> None:
    twice = [clicked(300.0, 0), clicked(300.1, 0), clicked(300.2, 0)]
    assert all(v.label == Label.HUMAN for v in classify_message(twice, DELIVERED))
    apart = [clicked(300, 0), clicked(305, 1), clicked(310, 2)]
    assert all(v.label == Label.HUMAN for v in classify_message(apart, DELIVERED))


def test_opens_do_not_count_towards_a_burst() -> None:
    events = [opened(300.0), opened(300.1), clicked(300.2, 0), clicked(300.3, 1)]
    assert classify_message(events, DELIVERED)[3].label == Label.HUMAN


@pytest.mark.parametrize("ip", ["", "not an address", "999.1.1.1", "17.0.0.1\x00",
                                "x" * 10_000])
def test_hostile_fields_do_not_raise(ip: str) -> None:
    event = Interaction(Action.OPEN, DELIVERED + 60, ip, "\r\n<script>" * 1000, "GET\r\n")
    assert classify(event, DELIVERED).label == Label.HUMAN


def test_message_with_many_requests_is_judged_per_window() -> None:
    # a bot hammering one link for hours: no burst of different links, all human-looking
    events = [clicked(600 + i * 0.5, link=0) for i in range(20_000)]
    events.append(clicked(600.1, link=1))
    events.append(clicked(600.2, link=2))
    verdicts = classify_message(events, DELIVERED)
    assert verdicts[-1].reason == Reason.LINK_BURST
    assert verdicts[0].reason == Reason.LINK_BURST  # 600.0 is within a second of both
    assert verdicts[100].label == Label.HUMAN
