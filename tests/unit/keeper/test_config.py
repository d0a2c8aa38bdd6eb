"""The keeper's config: the example parses; a bad value is refused naming its key."""

from __future__ import annotations

import pathlib

import pytest

from pmoracle.errors import InputError
from pmoracle.keeper.config import load_keeper_config, parse_keeper_config

EXAMPLE = pathlib.Path(__file__).parents[3] / "examples" / "keeper.toml"
USD = 10**18


def test_the_example_config_loads_with_paths_beside_it() -> None:
    config = load_keeper_config(EXAMPLE)
    assert config.deployment == EXAMPLE.parent / "deployment.json"
    assert config.keystore == EXAMPLE.parent / "keys" / "keeper.json"
    assert (config.min_profit, config.gas_cost, config.metrics_port) == (10 * USD, USD, 9109)
    assert config.password_env == "PMORACLE_KEEPER_PASSWORD" and config.margin_api is None


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        ('min_profit_usd = "10"', 'min_profit_usd = "-1"', "keeper.min_profit_usd"),
        ('gas_cost_usd = "1"', 'gas_cost_usd = "abc"', "keeper.gas_cost_usd"),
        ("port = 9109", "port = 70000", "metrics.port"),
        ('format = "text"', 'format = "xml"', "log.format"),
        ("poll_interval = 2.0", "poll_interval = 0", "keeper.poll_interval"),
        ('rpc_urls = ["http://127.0.0.1:8545"]', "rpc_urls = []", "chain.rpc_urls"),
        ('password_env = "PMORACLE_KEEPER_PASSWORD"', "", "keeper.password_env"),
        ("[log]", "[logs]", "logs"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(replace: str, by: str, field: str) -> None:
    text = EXAMPLE.read_text()
    assert replace in text
    with pytest.raises(InputError) as info:
        parse_keeper_config(text.replace(replace, by), EXAMPLE.parent)
    assert info.value.field == field
