"""Configuration: typed keys, errors that name the key, defaults, round trip."""

from __future__ import annotations

import pytest

from mailyard.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    default_config,
    load_config,
    parse_config,
    parse_hostport,
)

ISSUE_EXAMPLE = '''
hostname = "mx.example.test"
data_dir = "/var/lib/mailyard"
local_domains = ["example.test"]
[listen]
smtp = ["127.0.0.1:25"]
submission = ["127.0.0.1:587"]
submissions = ["127.0.0.1:465"]
[tls]
cert = ""
key = ""
[delivery]
relayhost = ""
smtp_port = 25
dns_servers = []
'''


def test_documented_example_loads():
    cfg = parse_config(ISSUE_EXAMPLE)
    assert cfg.hostname == "mx.example.test"
    assert cfg.listen.submission == ("127.0.0.1:587",)
    assert cfg.local_domains == ("example.test",)


@pytest.mark.parametrize("text, key", [
    ('bogus = 1', "bogus"),
    ('[listen]\nsmtp = ["127.0.0.1:99999"]', "listen.smtp[0]"),
    ('[listen]\nsmtp = "127.0.0.1:25"', "listen.smtp"),
    ('[smtpd]\nmax_recipients = 10', "smtpd.max_recipients"),
    ('[smtpd]\nmax_message_size = "big"', "smtpd.max_message_size"),
    ('[smtpd]\nvrfy = 1', "smtpd.vrfy"),
    ('[delivery]\ntls = "sometimes"', "delivery.tls"),
    ('[delivery]\ndns_servers = ["1.2.3.4:x"]', "delivery.dns_servers[0]"),
    ('[[delivery.transports]]\ndomain = "a.test"\nmode = "teleport"',
     "delivery.transports[0].mode"),
    ('[tls]\ncert = "/nonexistent.pem"', "tls"),
    ('relay_domains = ["a@b"]', "relay_domains[0]"),
    ('[smtpd]\nauth_concurrency = 0', "smtpd.auth_concurrency"),
    ('[smtpd]\nauth_queue = -1', "smtpd.auth_queue"),
    ('[smtpd]\nauth_failure_window = 0', "smtpd.auth_failure_window"),
    ('[smtpd]\nauth_failure_delay = 2\nauth_failure_delay_max = 1', "smtpd.auth_failure_delay_max"),
])
def test_errors_name_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        parse_config('hostname = "mx.test"\n' + text)
    assert err.value.key == key
    assert str(err.value).startswith(key)


def test_invalid_toml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("hostname = ")


def test_relative_data_dir_is_relative_to_the_file(tmp_path):
    p = tmp_path / "mailyard.toml"
    p.write_text('hostname = "mx.test"\ndata_dir = "data"\n')
    assert load_config(p).data_dir == str(tmp_path / "data")


def test_relay_domains_match_domain_and_subdomains():
    cfg = parse_config('hostname = "mx.test"\nrelay_domains = ["Example.ORG", ".corp.test"]')
    assert cfg.is_relay_domain("example.org")
    assert not cfg.is_relay_domain("sub.example.org")
    assert cfg.is_relay_domain("a.corp.test")
    assert not cfg.is_relay_domain("corp.test")


def test_round_trip_through_dict():
    cfg = parse_config(ISSUE_EXAMPLE + '[[delivery.transports]]\ndomain = "x.test"\n'
                       'nexthop = "127.0.0.1:2525"\n')
    assert config_from_dict(config_to_dict(cfg), cfg.source) == cfg


def test_embedded_default_is_valid():
    cfg = default_config()
    assert cfg.listen.smtp and cfg.local_domains == ("localhost",)


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:25", ("127.0.0.1", 25)),
    ("[::1]:587", ("::1", 587)),
    ("mx.example.test", ("mx.example.test", 25)),
])
def test_parse_hostport(value, expected):
    assert parse_hostport(value, 25) == expected


# --- outbound TLS levels ----------------------------------------------------------------
RELAY = '[delivery]\nrelayhost = "smart.example.net:587"\n'
CREDS = RELAY + 'relayhost_username = "u"\nrelayhost_password = "p"\n'


