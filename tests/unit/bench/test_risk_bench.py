"""The PMRM_2 row of ``pmoracle bench risk``: the preset margins books like the grid's, one account at a time."""

from __future__ import annotations

from pmoracle.bench.risk import QUICK, bench_market, bench_pmrm2_market, run_pmrm2_bench
from pmoracle.risk.inputs import PRICE_SCALE


def test_the_pmrm2_market_quotes_every_listed_option() -> None:
    market, instruments = bench_market(48)
    pmrm2 = bench_pmrm2_market(market, instruments)
    for instrument in instruments:
        expiry = pmrm2.expiry(instrument.expiry)
        assert expiry is not None and expiry.vol_at(instrument.strike / PRICE_SCALE) is not None


def test_the_pmrm2_row_times_the_preset() -> None:
    market, instruments = bench_market(48)
    config = QUICK.__class__(options=48, positions=4, pmrm2_accounts=3)
    row = run_pmrm2_bench(config, market, instruments)
    assert (row["scenarios"], row["accounts"], row["positions"]) == (31, 3, 4)
    assert row["median_us"] > 0 and row["accounts_per_second"] > 0
