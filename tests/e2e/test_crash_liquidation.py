"""End to end: ``pmoracle devnet --days 3 --scenario crash``: BTC drops 25% with a volatility spike mid-run while
the devnet's keeper runs. Every account a round attests below maintenance margin is, a round or two later, either
restored (a round attests equity >= MM) or was insolvent (the whole book went to a bidder, the fund paid); the
keeper's bids are mined; every round still matches the recomputation and money is conserved."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.devnet_run import run_devnet_summary

LIQUIDATION_KEYS = (
    "accounts_breached", "liquidations", "accounts_restored", "accounts_insolvent", "insurance_paid",
    "socialized_loss", "median_breach_to_restored_s", "gas_per_bid_median",
)  # fmt: skip


@pytest.mark.timeout(300)
def test_the_crash_is_liquidated_by_the_keeper_and_every_breached_account_resolved() -> None:
    summary = run_devnet_summary(
        ["--nodes", "4", "--accounts", "20", "--days", "3", "--scenario", "crash"], timeout=280, name="crash"
    )
    assert all(key in summary for key in LIQUIDATION_KEYS)
    assert summary["scenario"] == "crash" and summary["crashed_at_step"] == 3
    assert summary["accounts_breached"] > 0 and summary["liquidations"] > 0
    assert summary["accounts_restored"] + summary["accounts_insolvent"] == summary["accounts_breached"]
    assert summary["accounts_unresolved"] == 0 and summary["auctions_open_at_end"] == 0
    # restored within two attested rounds of its breach: the keeper starts the auction on the breaching round and
    # bids on the next; the round after shows the account restored
    assert summary["max_rounds_breach_to_restored"] is None or summary["max_rounds_breach_to_restored"] <= 2
    assert summary["gas_per_bid_median"] > 0
    assert summary["rounds_verified"] == summary["rounds_attested"] and summary["conservation_ok"] is True


def test_a_scenario_needs_a_days_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pmoracle.cli", "devnet", "--scenario", "crash", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "--scenario" in done.stderr and "--days" in done.stderr