@pytest.mark.parametrize("text, key", [
    (RELAY + 'relayhost_tls = "sometimes"', "delivery.relayhost_tls"),
    (CREDS + 'relayhost_tls = "require"', "delivery.relayhost_tls"),
    (CREDS + 'relayhost_tls = "may"', "delivery.relayhost_tls"),
    (CREDS + 'relayhost_tls = "none"', "delivery.relayhost_tls"),
    (RELAY + 'relayhost_tls_fingerprints = ["md5:abcd"]', "delivery.relayhost_tls_fingerprints[0]"),
    (RELAY + 'relayhost_tls_ca_file = "/nonexistent/ca.pem"', "delivery.relayhost_tls_ca_file"),
    (RELAY + 'relayhost_tls = "encrypt"\nrelayhost_tls_fingerprints = ["sha256:' + "a" * 64 + '"]',
     "delivery.relayhost_tls_fingerprints"),
    ('[[delivery.transports]]\ndomain = "a.test"\ntls = "may"\ntls_ca_file = "/etc/hosts"',
     "delivery.transports[0].tls_ca_file"),
    ('[[delivery.transports]]\ndomain = "a.test"\ntls = "strict"', "delivery.transports[0].tls"),
])
def test_outbound_tls_errors_name_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        parse_config('hostname = "mx.test"\n' + text)
    assert err.value.key == key


def test_credentials_need_a_verifying_level_unless_explicitly_allowed():
    with pytest.raises(ConfigError, match="relayhost_auth_unverified"):
        parse_config(CREDS + 'relayhost_tls = "encrypt"')
    cfg = parse_config(CREDS + 'relayhost_tls = "encrypt"\nrelayhost_auth_unverified = true')
    assert cfg.delivery.relayhost_tls_level == "encrypt"
    assert parse_config(CREDS).delivery.relayhost_tls_level == "verify"  # the default
    assert parse_config(RELAY).delivery.relayhost_tls_level == "may"
    pinned = parse_config(CREDS + 'relayhost_tls_fingerprints = ["sha256:' + "AB:" * 31 + 'AB"]')
    assert pinned.delivery.relayhost_tls_level == "verify"


def test_require_is_accepted_as_the_earlier_name_of_encrypt():
    cfg = parse_config(RELAY + 'relayhost_tls = "require"\ntls = "require"\n'
                       '[[delivery.transports]]\ndomain = "a.test"\ntls = "require"')
    assert cfg.delivery.relayhost_tls_level == "encrypt"
    assert cfg.delivery.transports[0].tls == "encrypt"  # converted once, by the loader


def test_enumerated_values_are_converted_once_by_the_loader():
    import json

    from mailyard.config import (
        BareLineEndings,
        LogFormat,
        LogLevel,
        TlsLevel,
        TransportMode,
        config_from_dict,
        config_to_dict,
    )

    cfg = parse_config('[smtpd]\nbare_line_endings = "normalize"\n[log]\nformat = "json"\n'
                       'level = "debug"\n[delivery]\ntls = "require"\n'
                       '[[delivery.transports]]\ndomain = "a.test"\nmode = "end-to-end"\n')
    assert cfg.smtpd.bare_line_endings is BareLineEndings.NORMALIZE
    assert (cfg.log.format, cfg.log.level) == (LogFormat.JSON, LogLevel.DEBUG)
    assert cfg.delivery.tls is TlsLevel.ENCRYPT
    assert cfg.delivery.transports[0].mode is TransportMode.END_TO_END
    assert cfg.delivery.relayhost_tls is None
    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert (again.smtpd, again.log, again.delivery) == (cfg.smtpd, cfg.log, cfg.delivery)
    assert again.delivery.tls is TlsLevel.ENCRYPT


@pytest.mark.parametrize("text,key,allowed", [
    ('[log]\nformat = "xml"', "log.format", "must be 'text' or 'json'"),
    ('[log]\nlevel = "loud"', "log.level", "must be 'debug', 'info', 'warning' or 'error'"),
    ('[smtpd]\nbare_line_endings = "fix"', "smtpd.bare_line_endings",
     "must be 'reject' or 'normalize'"),
    ('[delivery]\ntls = "always"', "delivery.tls", "'none', 'may', 'encrypt', 'verify'"),
    ('[delivery]\ntls = 3', "delivery.tls", "must be a string"),
])
def test_enumerated_value_errors_name_the_key_and_the_allowed_values(text, key, allowed):
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert err.value.key == key and allowed in str(err.value)
