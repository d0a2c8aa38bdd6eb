"""End to end: ``pmoracle devnet --days 3 --scenario vol-spike``: the nodes run the adaptive margin policy from the
chain's index and smile history while BTC's volatility triples mid-run. Every node publishes the policy hash the
devnet recomputes from chain alone, every round; BTC's scan range climbs (its one-unit margin at the capped pace) and
so does its vol shift, while ETH's do not."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from tests.e2e.devnet_run import run_devnet_summary


@pytest.mark.timeout(300)
def test_the_policy_adapts_live_and_every_node_agrees_bit_for_bit() -> None:
    summary = run_devnet_summary(
        ["--nodes", "4", "--accounts", "20", "--days", "3", "--scenario", "vol-spike"], timeout=280, name="vol-spike"
    )
    assert summary["scenario"] == "vol-spike" and summary["spiked_at_step"] == 3
    assert summary["rounds_verified"] == summary["rounds_attested"] and summary["conservation_ok"] is True
    policy = summary["policy"]
    rounds = policy["rounds"]
    assert len(rounds) == summary["rounds_attested"]
    # every node published the recomputed hash, every round
    assert policy["identical_every_round"] is True
    # (a node outside the quorum may skip a round attested before it computed it, so at least a quorum answered)
    assert all(r["nodes_identical"] and r["nodes_answered"] >= 3 for r in rounds)
    sampled = [r for r in rounds if r["scan_range"]]
    assert {r["samples"]["BTC"] for r in sampled} >= {1, 2, 3, 4, 5, 6}  # one sample per market step
    btc = [Fraction(r["scan_range"]["BTC"]) for r in sampled]
    eth = [Fraction(r["scan_range"]["ETH"]) for r in sampled]
    assert all(Fraction(2, 100) <= x <= Fraction(6, 10) for x in btc + eth)  # the policy's bounds
    # the step cap on the one-unit margin range x price, per sample (the range bounds win over it)
    for a, b in itertools.pairwise(sampled):
        steps = b["samples"]["BTC"] - a["samples"]["BTC"]
        ra, rb = Fraction(a["scan_range"]["BTC"]), Fraction(b["scan_range"]["BTC"])
        ma, mb = ra * int(a["sampled_price"]["BTC"]), rb * int(b["sampled_price"]["BTC"])
        assert mb <= ma * Fraction(11, 10) ** steps or rb == Fraction(2, 100)
        assert mb >= ma * Fraction(95, 100) ** steps or rb == Fraction(6, 10)
    before = max(b for r, b in zip(sampled, btc, strict=True) if r["samples"]["BTC"] <= 3)
    eth_before = max(e for r, e in zip(sampled, eth, strict=True) if r["samples"]["ETH"] <= 3)
    assert btc[-1] >= before * Fraction(6, 5)  # the spike raised BTC's range by at least 20% ...
    assert btc[-1] / before > eth[-1] / eth_before  # ... and not ETH's the same way
    assert any("BTC" in r["stressed"] for r in sampled)  # the buffer was released in BTC's stress
    # [policy.vol]: BTC's implied vol tripled, so the vol shift from its smiles' 30-day ATM vol rises (at most +10% a
    # sample, the same cap), within the section's bounds; ETH's does not the same way
    btc_k = [Fraction(r["vol_shift"]["BTC"]) for r in sampled]
    eth_k = [Fraction(r["vol_shift"]["ETH"]) for r in sampled]
    assert all(Fraction(5, 100) <= k <= Fraction(9, 10) for k in btc_k + eth_k)
    for (a, ka), (b, kb) in itertools.pairwise(zip(sampled, btc_k, strict=True)):
        steps = b["samples"]["BTC"] - a["samples"]["BTC"]
        assert ka * Fraction(95, 100) ** steps <= kb <= ka * Fraction(11, 10) ** steps
    k_before = max(k for r, k in zip(sampled, btc_k, strict=True) if r["samples"]["BTC"] <= 3)
    eth_k_before = max(k for r, k in zip(sampled, eth_k, strict=True) if r["samples"]["ETH"] <= 3)
    assert btc_k[-1] > k_before and btc_k[-1] / k_before > eth_k[-1] / eth_k_before
