"""The policy backtest: GARCH paths cluster volatility, every policy is measured, figures are seeded."""

from __future__ import annotations

import dataclasses

import numpy as np

from pmoracle.bench.policy import (
    BacktestConfig,
    GarchModel,
    devnet_policies,
    format_backtest,
    policies,
    run_backtest,
    run_devnet_backtest,
    simulate_devnet_path,
    simulate_garch_path,
)

SMALL = BacktestConfig(paths=2, days=400, warmup=120, seed=7)


def test_garch_paths_are_seeded_and_cluster_volatility() -> None:
    prices, variance = simulate_garch_path(GarchModel(), 3000, np.random.default_rng(1))
    again, _ = simulate_garch_path(GarchModel(), 3000, np.random.default_rng(1))
    assert np.array_equal(prices, again)
    squared = np.diff(np.log(prices.astype(np.float64))) ** 2
    lag1 = np.corrcoef(squared[:-1], squared[1:])[0, 1]
    assert lag1 > 0.05  # big moves follow big moves; iid returns would give about 0
    assert variance.max() > 4 * GarchModel().daily_vol ** 2 > 16 * variance.min()


def test_backtest_measures_every_policy_and_is_reproducible() -> None:
    first = run_backtest(SMALL)
    assert [row["policy"] for row in first["rows"]] == list(policies())
    for row in first["rows"]:
        assert 0.9 < row["coverage"] <= 1.0 and 0.0 < row["mean_range"] < 0.6 and row["peak_to_trough_median"] >= 1.0
    static, *_ = first["rows"]
    assert static["mean_range"] == 0.16 and static["largest_one_day_range_rise"] == 0.0
    capped = [row for row in first["rows"] if row["policy"].endswith("cap") and "margin" not in row["policy"]]
    assert len(capped) == 4 and all(row["largest_one_day_range_rise"] <= 0.1 + 1e-9 for row in capped)
    margin_capped = [row for row in first["rows"] if row["policy"].endswith("margin cap")]
    assert len(margin_capped) == 3  # the margin rises at most 10% a day, the range itself may rise more
    assert all(row["largest_one_day_rise"] <= 0.1 + 1e-9 for row in margin_capped)
    assert run_backtest(SMALL) == first
    assert "| adaptive + floor + buffer + cap |" in format_backtest(first)
    assert "| adaptive + floor + buffer + margin cap |" in format_backtest(first)


def test_the_devnets_path_is_its_generator_with_the_spike() -> None:
    prices, variance = simulate_devnet_path(40, seed=3, spike_step=20)
    again, _ = simulate_devnet_path(40, seed=3, spike_step=20)
    assert np.array_equal(prices, again) and len(prices) == 41 and len(variance) == 40
    assert variance[19] > 8 * variance[18]  # tripled vol at the spike step (GARCH moves it a little besides)
    assert prices[0] == 95_000 * 10**8  # the devnet's BTC start
    assert not np.array_equal(prices, simulate_devnet_path(40, seed=4, spike_step=20)[0])


def test_devnet_backtest_measures_its_documents_policy_over_a_one_day_horizon() -> None:
    results = run_devnet_backtest(BacktestConfig(paths=1, days=300, warmup=100), first_seed=2)
    assert [row["policy"] for row in results["rows"]] == list(devnet_policies())
    static = results["rows"][0]
    assert abs(static["mean_range"] - 0.16) < 1e-12 and static["largest_one_day_range_rise"] == 0.0  # a float mean
    rows = {row["policy"]: row for row in results["rows"]}
    # +4.88% a 12-hour step is +10% a day: of the range with the range cap, of the margin with the margin cap
    assert rows["adaptive + floor + buffer + cap +10% / -5% a day"]["largest_one_day_range_rise"] <= 0.1 + 1e-9
    assert rows["the devnet's document, margin cap +10% / -5% a day"]["largest_one_day_rise"] <= 0.1 + 1e-9
    assert rows["adaptive + floor + buffer + margin cap (the devnet's document)"]["largest_one_day_rise"] <= 0.21 + 1e-9
    assert results["config"]["devnet"]["spike_step"] == 300
    assert "| the devnet's document, margin cap +10% / -5% a day |" in format_backtest(results)


def test_the_devnets_document_caps_the_margin_and_its_parts_take_it_apart() -> None:
    labelled = devnet_policies()
    document = labelled["adaptive + floor + buffer + margin cap (the devnet's document)"]
    assert document is not None and document.step_cap_basis == "margin"
    plain = labelled["adaptive (EWMA 0.94 a step, 5 sd)"]
    assert plain is not None and plain.step_cap_basis == "range" and plain.max_step_up is None
    assert plain.floor is None and plain.buffer is None
    ranged = labelled["adaptive + floor + buffer + cap"]
    assert ranged is not None and ranged == dataclasses.replace(document, step_cap_basis="range")
