"""The node proves a wrong attested round by itself, on a real anvil: 3 of 4 members attest a root that understates an
account's maintenance margin; the honest member's fraud prover (the production class the daemon runs, fed the
attested round and the node's own report of it) fetches the attested tree from the committee's APIs (the daemon's
own API server, ``serve_node_api``), proves it, and the three are slashed, the honest one not. With no peer API it
counts the round ``unprovable`` and sends nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pytest
import trio

from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.fraud_watch import ProofDecision
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Report
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.abc import AttestedRound
from pmoracle.node.daemon import OFFLINE_W3
from pmoracle.node.dispute import read_attested_round
from pmoracle.node.fraud_prover import QUEUE_SIZE, FraudProver
from pmoracle.node.metrics import FRAUD_PROOF_RESULTS, create_node_metrics
from pmoracle.node.round import RoundOutput, compute_round
from tests.integration.chain.contracts_support import address_of, dev_key
from tests.integration.chain.fraud_support import (
    COLLUDERS,
    HONEST,
    Seeded,
    attest,
    deploy_seeded,
    recompute,
    revert_of,
    shift_most_held_option,
    stake_of,
)
from tests.integration.node_api_support import serve_node_api

HONEST_OPERATOR = dev_key(1 + HONEST)  # the honest node's transmitter (node_spec: operator = dev account 1 + index)


@dataclass
class WrongRound:
    """A round the colluders attested with one account's MM halved, and what the honest node computed for it."""

    seeded: Seeded
    truth: RoundOutput  # the honest node's own round
    lie_tree: MerkleTree
    attested: AttestedRound


