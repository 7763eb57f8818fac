"""The ``[auth]`` table: SCRAM-SHA-256 iteration count."""

from __future__ import annotations

import pytest

from mailyard.config import ConfigError, config_from_dict, config_to_dict, parse_config

BASE = 'hostname = "mx.example.test"\n'


def test_default_and_round_trip() -> None:
    cfg = parse_config(BASE)
    assert cfg.auth.scram_iterations == 100_000
    cfg = parse_config(BASE + "[auth]\nscram_iterations = 0\n")
    assert cfg.auth.scram_iterations == 0
    assert config_from_dict(config_to_dict(cfg)).auth.scram_iterations == 0


@pytest.mark.parametrize("value", ["1000", "4095", "-1", "10000001", '"many"', "true"])
def test_bad_counts_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + f"[auth]\nscram_iterations = {value}\n")
    assert err.value.key == "auth.scram_iterations"


def test_rfc_minimum_is_allowed() -> None:
    """RFC 7677 4: at least 4096 iterations."""
    assert parse_config(BASE + "[auth]\nscram_iterations = 4096\n").auth.scram_iterations == 4096
