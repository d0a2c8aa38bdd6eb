"""``pmoracle bench stress`` on a small book: it runs, cascades and reports consistent figures."""

from __future__ import annotations

from pathlib import Path

from pmoracle.bench.stress import (
    ConcentrationBenchConfig,
    StressBenchConfig,
    bench_layout,
    format_concentration_bench,
    format_stress_bench,
    run_concentration_bench,
    run_stress_bench,
    write_concentration_plot,
)


def test_a_small_bench_cascades_and_reports() -> None:
    config = StressBenchConfig(accounts=2_000, options=40, positions=3, scenarios=29, depth=4)
    r = run_stress_bench(config)
    assert r["steps"] == len(r["breached_per_step"]) <= 4 and r["cascade_depth"] >= 2
    assert r["accounts_liquidated"] == sum(r["breached_per_step"]) > 0
    assert r["btc_path_usd"][:2] == [95_000, 87_400] and len(r["btc_path_usd"]) == 2 + r["steps"]
    assert r["seconds"] > 0 and r["peak_rss_mib"] > 0
    assert "2,000 accounts x 4 positions x 29 scenarios" in format_stress_bench(r)


def test_the_layout_holds_distinct_options_per_account() -> None:
    layout, accounts = bench_layout(StressBenchConfig(accounts=50, positions=5), n_options=12)
    assert len(accounts) == len(set(accounts)) == 50
    for a in range(50):
        rows = layout.inst[layout.starts[a] : layout.ends[a]].tolist()
        assert rows[0] == 0 and len(set(rows)) == 6 and all(1 <= r <= 12 for r in rows[1:])


def test_the_concentration_comparison_charges_the_same_book_more_and_cuts_its_shortfall(tmp_path: Path) -> None:
    config = ConcentrationBenchConfig(accounts=60, whales=3, shocks=("-0.12", "-0.16", "-0.25"), depth=8)
    r = run_concentration_bench(config)
    without, with_ = r["runs"]["without"], r["runs"]["with"]
    assert without["addon_usd"] == 0 < with_["addon_usd"]
    assert with_["margin_posted_usd"] > without["margin_posted_usd"]
    assert without["params_hash"] != with_["params_hash"]
    shortfalls = [
        (a["shortfall_usd"], b["shortfall_usd"]) for a, b in zip(without["shocks"], with_["shocks"], strict=True)
    ]
    assert all(b <= a for a, b in shortfalls) and any(b < a for a, b in shortfalls)
    assert "with the add-on" in format_concentration_bench(r)
    write_concentration_plot(tmp_path / "c.png", r)  # its price path: the headline shock, -16%, is in the run
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
