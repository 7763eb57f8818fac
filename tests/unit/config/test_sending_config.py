"""``[sending]`` limits and ``[[delivery.pools]]``: parsing, checks and routing."""

from __future__ import annotations

import pytest

from mailyard.config import ConfigError, config_from_dict, config_to_dict, parse_config

POOLS = """
[sending]
user_messages_per_hour = 100
domain_recipients_per_day = 5000

[[delivery.pools]]
name = "bulk"
source_addresses = ["192.0.2.10", "2001:db8::10"]
helo_name = "bulk.example.org"
max_concurrency = 5
rate_limits = { "gmail.com" = "300/h", ".example.net" = "10/m" }
senders = ["news.example.org", "alice@example.org"]

[[delivery.pools]]
name = "tx"
senders = ["example.org"]
"""


def test_sending_and_pools_parse_and_round_trip() -> None:
    cfg = parse_config(POOLS)
    assert cfg.sending.user_limits.messages_per_hour == 100
    assert cfg.sending.domain_limits.recipients_per_day == 5000
    bulk = cfg.delivery.pools[0]
    assert bulk.source_addresses == ("192.0.2.10", "2001:db8::10")
    assert bulk.rate_limits == {"gmail.com": "300/h", ".example.net": "10/m"}
    assert config_from_dict(config_to_dict(cfg)).delivery.pools == cfg.delivery.pools


def test_pool_routing_address_wins_over_domain() -> None:
    d = parse_config(POOLS).delivery
    assert d.pool_for("x@news.example.org") == "bulk"
    assert d.pool_for("alice@example.org") == "bulk"
    assert d.pool_for("bob@example.org") == "tx"
    assert d.pool_for("bob@other.test", auth_user="alice@example.org") == "bulk"
    assert d.pool_for("bob@other.test") == ""


@pytest.mark.parametrize(("text", "key"), [
    ("[sending]\nuser_messages_per_day = -1", "sending.user_messages_per_day"),
    ('[[delivery.pools]]\nname = ""', "delivery.pools[0].name"),
    ('[[delivery.pools]]\nname = "default"', "delivery.pools[0].name"),
    ('[[delivery.pools]]\nname = "a"\nsource_addresses = ["host"]',
     "delivery.pools[0].source_addresses[0]"),
    ('[[delivery.pools]]\nname = "a"\nrate_limits = { "gmail.com" = "fast" }',
     "delivery.pools[0].rate_limits.gmail.com"),
    ('[[delivery.pools]]\nname = "a"\nrate_limits = { "gmail.com" = 5 }',
     "delivery.pools[0].rate_limits.gmail.com"),
    ('[[delivery.pools]]\nname = "a"\n[[delivery.pools]]\nname = "a"',
     "delivery.pools[1].name"),
    ('[[delivery.pools]]\nname = "a"\nmax_concurrency = 0', "delivery.pools[0].max_concurrency"),
])
def test_bad_values_name_their_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.key == key
