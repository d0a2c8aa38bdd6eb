"""The policy backtest: GARCH paths cluster volatility, every policy is measured, figures are seeded."""

from __future__ import annotations

import numpy as np

from pmoracle.bench.policy import (
    BacktestConfig,
    GarchModel,
    format_backtest,
    policies,
    run_backtest,
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
    capped = [row for row in first["rows"] if row["policy"].endswith("cap")]
    assert capped and all(row["largest_one_day_range_rise"] <= 0.1 + 1e-9 for row in capped)
    assert run_backtest(SMALL) == first
    assert "| adaptive + floor + buffer + cap |" in format_backtest(first)