def attest_a_wrong_round(anvil: Devchain, seed: int, seeded: Seeded | None = None) -> WrongRound:
    """Deploy a committee of its own (unless ``seeded`` is given), then have the colluders attest the next round
    with the MM of the account holding the most positions halved (the risk arrays are the true ones: an aggregation
    proof exists)."""
    seeded = seeded or deploy_seeded(anvil, seed)
    anvil.rpc("evm_mine")
    snapshot = read_snapshot(seeded.client, seeded.deployment, seeded.client.block_number() - 1)
    truth = compute_round(snapshot, seeded.params, seeded.committee)
    held = {p.account: len(p.positions) for p in snapshot.portfolios}
    victim = max((leaf for leaf in truth.tree.leaves if leaf.maintenance_margin > 0), key=lambda x: held[x.account])
    leaves = [
        dataclasses.replace(leaf, maintenance_margin=leaf.maintenance_margin // 2) if leaf == victim else leaf
        for leaf in truth.tree.leaves
    ]
    lie_tree = MerkleTree(leaves)
    attest(seeded, COLLUDERS, dataclasses.replace(truth.report, accounts_root=lie_tree.root))
    attested = read_attested_round(seeded.client, seeded.deployment, snapshot.block_number)
    return WrongRound(seeded, truth, lie_tree, attested)


def create_prover(seeded: Seeded, peer_apis: tuple[str, ...]) -> FraudProver:
    """Return the honest node's fraud prover, with its own transmitter and metrics."""
    return FraudProver(seeded.client, seeded.deployment, seeded.params, Transmitter(seeded.client, HONEST_OPERATOR),
                       create_node_metrics(), peer_apis=peer_apis, timeout=120.0)  # fmt: skip


def results(prover: FraudProver) -> dict[str, float]:
    get = prover.metrics.registry.get_sample_value
    return {r: get("pmoracle_fraud_proofs_total", {"result": r}) or 0.0 for r in FRAUD_PROOF_RESULTS}


def run_prover(prover: FraudProver, offers: list[tuple[AttestedRound, Report, ProofDecision]]) -> None:
    """Run the prover service, offer each round (checking the decision), and wait until every round it queued was
    counted."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(prover.run)
            queued = 0
            for attested, own, expected in offers:
                assert prover.offer(attested, own) is expected
                queued += expected is ProofDecision.PROVE
            with trio.fail_after(180):
                while sum(results(prover).values()) < queued:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    trio.run(main)


def nonce_of(seeded: Seeded, key: bytes) -> int:
    return int(seeded.client.request("eth_getTransactionCount", [address_of(key), "latest"]), 16)


def test_the_honest_node_proves_the_wrong_round_and_the_colluders_are_slashed(anvil: Devchain) -> None:
    wrong = attest_a_wrong_round(anvil, seed=31)
    seeded, truth = wrong.seeded, wrong.truth
    block = wrong.attested.block_number
    before = [stake_of(seeded, i) for i in range(4)]
    # the honest member's API serves its own tree (skipped: it is not the attested one); a colluder's serves the lie
    with (
        serve_node_api(truth.tree, block, truth.risk_tree) as honest_url,
        serve_node_api(wrong.lie_tree, block, truth.risk_tree) as colluder_url,
    ):
        prover = create_prover(seeded, (honest_url, colluder_url))
        forked = dataclasses.replace(truth.report, block_hash=b"\x01" * 32)  # as computed on a replaced hash of B
        run_prover(prover, [
            (wrong.attested, forked, ProofDecision.OTHER_BLOCK_HASH),  # never proven
            (wrong.attested, truth.report, ProofDecision.PROVE),
            (wrong.attested, truth.report, ProofDecision.ALREADY_DECIDED),  # once per round
        ])  # fmt: skip
    assert results(prover) == {"proven": 1.0, "refused": 0.0, "unprovable": 0.0, "error": 0.0}
    after = [stake_of(seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST]
    assert all(after[i] < before[i] for i in COLLUDERS)
    assert prover.metrics.registry.get_sample_value("pmoracle_gas_spent_total") > 0
    # the round is invalidated: another prover (or this one again) is refused, and counted so
    with serve_node_api(wrong.lie_tree, block, truth.risk_tree) as colluder_url:
        again = create_prover(seeded, (colluder_url,))
        run_prover(again, [(wrong.attested, truth.report, ProofDecision.PROVE)])
    assert results(again)["refused"] == 1.0
    assert [stake_of(seeded, i) for i in range(4)] == after


def test_a_round_followed_by_a_newer_attestation_is_still_proven(anvil: Devchain) -> None:
    # the collusion run's first-round failure: two wrong rounds are attested before the prover asks for the first;
    # the colluder's /v1/margin now serves only the second, its /v1/leaves/B still serves the first
    first = attest_a_wrong_round(anvil, seed=37)
    seeded = first.seeded
    anvil.rpc("anvil_mine", hex(seeded.committee.round_period))
    second = attest_a_wrong_round(anvil, seed=37, seeded=seeded)
    assert second.attested.block_number > first.attested.block_number
    before = [stake_of(seeded, i) for i in range(4)]
    kept = {first.attested.block_number: (first.lie_tree, first.truth.risk_tree)}
    with serve_node_api(second.lie_tree, second.attested.block_number, second.truth.risk_tree,
                        older=kept) as colluder_url:  # fmt: skip
        prover = create_prover(seeded, (colluder_url,))
        run_prover(prover, [(first.attested, first.truth.report, ProofDecision.PROVE)])
    assert results(prover) == {"proven": 1.0, "refused": 0.0, "unprovable": 0.0, "error": 0.0}
    oracle = seeded.deployment.contract(OFFLINE_W3, "MarginOracle")
    digests = oracle.functions.roundDigests(first.attested.block_number)  # the first round is the invalidated one
    assert revert_of(seeded.client, digests) == ("RoundProvenFraudulent", (first.attested.block_number,))
    seeded.client.call(oracle.functions.roundDigests(second.attested.block_number))  # the second is not (yet)
    after = [stake_of(seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST] and all(after[i] < before[i] for i in COLLUDERS)


def test_wrong_rows_are_proven_by_a_pricing_challenge_from_the_attested_rows(
    anvil: Devchain, caplog: pytest.LogCaptureFixture
) -> None:
    # the colluders shift one option's entries and move the leaves with them: no leaf is provable by aggregation,
    # and the honest node's own rows are not the attested ones, so the prover needs a peer serving the attested rows
    seeded = deploy_seeded(anvil, seed=35)
    rnd = recompute(anvil, seeded)
    lie, key, _step = shift_most_held_option(seeded, rnd)
    block = lie.report.block_number
    attested = read_attested_round(seeded.client, seeded.deployment, block)
    before = [stake_of(seeded, i) for i in range(4)]
    caplog.set_level(logging.INFO, logger="pmoracle.node")
    # a colluder that serves the leaves but keeps no rows is skipped; one that serves both is used
    with (
        serve_node_api(lie.tree, block) as rowless_url,
        serve_node_api(lie.tree, block, lie.risk_tree) as colluder_url,
    ):
        prover = create_prover(seeded, (rowless_url, colluder_url))
        run_prover(prover, [(attested, rnd.truth.report, ProofDecision.PROVE)])
    assert results(prover)["proven"] == 1.0
    after = [stake_of(seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST] and all(after[i] < before[i] for i in COLLUDERS)
    assert f"proven wrong (pricing challenge of instrument {key} " in caplog.text
    assert f"peer API {rowless_url} serves no rows that rebuild the attested riskArraysRoot" in caplog.text


def test_an_honest_round_is_not_proven(anvil: Devchain) -> None:
    seeded = deploy_seeded(anvil, seed=33)
    anvil.rpc("evm_mine")
    snapshot = read_snapshot(seeded.client, seeded.deployment, seeded.client.block_number() - 1)
    truth = compute_round(snapshot, seeded.params, seeded.committee)
    attest(seeded, (0, 1, 2, 3), truth.report)
    attested = read_attested_round(seeded.client, seeded.deployment, snapshot.block_number)
    prover = create_prover(seeded, ("http://127.0.0.1:9",))
    run_prover(prover, [(attested, truth.report, ProofDecision.AGREES)])
    assert sum(results(prover).values()) == 0


def test_a_full_queue_drops_the_round_and_counts_an_error(anvil: Devchain) -> None:
    wrong = attest_a_wrong_round(anvil, seed=36)
    prover = create_prover(wrong.seeded, ())
    own = wrong.truth.report
    # rounds the service (not running here) has not taken yet: the queue holds QUEUE_SIZE, the next one is dropped
    for i in range(QUEUE_SIZE + 1):
        block = own.block_number + i * wrong.seeded.committee.round_period
        attested = dataclasses.replace(wrong.attested, block_number=block)
        assert prover.offer(attested, dataclasses.replace(own, block_number=block)) is ProofDecision.PROVE
    assert results(prover) == {"proven": 0.0, "refused": 0.0, "unprovable": 0.0, "error": 1.0}


@pytest.mark.parametrize("honest_peer", [False, True], ids=["no peer API", "only an honest peer"])
def test_without_a_source_of_the_attested_tree_the_round_is_unprovable(anvil: Devchain, honest_peer: bool) -> None:
    wrong = attest_a_wrong_round(anvil, seed=34 if honest_peer else 32)
    seeded, truth = wrong.seeded, wrong.truth
    before = [stake_of(seeded, i) for i in range(4)]
    nonce = nonce_of(seeded, HONEST_OPERATOR)
    with serve_node_api(truth.tree, wrong.attested.block_number, truth.risk_tree) as honest_url:
        prover = create_prover(seeded, (honest_url,) if honest_peer else ())  # an honest peer serves its own tree
        run_prover(prover, [(wrong.attested, truth.report, ProofDecision.PROVE)])
    assert results(prover) == {"proven": 0.0, "refused": 0.0, "unprovable": 1.0, "error": 0.0}
    assert nonce_of(seeded, HONEST_OPERATOR) == nonce  # nothing was sent
    assert [stake_of(seeded, i) for i in range(4)] == before
