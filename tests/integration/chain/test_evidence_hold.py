"""The node holds deviation evidence until its round's deviation window opens (docs/dispute.md, "Slashing race"),
on a real anvil through the production ChainPort: posted once the window is open, never before it."""

from __future__ import annotations

import trio

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import transact_fn
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.evidence import Deviation
from pmoracle.consensus.report import compute_report_digest, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.chain_port import OracleChainPort
from pmoracle.node.metrics import create_node_metrics
from tests.integration.chain.contracts_support import (
    STAKE,
    System,
    deploy_system,
    make_tree,
    node_spec,
    stake_of,
    submit_on_a_live_chain,
)

WINDOW = 3  # seconds


def _deviation_of_member_3(anvil: Devchain, system: System) -> tuple[Deviation, OracleChainPort, int]:
    """Attest a round signed by members 0-2; return member 3's deviating report as evidence, node 0's chain port and
    the round's block."""
    block = system.anchor()
    attested = system.report(block, make_tree(3, 6))
    transact_fn(system.owner, system.oracle.functions.attest(*system.certificate(attested, (0, 1, 2))), label="attest")
    deviant = sign_report(system.domain, system.report(block, make_tree(4, 6)), system.signing_keys[3])
    client = ChainClient([anvil.url])
    port = OracleChainPort(client, Transmitter(client, node_spec(0).operator_key), system.deployment,
                           create_node_metrics())  # fmt: skip
    return Deviation(deviant, compute_report_digest(system.domain, attested)), port, block


def test_deviation_evidence_is_held_until_the_window_opens_then_slashes(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2, deviation_delay=WINDOW)
    evidence, port, block = _deviation_of_member_3(anvil, system)
    attested_at = int(system.oracle.functions.roundAt(block).call()[6])
    before = stake_of(system, 3)
    trio.run(submit_on_a_live_chain, anvil, port, evidence)
    assert stake_of(system, 3) == before - before // 10
    (event,) = system.registry.events.Slashed().get_logs(from_block=block)
    assert system.w3.eth.get_block(event["blockNumber"])["timestamp"] >= attested_at + WINDOW
    assert port.metrics.evidence_sent.labels(kind="deviation")._value.get() == 1
    assert port.metrics.evidence_held._value.get() == 0


def test_deviation_evidence_older_than_256_blocks_records_the_round_block_hash_then_slashes(anvil: Devchain) -> None:
    # a round no longer stores its block hash; once blockhash() has forgotten B, slashDeviation reverts
    # RoundBlockHashNotRecorded until someone records it from the attested report: the node does, then posts
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2, deviation_delay=WINDOW)
    evidence, port, block = _deviation_of_member_3(anvil, system)
    anvil.rpc("anvil_mine", hex(300))
    before = stake_of(system, 3)
    trio.run(submit_on_a_live_chain, anvil, port, evidence)
    assert system.oracle.functions.roundBlockHash(block).call() == evidence.signed.report.block_hash
    assert stake_of(system, 3) == before - before // 10
    assert port.metrics.evidence_sent.labels(kind="deviation")._value.get() == 1
