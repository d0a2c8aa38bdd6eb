"""The pricing benchmark runs end to end and compares like with like (no timing is asserted)."""

from __future__ import annotations

from pmoracle.bench.pricing import format_pricing_bench, run_pricing_bench


def test_quick_bench_reports_rates_ratios_and_agreeing_prices() -> None:
    """Every pricer values the same options: prices agree, rates and ratios are positive, the text names them."""
    result = run_pricing_bench(n=2_000, quick=True)
    assert result["options"] == 2_000
    for key in ("deterministic_1_thread_per_s", "deterministic_all_threads_per_s", "numpy_scipy_per_s"):
        assert float(result[key]) > 0.0  # type: ignore[arg-type]
    assert float(result["max_rel_price_diff_vs_numpy_scipy"]) < 1e-9  # type: ignore[arg-type]
    # the peer is numpy at its best: the faster of one batch and cache-sized blocks
    assert result["numpy_scipy_per_s"] == max(result["numpy_scipy_one_batch_per_s"], result["numpy_scipy_blocks_per_s"])  # type: ignore[type-var]
    assert float(result["ratio_deterministic_vs_numpy_scipy_cpu_time"]) > 0.0  # type: ignore[arg-type]
    text = format_pricing_bench(result)
    assert "numpy + scipy.special.ndtr" in text
    if "quantlib_per_s" in result:
        assert float(result["max_rel_price_diff_vs_quantlib"]) < 1e-6  # type: ignore[arg-type]
        assert "QuantLib" in text and "AnalyticEuropeanEngine" in text
    else:
        assert result["quantlib"] == "QuantLib absent"
        assert "QuantLib absent" in text
