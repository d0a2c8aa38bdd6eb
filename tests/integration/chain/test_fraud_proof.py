"""The aggregation fraud proof on a real anvil: 3 of 4 members attest a root that understates accounts' maintenance
margin; anyone proves it from the ledger and the committed risk arrays, the round is invalidated and the three are
slashed, the honest member is not. Bad proofs revert with a named error and slash nobody.

The seeded protocol (``World``) holds real positions in ``MarginAccounts``; rounds are recomputed from the chain
snapshot at B exactly as a node does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import DEVIATION_DELAY, Deployment
from pmoracle.chain.errors import ContractError
from pmoracle.chain.snapshot import ChainSnapshot, read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.cli import main
from pmoracle.config.params import default_params_text
from pmoracle.consensus.commitments import COVER_KEY, FraudProof, compute_fraud_proof
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report, compute_report_digest, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World
from pmoracle.node.chain_port import OracleChainPort
from pmoracle.node.daemon import OFFLINE_W3
from pmoracle.node.dispute import (
    ClaimedLeaf,
    find_fraud_proof,
    leaf_to_json,
    prove_fraud_call,
    read_holdings,
    submit_fraud_proof,
)
from pmoracle.node.keys import KeyKind, write_key_file
from pmoracle.node.metrics import create_node_metrics
from pmoracle.node.round import MONEY_TO_LEAF, RoundOutput, compute_round
from tests.integration.chain.contracts_support import dev_key, node_spec, pass_deviation_window, submit_on_a_live_chain
from tests.integration.chain.fraud_support import (
    COLLUDERS,
    HONEST,
    REPORTER,
    SLASH_BPS,
    Seeded,
    attest,
    deploy_seeded,
    revert_of,
    stake_of,
)


@dataclass
class Lie:
    seeded: Seeded
    snapshot: ChainSnapshot  # of the honest round
    honest: RoundOutput  # attested first, by all four members
    lie_snapshot: ChainSnapshot  # of the next round, the book unchanged
    truth: RoundOutput  # what the next round should have been
    victims: tuple[AccountLeaf, AccountLeaf]  # honest leaves whose MM the quorum halved in the later round
    lie_tree: MerkleTree
    lie_report: Report

    @property
    def client(self) -> ChainClient:
        return self.seeded.client

    @property
    def deployment(self) -> Deployment:
        return self.seeded.deployment

    @property
    def committee(self) -> CommitteeConfig:
        return self.seeded.committee

    @property
    def domain(self) -> Domain:
        return self.seeded.domain

    @property
    def keys(self) -> list[bytes]:
        return self.seeded.keys

    @property
    def world(self) -> World:
        return self.seeded.world


@pytest.fixture(scope="module")
def lie(anvil: Devchain) -> Lie:
    return make_lie(anvil, seed=11)


def make_lie(anvil: Devchain, seed: int) -> Lie:
    """Deploy, seed the protocol, attest an honest round, then a round in which 3 of 4 halve two accounts' MM."""
    seeded = deploy_seeded(anvil, seed)
    client, deployment, committee, params = seeded.client, seeded.deployment, seeded.committee, seeded.params
    anvil.rpc("evm_mine")
    honest_block = client.block_number() - 1
    snapshot = read_snapshot(client, deployment, honest_block)
    honest = compute_round(snapshot, params, committee)
    attest(seeded, (0, 1, 2, 3), honest.report)
    # the next round: the book is unchanged, the colluders halve two accounts' MM
    anvil.rpc("evm_mine")
    block = client.block_number() - 1
    lie_snapshot = read_snapshot(client, deployment, block)
    truth = compute_round(lie_snapshot, params, committee)
    held = {p.account: len(p.positions) for p in snapshot.portfolios}
    ranked = sorted((leaf for leaf in truth.tree.leaves if leaf.maintenance_margin > 0), key=lambda x: -held[x.account])
    victims = (ranked[0], ranked[1])
    leaves = [
        dataclasses.replace(leaf, maintenance_margin=leaf.maintenance_margin // 2) if leaf in victims else leaf
        for leaf in truth.tree.leaves
    ]
    lie_tree = MerkleTree(leaves)
    lie_report = dataclasses.replace(truth.report, accounts_root=lie_tree.root)
    attest(seeded, COLLUDERS, lie_report)
    return Lie(seeded, snapshot, honest, lie_snapshot, truth, victims, lie_tree, lie_report)


def lie_proof(lie: Lie, victim: AccountLeaf) -> FraudProof:
    """Return the fraud proof of ``victim``'s understated leaf, built as the dispute tool builds it."""
    leaf = lie.lie_tree.leaf_of(victim.account)
    holdings = read_holdings(lie.client, lie.deployment, lie.lie_snapshot, victim.account)
    tree = lie.truth.risk_tree
    proof = compute_fraud_proof(leaf, lie.lie_tree.proof(victim.account), tree, holdings, MONEY_TO_LEAF)
    assert proof is not None and proof.required == victim.maintenance_margin
    return proof


def refusal(lie: Lie, report: Report, proof: FraudProof) -> tuple[str, tuple[Any, ...]]:
    return revert_of(lie.client, prove_fraud_call(lie.deployment, report, proof))


def test_an_honest_round_cannot_be_proven(lie: Lie) -> None:
    victim = lie.victims[0]
    holdings = read_holdings(lie.client, lie.deployment, lie.snapshot, victim.account)
    leaf = lie.honest.tree.leaf_of(victim.account)
    proof = lie.honest.tree.proof(victim.account)
    assert compute_fraud_proof(leaf, proof, lie.honest.risk_tree, holdings, MONEY_TO_LEAF) is None
    # forced: the worst scenario's bound equals the honest MM exactly, so the contract refuses it
    cover = lie.honest.risk_tree.row_of(COVER_KEY)
    rows = tuple((lie.honest.risk_tree.row_of(k), tuple(lie.honest.risk_tree.proof(k))) for k in sorted(holdings))
    worst = next(m.worst_scenario for m in lie.honest.book.accounts if m.account == victim.account)
    forced = FraudProof(leaf, tuple(proof), cover, tuple(lie.honest.risk_tree.proof(COVER_KEY)), rows, worst, 0)
    name, args = refusal(lie, lie.honest.report, forced)
    assert name == "NotFraudulent" and args[2] == args[3] == leaf.maintenance_margin


def test_bad_rows_and_paths_are_refused(lie: Lie) -> None:
    proof = lie_proof(lie, lie.victims[0])
    (row, row_proof), *rest = proof.rows
    tampered = dataclasses.replace(row, values=(row.values[0] + 1, *row.values[1:]))
    assert refusal(lie, lie.lie_report, dataclasses.replace(proof, rows=((tampered, row_proof), *rest)))[0] == (
        "InvalidRowProof"
    )
    bad_path = (row, (row_proof[0][::-1], *row_proof[1:]))
    assert refusal(lie, lie.lie_report, dataclasses.replace(proof, rows=(bad_path, *rest)))[0] == "InvalidRowProof"
    assert refusal(lie, lie.lie_report, dataclasses.replace(proof, rows=tuple(rest)))[0] == "IncompleteHoldings"
    twice = dataclasses.replace(proof, rows=(proof.rows[0], *proof.rows))
    assert refusal(lie, lie.lie_report, twice)[0] == "RowNotHeld"  # keys must strictly increase
    # a row of the tree the account does not hold (an account holding few of the round's instruments)
    tree = lie.truth.risk_tree
    small = min(lie.lie_snapshot.portfolios, key=lambda p: len(p.positions))
    holdings = read_holdings(lie.client, lie.deployment, lie.lie_snapshot, small.account)
    other = next(r for r in tree.rows if r.key not in holdings and r.key != COVER_KEY)
    rows = tuple((tree.row_of(k), tuple(tree.proof(k))) for k in sorted({*holdings, other.key}))
    leaf = lie.lie_tree.leaf_of(small.account)
    foreign = dataclasses.replace(proof, leaf=leaf, account_proof=tuple(lie.lie_tree.proof(small.account)), rows=rows)
    name, args = refusal(lie, lie.lie_report, foreign)
    assert (name, args[1]) == ("RowNotHeld", other.key)
    bad_leaf = dataclasses.replace(proof, account_proof=proof.account_proof[1:])
    assert refusal(lie, lie.lie_report, bad_leaf)[0] == "InvalidMarginProof"
    other_report = dataclasses.replace(lie.lie_report, market_hash=bytes(32))
    assert refusal(lie, other_report, proof)[0] == "ReportMismatch"


def test_an_account_that_traded_since_the_round_is_still_proven(anvil: Devchain) -> None:
    """The understated account closes a position, opens another and deposits after B (the house, its counterparty,
    trades too): the proof reads its holdings at B from the ledger's history, the prover still finds it, and the
    quorum is slashed."""
    lie = make_lie(anvil, seed=13)
    victim = lie.victims[0]
    account = to_checksum_address(victim.account)
    portfolio = next(p for p in lie.lie_snapshot.portfolios if p.account == victim.account)
    closed = portfolio.positions[0]
    world = lie.world
    listed = {(i.underlying, i.kind, i.expiry, i.strike): i for i in world.instruments}
    inst = listed[(closed.instrument.underlying, closed.instrument.kind, closed.instrument.expiry,
                   closed.instrument.strike)]  # fmt: skip
    held = {(p.instrument.underlying, p.instrument.kind, p.instrument.expiry, p.instrument.strike)
            for p in portfolio.positions}  # fmt: skip
    opened = next((i for k, i in listed.items() if k not in held and (i.kind == 0 or i.expiry > world.now + 3_600)),
                  None)  # fmt: skip
    other = next(a for a in world.accounts if a not in (account, world.house))

    def move(inst: Any, size: float) -> tuple[str, list[Any]]:  # the account's position moves by size
        return world._trade(other, inst, -size) if account == world.house else world._trade(account, inst, size)

    world.send_all([move(inst, -closed.size / 10_000), *([move(opened, 0.5)] if opened else [])])
    world._open([account, to_checksum_address(lie.victims[1].account)], {"WETH": 1.0})  # both victims deposit
    ledger = lie.deployment.contract(OFFLINE_W3, "MarginAccounts")
    assert int(lie.client.call(ledger.functions.changedAt(account))) > lie.lie_report.block_number
    count = len(portfolio.positions) - (opened is None)
    assert int(lie.client.call(ledger.functions.openPositionCount(account))) == count
    # the prover recomputes the round from the snapshot at B and does not skip the changed account
    claimed = [ClaimedLeaf(leaf, None) for leaf in lie.lie_tree.leaves]
    found = find_fraud_proof(lie.client, lie.deployment, lie.seeded.params, lie.lie_report.block_number,
                             lambda _attested, _leaves: claimed)  # fmt: skip
    assert set(found.changed) == {v.account for v in lie.victims} and found.proof is not None
    proof = found.proof
    assert proof == lie_proof(lie, next(v for v in lie.victims if v.account == proof.leaf.account))
    before = [stake_of(lie.seeded, i) for i in range(4)]
    outcomes = submit_fraud_proof(Transmitter(lie.client, REPORTER), lie.deployment, lie.lie_report, proof)
    assert {o.signer for o in outcomes} == {lie.committee.members[i] for i in COLLUDERS}
    after = [stake_of(lie.seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST] and all(after[i] < before[i] for i in COLLUDERS)


def test_a_lying_quorum_is_proven_invalidated_and_slashed_and_the_honest_member_is_not(lie: Lie) -> None:
    oracle = lie.deployment.contract(OFFLINE_W3, "MarginOracle")
    before = [stake_of(lie.seeded, i) for i in range(4)]
    proof = lie_proof(lie, lie.victims[0])
    outcomes = submit_fraud_proof(Transmitter(lie.client, REPORTER), lie.deployment, lie.lie_report, proof)
    assert {o.signer for o in outcomes} == {lie.committee.members[i] for i in COLLUDERS}
    assert {o.offence for o in outcomes} == {"fraud"}
    after = [stake_of(lie.seeded, i) for i in range(4)]
    assert all(after[i] == before[i] * (10_000 - SLASH_BPS) // 10_000 for i in COLLUDERS)
    assert after[HONEST] == before[HONEST]
    # the round is refused for withdrawals and liquidations, and is no reference for deviation
    understated = lie.lie_tree.leaf_of(lie.victims[0].account)
    verify = oracle.functions.verifyMargin(
        to_checksum_address(understated.account), understated.initial_margin, understated.maintenance_margin,
        understated.equity, lie.lie_tree.proof(understated.account),
    )  # fmt: skip
    assert revert_of(lie.client, verify) == ("RoundProvenFraudulent", (lie.lie_report.block_number,))
    honest_signed = sign_report(lie.domain, dataclasses.replace(lie.lie_report, accounts_root=lie.honest.tree.root),
                                lie.keys[HONEST])  # fmt: skip
    registry = lie.deployment.contract(OFFLINE_W3, "SolverRegistry")
    deviation = registry.functions.slashDeviation(honest_signed.report.as_tuple(), honest_signed.signature)
    assert revert_of(lie.client, deviation)[0] == "RoundProvenFraudulent"
    # and it cannot be proven twice
    assert refusal(lie, lie.lie_report, lie_proof(lie, lie.victims[0]))[0] == "RoundProvenFraudulent"


def test_the_slashing_race_the_colluders_cannot_slash_the_honest_member_before_the_proof_lands(
    anvil: Devchain,
) -> None:
    """The race of docs/dispute.md ("Slashing race"): as soon as their wrong round is attested, the colluders post
    the honest member's signed (correct) report as deviation evidence; the honest node's fraud proof lands after."""
    lie = make_lie(anvil, seed=13)
    honest_signed = sign_report(lie.domain, lie.truth.report, lie.keys[HONEST])
    registry = lie.deployment.contract(OFFLINE_W3, "SolverRegistry")
    deviation = registry.functions.slashDeviation(honest_signed.report.as_tuple(), honest_signed.signature)
    colluder = Transmitter(lie.client, node_spec(COLLUDERS[0]).operator_key)  # a staked node: it would be rewarded
    before = stake_of(lie.seeded, HONEST)
    try:
        colluder.transact_call(deviation)  # at once, in the block after the attestation
    except ContractError as exc:
        assert exc.name == "DeviationWindowNotOpen"
        block, attested_at, opens_at = exc.error_args
        assert block == lie.lie_report.block_number and opens_at == attested_at + DEVIATION_DELAY
    # the honest node's proof lands (here a few blocks later), then the window opens: the round is invalidated
    proof = lie_proof(lie, lie.victims[0])
    submit_fraud_proof(Transmitter(lie.client, REPORTER), lie.deployment, lie.lie_report, proof)
    pass_deviation_window(anvil)
    assert revert_of(lie.client, deviation)[0] == "RoundProvenFraudulent"
    assert stake_of(lie.seeded, HONEST) == before


def test_a_colluders_node_holds_the_deviation_evidence_and_drops_it_once_the_round_is_invalidated(
    anvil: Devchain, caplog: pytest.LogCaptureFixture
) -> None:
    """The node side of the race: a colluder's daemon holds its deviation evidence against the honest member for
    the window, re-checks the round when the window opens, finds it invalidated and drops the evidence."""
    lie = make_lie(anvil, seed=14)
    registry = lie.deployment.contract(OFFLINE_W3, "SolverRegistry")
    Transmitter(lie.client, dev_key(0)).transact_call(registry.functions.setDeviationDelay(4))  # the owner
    honest_signed = sign_report(lie.domain, lie.truth.report, lie.keys[HONEST])
    evidence = Deviation(honest_signed, compute_report_digest(lie.domain, lie.lie_report))
    metrics = create_node_metrics()
    port = OracleChainPort(lie.client, Transmitter(lie.client, node_spec(COLLUDERS[0]).operator_key), lie.deployment,
                           metrics)  # fmt: skip
    before = stake_of(lie.seeded, HONEST)

    async def race() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_on_a_live_chain, anvil, port, evidence)
            await trio.sleep(1)  # the evidence is held (the log below says so) when the proof lands
            proof = lie_proof(lie, lie.victims[0])
            await trio.to_thread.run_sync(
                submit_fraud_proof, Transmitter(lie.client, REPORTER), lie.deployment, lie.lie_report, proof
            )

    with caplog.at_level(logging.INFO, logger="pmoracle.node"):
        trio.run(race)
    assert re.search(r"held \d+ s, until its deviation window opens", caplog.text)
    assert "dropped (the round was proven fraudulent)" in caplog.text
    assert metrics.evidence_dropped.labels(reason="invalidated")._value.get() == 1
    assert metrics.evidence_sent.labels(kind="deviation")._value.get() == 0
    assert stake_of(lie.seeded, HONEST) == before


def test_dispute_prove_finds_the_understated_account_and_slashes_the_quorum(
    anvil: Devchain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lie = make_lie(anvil, seed=12)
    deployment_file = tmp_path / "deployment.json"
    lie.deployment.save(deployment_file)
    params_file = tmp_path / "risk-params.toml"
    params_file.write_text(default_params_text())
    leaves_file = tmp_path / "attested-leaves.json"  # the whole attested set: it proves itself by its root
    leaves_file.write_text(json.dumps([leaf_to_json(leaf) for leaf in lie.lie_tree.leaves]))
    key_file = tmp_path / "reporter.json"
    write_key_file(KeyKind.TRANSMITTER, key_file, b"pw", secret=REPORTER, kdf_iterations=1024)
    password_file = tmp_path / "password.txt"
    password_file.write_text("pw\n")
    chain = ["--rpc", anvil.url, "--deployment", str(deployment_file), "--params", str(params_file)]
    honest = lie.honest.report.block_number
    honest_leaves = tmp_path / "honest-leaves.json"
    honest_leaves.write_text(json.dumps([leaf_to_json(leaf) for leaf in lie.honest.tree.leaves]))
    assert main(["dispute", "prove", *chain, "--round", str(honest), "--leaves", str(honest_leaves)]) == 1
    assert "nothing to prove: no attested leaf understates its MM" in capsys.readouterr().out

    before = [stake_of(lie.seeded, i) for i in range(4)]
    args = ["dispute", "prove", *chain, "--latest", "--leaves", str(leaves_file), "--key-file", str(key_file),
            "--password-file", str(password_file), "--json"]  # fmt: skip
    assert main(args) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["proven"] is True and outcome["round"] == lie.lie_report.block_number
    assert set(outcome["understated"]) == {to_checksum_address(v.account) for v in lie.victims}
    assert outcome["account"] in outcome["understated"]
    assert {s["signer"] for s in outcome["slashed"]} == {
        to_checksum_address(lie.committee.members[i]) for i in COLLUDERS
    }
    after = [stake_of(lie.seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST] and all(after[i] < before[i] for i in COLLUDERS)
    assert main(args) == 1  # the round is invalidated: nothing left to prove
    assert json.loads(capsys.readouterr().out)["error"] == "RoundProvenFraudulent"
