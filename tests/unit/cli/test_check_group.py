"""``mailyard check``: ``check spf`` joins a ``check`` group another command module
created before it, or creates the group itself."""

from __future__ import annotations

import argparse

from mailyard.cli import check


def test_joins_an_existing_group_or_creates_it() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    other = sub.add_parser("check").add_subparsers(dest="check")
    other.add_parser("message")
    check.register(sub)
    assert sorted(other.choices) == ["message", "spf"]

    fresh = argparse.ArgumentParser().add_subparsers()
    check.register(fresh)
    args = fresh.choices["check"].parse_args(["spf", "--ip", "192.0.2.1"])
    assert args.func is check.cmd_check_spf and args.ip == "192.0.2.1"
