"""End to end: ``pmoracle devnet --days`` lives through a week of market time on real anvil and node processes.

Between attested rounds chain time moves a day; expiries pass, get their settlement price and are settled into
cash, new ones are listed, perpetuals pay funding, traders trade with signed orders and withdraw against attested
margin. Every round after the warm-up is attested and matches the devnet's recomputation from chain state, and the
ledger's money identity holds at the end, checked from chain state alone.
"""

from __future__ import annotations

import pytest

from tests.e2e.devnet_run import run_devnet_summary

SUMMARY_KEYS = (
    "rounds_attested", "rounds_verified", "rounds_unsigned", "expiries_settled", "positions_settled", "trades",
    "withdrawals", "withdrawals_refused", "max_accounts_below_mm", "conservation_ok", "expiry_schedule_kept",
)  # fmt: skip


@pytest.mark.timeout(420)
def test_a_week_of_market_time_settles_expiries_and_keeps_every_round_attested_and_money_conserved() -> None:
    summary = run_devnet_summary(
        ["--nodes", "4", "--accounts", "30", "--days", "7", "--step-hours", "24"], timeout=400, name="days"
    )
    assert all(key in summary for key in SUMMARY_KEYS)
    assert summary["days"] == 7 and summary["steps"] == 7
    assert summary["rounds_attested"] >= 8 and summary["rounds_verified"] == summary["rounds_attested"]
    assert summary["rounds_unsigned"] == 0
    assert summary["expiries_settled"] >= 1 and summary["positions_settled"] > 0  # a Friday passes in any week
    assert summary["expiry_schedule_kept"] is True  # and the calendar's next expiries are listed
    assert summary["trades"] > 0 and summary["withdrawals"] > 0
    assert summary["conservation_ok"] is True
