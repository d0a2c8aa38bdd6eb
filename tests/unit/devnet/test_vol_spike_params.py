"""The vol-spike scenario's parameters document: the default one with a [policy] sampling once per market step."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.config.params import default_params, default_params_text
from pmoracle.devnet.lifecycle import vol_spike_params_text
from pmoracle.errors import InputError
from pmoracle.node.daemon import check_node_params
from pmoracle.risk.params import parse_params


@pytest.mark.parametrize("step_hours", [1, 12, 24])
def test_one_sample_per_step_and_a_feed_age_of_one_step(step_hours: int) -> None:
    params = parse_params(vol_spike_params_text(default_params_text(), step_hours * 3600))
    assert params.policy is not None
    assert params.policy.sample_interval_seconds == step_hours * 3600
    assert params.max_feed_age_seconds == step_hours * 3600 + 3600
    assert params.policy.floor is not None and params.policy.buffer is not None and params.policy.vol is not None
    assert params.policy.step_cap_basis == "margin"  # the cap bounds the one-unit margin, range x price
    check_node_params(params, Path("risk-params.toml"))  # a node runs it
    # everything else is the default document
    assert params.scan_range == default_params().scan_range and params.params_hash != default_params().params_hash


def test_a_base_without_the_feed_age_line_is_refused() -> None:
    with pytest.raises(InputError, match="max_feed_age_seconds = 300"):
        vol_spike_params_text("version = 1\n", 43200)
