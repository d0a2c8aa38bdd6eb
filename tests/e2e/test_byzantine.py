"""Byzantine scenarios on a real devnet: wrong values and equivocation cost stake, never safety or liveness.

Each test builds anvil + contracts + n node processes (libp2p on 127.0.0.1), of which some run the TEST-ONLY
faulty entry point, and asserts on what the scenario measured from the chain (pmoracle.devnet.scenarios).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.devnet.scenarios.byzantine import (
    scenario_equivocate,
    scenario_silent_slow,
    scenario_spam,
    scenario_wrong_value,
)
from pmoracle.devnet.scenarios.common import ScenarioResult, fault_tolerance

SLASH_BPS, REWARD_BPS, STAKE = 1_000, 5_000, 10**19  # the devnet's deployment parameters


def assert_safe(result: ScenarioResult, min_rounds: int) -> None:
    assert result.rounds_attested >= min_rounds
    assert result.rounds_verified == result.rounds_attested, "an attested root differs from the recomputation"
    assert result.duplicate_attestations == 0


def expected_stake(slashes: int) -> int:
    stake = STAKE
    for _ in range(slashes):
        stake -= stake * SLASH_BPS // 10_000
    return stake


def check_wrong_value(result: ScenarioResult, n: int) -> None:
    assert_safe(result, 3)
    honest = list(result.stake_before)[: n - fault_tolerance(n)]
    liars = list(result.stake_before)[n - fault_tolerance(n) :]
    # every liar slashed (once per round it lied in), honest stake untouched
    assert set(result.slashes) == set(liars)
    assert result.max_slashes_per_round == 1
    for liar in liars:
        assert result.stake_after[liar] == expected_stake(result.slashes[liar])
    for signer in honest:
        assert result.stake_after[signer] == result.stake_before[signer]
    # the reporters were paid half of each slashed amount, except a liar reporting itself (paid nothing)
    slashed = sum(result.stake_before[s] - result.stake_after[s] for s in liars)
    assert sum(result.rewards.values()) == (slashed - result.extra["self_reported_slashed"]) * REWARD_BPS // 10_000
    assert result.evidence_rounds is not None and result.evidence_rounds <= 2
    # the devnet's live table listed every slashing, naming the faulty node
    shown = result.extra["evidence_shown"]
    assert len(shown) == sum(result.slashes.values())
    liar_nodes = {f"node {i} slashed for deviation" for i in range(n - fault_tolerance(n), n)}
    assert {line.split(" in round")[0] for line in shown} == liar_nodes
    # the daemons' fraud provers: no honest node tries to prove an attested round it computed itself; each liar
    # tries every attested round (its own digest differs) and, given no peer API, counts it unprovable
    proofs = result.extra["fraud_proofs"]
    for i in range(n - fault_tolerance(n)):
        assert proofs[i] == {"proven": 0.0, "refused": 0.0, "unprovable": 0.0, "error": 0.0}, i
    for i in range(n - fault_tolerance(n), n):
        assert proofs[i]["unprovable"] >= 1 and proofs[i]["proven"] == proofs[i]["error"] == 0.0, i


@pytest.mark.timeout(240)
def test_wrong_value_is_outvoted_and_slashed(tmp_path: Path) -> None:
    result = scenario_wrong_value(tmp_path, n=4)
    check_wrong_value(result, 4)


@pytest.mark.timeout(240)
def test_equivocation_is_slashed_once_per_round(tmp_path: Path) -> None:
    result = scenario_equivocate(tmp_path, n=4)
    assert_safe(result, 3)
    [liar] = list(result.slashes)
    assert liar == list(result.stake_before)[-1]
    # equivocation evidence (offence 0) landed within two rounds; never two slashes for one round
    assert result.extra["offences"].get(0, 0) >= 1
    assert result.evidence_rounds is not None and result.evidence_rounds <= 2
    assert result.max_slashes_per_round == 1
    assert result.stake_after[liar] == expected_stake(result.slashes[liar])
    assert all(result.stake_after[s] == STAKE for s in result.stake_before if s != liar)
    # the dispute tool, run against the same live devnet: the latest attestation holds, the honest node's
    # archive shows the equivocation, and submitting it again never slashes twice for one round (checked above)
    dispute = result.extra["dispute"]
    assert dispute["check"] == 0, dispute["output"]
    assert dispute["scan"] == 1 and dispute["equivocation_files"] >= 1, dispute["output"]
    assert dispute["submit"] in (0, 1), dispute["output"]
    if dispute["submit"] == 1:
        assert "AlreadySlashed" in dispute["output"], dispute["output"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wrong_value_f_of_7(tmp_path: Path) -> None:
    check_wrong_value(scenario_wrong_value(tmp_path, n=7), 7)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["silent", "slow"])
def test_silent_or_slow_node_does_not_stop_attestation(tmp_path: Path, mode: str) -> None:
    result = scenario_silent_slow(tmp_path, n=4, modes=(mode,))
    assert_safe(result, 3)
    assert result.evidence_posted == 0  # late or missing signatures are no offence
    if mode == "slow":
        assert result.extra["late_releases"] >= 1  # the signature did come, after the round was attested


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_silent_and_slow_f_of_7(tmp_path: Path) -> None:
    result = scenario_silent_slow(tmp_path, n=7, modes=("silent", "slow"))
    assert_safe(result, 3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_spam_is_rejected_at_the_validator(tmp_path: Path) -> None:
    result = scenario_spam(tmp_path, n=4, rounds=6)
    assert_safe(result, 6)
    for index, reasons in result.extra["rejected"].items():
        for reason in ("malformed", "oversize", "not-member", "bad-signature", "wrong-network", "wrong-config"):
            assert reasons.get(reason, 0) > 0, f"node {index} did not count {reason}: {reasons}"
    # memory bounded: the last sample of each honest node within 1.5x its first (after the first round)
    samples = result.extra["rss_mib"]
    for first, last in zip(samples[0], samples[-1], strict=True):
        assert last <= 1.5 * first + 20, samples
